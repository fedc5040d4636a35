"""Offline engines as livekit-agents providers (Whisper STT, hibari and Piper TTS, FAQ answerer),
loaded once per process (`pools.py`), and the audio they render ahead of calls."""
