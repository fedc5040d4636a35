"""Google Cloud Speech-to-Text (v1 StreamingRecognize) and Text-to-Speech (v1
SynthesizeSpeech) gRPC servers, on the services' real protobuf messages.

The recogniser cuts the caller's audio into utterances with an energy gate and transcribes
each with the given function (Whisper, in tests), answering no sooner than `latency` after
the utterance ended (its last loud audio), as the real service does: "STT 300 ms" is end of
speech to final transcript. (Until 2026-12-05 the latency was counted from the end of the
gate's 0.4 s of silence, so a final came 0.7 s after the end of speech, not 0.3.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
from google.cloud.speech_v1.types import cloud_speech
from google.cloud.texttospeech_v1.types import cloud_tts

from .faults import Faults

Transcribe = Callable[[np.ndarray, int], str]  # float32 mono, rate -> text
Render = Callable[[str], np.ndarray]

_SPEECH_RMS = 330.0
# Silence that ends an utterance: under the typical latency, so the latency, not the gate,
# says when the final comes; over the gaps inside words and between a question's phrases.
_END_SILENCE = 0.25


class GoogleSpeechStandin:
    def __init__(self, transcribe: Transcribe) -> None:
        self.transcribe = transcribe
        self.faults = Faults()
        self.transcripts: list[str] = []

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "google.cloud.speech.v1.Speech",
            {
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self._streaming_recognize,
                    request_deserializer=cloud_speech.StreamingRecognizeRequest.deserialize,
                    response_serializer=cloud_speech.StreamingRecognizeResponse.serialize,
                )
            },
        )

    async def _streaming_recognize(
        self,
        requests: AsyncIterator[cloud_speech.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[cloud_speech.StreamingRecognizeResponse]:
        self.faults.requests += 1
        rate = 16000
        utterance: list[np.ndarray] = []
        quiet = 0.0
        ended_at = 0.0  # when the utterance's last loud audio arrived
        async for request in requests:
            if "streaming_config" in request:
                rate = request.streaming_config.config.sample_rate_hertz or rate
                if self.faults.error is not None:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "injected")
                continue
            samples = np.frombuffer(request.audio_content, dtype="<i2")
            if not samples.size or self.faults.hang:
                continue
            seconds = samples.size / rate
            loud = float(np.sqrt(np.mean(samples.astype(np.float32) ** 2))) >= _SPEECH_RMS
            if loud:
                if not utterance and self.faults.drop_after is not None:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "injected drop")
                quiet = 0.0
                ended_at = time.monotonic()
                utterance.append(samples)
            elif utterance:
                quiet += seconds
                utterance.append(samples)
                if quiet >= _END_SILENCE:
                    audio = np.concatenate(utterance).astype(np.float32) / 32768.0
                    utterance, quiet = [], 0.0
                    text = await asyncio.to_thread(self.transcribe, audio, rate)
                    await self.faults.wait_first(time.monotonic() - ended_at)
                    if self.faults.error is not None:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "injected")
                    if text.strip():
                        self.transcripts.append(text)
                        yield _final(text)


def _final(text: str) -> cloud_speech.StreamingRecognizeResponse:
    return cloud_speech.StreamingRecognizeResponse(
        results=[
            cloud_speech.StreamingRecognitionResult(
                alternatives=[
                    cloud_speech.SpeechRecognitionAlternative(transcript=text, confidence=0.95)
                ],
                is_final=True,
                language_code="en-us",
            )
        ]
    )


class GoogleTTSStandin:
    def __init__(self, render: Render, *, rate: int) -> None:
        self.render = render
        self.rate = rate
        self.faults = Faults()
        self.texts: list[str] = []

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "google.cloud.texttospeech.v1.TextToSpeech",
            {
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self._synthesize,
                    request_deserializer=cloud_tts.SynthesizeSpeechRequest.deserialize,
                    response_serializer=cloud_tts.SynthesizeSpeechResponse.serialize,
                )
            },
        )

    async def _synthesize(
        self, request: cloud_tts.SynthesizeSpeechRequest, context: grpc.aio.ServicerContext
    ) -> cloud_tts.SynthesizeSpeechResponse:
        self.faults.requests += 1
        self.texts.append(request.input.text)
        start = time.monotonic()
        audio = await asyncio.to_thread(self.render, request.input.text)
        await self.faults.wait_first(time.monotonic() - start)
        if self.faults.error is not None or self.faults.drop_after is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected")
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        return cloud_tts.SynthesizeSpeechResponse(audio_content=pcm)
