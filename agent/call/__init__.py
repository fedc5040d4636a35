"""One call: its session (`session.py`), the Agent, turn-taking, barge-in, the phone's keys, the
handoff to a person and what the call leaves behind (its timeline line, logs and history)."""
