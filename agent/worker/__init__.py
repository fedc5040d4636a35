"""The worker process: its AgentServer and prewarm (`server.py`), one call's job (`job.py`),
and what serves every call of the process: capacity and hold, crash pick-up, the unanswered
sweep, health, memory and garbage collection."""
