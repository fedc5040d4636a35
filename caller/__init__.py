"""A caller simulator: a real LiveKit participant that talks to the agent and times it."""
