"""firstword: a real-time voice agent on LiveKit Agents that speaks its first word at once."""
