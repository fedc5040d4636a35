"""Offline engines as livekit-agents providers: Whisper STT, hibari and Piper TTS, FAQ answerer."""
