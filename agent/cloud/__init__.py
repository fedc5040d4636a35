"""Cloud engines (Google STT/TTS, Gemini, ElevenLabs) behind breakers, timeouts and fallbacks."""
