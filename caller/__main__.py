"""`python -m caller`: call the agent like a person would, and print what happened.

Joins a room on the LiveKit server, waits for the greeting, asks questions (spoken with the
local Piper voice, or taken from WAV files), transcribes the agent with Whisper, and prints
the conversation with the time to first word and each answer's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import warnings
import wave
from pathlib import Path

import numpy as np

from agent.engines.local_tts import load_piper
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.settings import get_settings
from agent.worker.preflight import PreflightError, check_server_reachable
from caller.simulator import CallOptions, CallReport, Question, run_call
from caller.sip import SipCallOptions, SipCallReport, bridge_address, run_sip_call
from caller.telephone import telephone

BARGE_IN = "Wait, wait, hold on a second."
DEFAULT_QUESTIONS = {
    "harbor-dental": [
        "Hi, what time do you open on Saturdays?",
        "How much does a teeth cleaning cost?",
        "Do you sell concert tickets?",
    ],
    "bluebird-bikes": [
        "How much is it to rent an electric bike?",
        "Can you fix my car engine?",
    ],
}


def _read_wav(path: Path) -> Question:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV files are supported")
        raw = wav.readframes(wav.getnframes())
        channels = wav.getnchannels()
        pcm = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
        if channels > 1:
            pcm = pcm.reshape(-1, channels).mean(axis=1)
        return Question(text=f"<{path.name}>", audio=pcm, sample_rate=wav.getframerate())


def _print_report(report: CallReport, index: int) -> None:
    if isinstance(report, SipCallReport):
        answered = (
            "not answered"
            if report.answered_s is None
            else f"answered {report.answered_s * 1000:.0f} ms after the INVITE"
        )
        print(f"\n=== SIP call {index + 1} (INVITE {report.sip_status}, {answered}) ===")
        since = "after the INVITE"
    else:
        print(
            f"\n=== call {index + 1} in room {report.room} (joined in {report.connect_s:.2f} s) ==="
        )
        since = "after joining"
    if report.ttfw_s is None:
        print("  !! the agent did not speak")
        return
    print(f"  [first word {report.ttfw_s * 1000:6.0f} ms {since}] agent: {report.greeting}")
    for turn in report.turns:
        print(f"  [{turn.asked_at_s:6.1f} s] caller: {turn.question}")
        if turn.latency_s is None:
            print("           agent: (no answer)")
        else:
            ms = turn.latency_s * 1000
            print(f"  [answer {ms:6.0f} ms after caller stopped] agent: {turn.answer}")
    if report.barge_in_s is not None:
        print(
            f"  [barge-in: agent silent {report.barge_in_s * 1000:.0f} ms after the caller spoke]"
        )
    if report.resumed_after_s is not None:
        print(
            f"  [then the agent spoke again after {report.resumed_after_s * 1000:.0f} ms:"
            f" {report.heard_after}]"
        )


def _summary(reports: list[CallReport]) -> dict[str, dict[str, float]]:
    def stats(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {
            "n": len(values),
            "median_ms": round(statistics.median(values) * 1000),
            "worst_ms": round(max(values) * 1000),
        }

    ttfw = [r.ttfw_s for r in reports if r.ttfw_s is not None]
    latency = [t.latency_s for r in reports for t in r.turns if t.latency_s is not None]
    barge_in = [r.barge_in_s for r in reports if r.barge_in_s is not None]
    summary = {
        "time_to_first_word": stats(ttfw),
        "answer_latency": stats(latency),
        "barge_in": stats(barge_in),
    }
    answered = [r.answered_s for r in reports if isinstance(r, SipCallReport) and r.answered_s]
    if answered:
        summary["sip_answer"] = stats(answered)  # INVITE -> 200 OK
    return summary


async def _main(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.dial:
        try:
            bridge = bridge_address(args.sip_address)
        except ValueError as exc:
            print(f"caller: {exc}", file=sys.stderr)
            return 2
    else:
        try:
            check_server_reachable(settings)
        except PreflightError as exc:
            print(f"caller: {exc}", file=sys.stderr)
            return 2
    stt = WhisperSTT(await asyncio.to_thread(load_whisper, None, threads=2, verify=True))
    if args.wav:
        questions = [_read_wav(Path(p)) for p in args.wav]
    else:
        texts = args.question or DEFAULT_QUESTIONS.get(args.account or "", [])
        if not texts:
            texts = DEFAULT_QUESTIONS[settings.default_account]
        voice = await asyncio.to_thread(load_piper, None, threads=2, verify=True)
        questions = [
            Question(t, await asyncio.to_thread(voice.render, t), voice.sample_rate) for t in texts
        ]

    if args.telephone:
        # Through an 8 kHz μ-law phone line, then back to the clip's rate for WebRTC.
        questions = [
            Question(q.text, telephone(q.audio, q.sample_rate, seed=i), q.sample_rate)
            for i, q in enumerate(questions)
        ]

    def transcribe(audio: np.ndarray, rate: int) -> str:
        return stt.transcribe_pcm(audio, rate, "en") if audio.size else ""

    barge_in = None
    if args.barge_in:
        voice = await asyncio.to_thread(load_piper, None, threads=2, verify=True)
        barge_in = Question(
            args.barge_in, await asyncio.to_thread(voice.render, args.barge_in), voice.sample_rate
        )

    reports: list[CallReport] = []
    for i in range(args.runs):
        if args.dial:
            sip_options = SipCallOptions(
                number=args.dial,
                bridge=bridge,
                hang_up_mid_answer=args.hang_up_mid_answer,
                hang_up_after_s=args.hang_up_after,
                record_dir=None if args.no_record else settings.cache_dir / "calls",
            )
            quick = args.hang_up_at_first_word or args.hang_up_after is not None
            sip_report = await run_sip_call(
                [] if quick else questions, None if quick else transcribe, sip_options
            )
            reports.append(sip_report)
            if not args.quiet:
                _print_report(sip_report, i)
            continue
        options = CallOptions(
            room=f"{args.room}-{i}" if args.room and args.runs > 1 else (args.room or ""),
            account=args.account,
            hang_up_mid_answer=args.hang_up_mid_answer,
            hang_up_after_s=args.hang_up_after,
            barge_in=barge_in,
            record_dir=None if args.no_record else settings.cache_dir / "calls",
            web_url=args.web,
            web_lead_s=args.web_lead,
            sip_trunk_number=args.sip,
        )
        if args.hang_up_at_first_word or args.hang_up_after is not None:
            report = await run_call(settings, [], None, options)
        else:
            report = await run_call(settings, questions, transcribe, options)
        reports.append(report)
        if not args.quiet:
            _print_report(report, i)
    summary = _summary(reports)
    print("\nsummary:", json.dumps(summary))
    if args.json:
        payload = {"calls": [r.to_dict() for r in reports], "summary": summary}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(payload, indent=2))
    return 0 if all(r.ttfw_s is not None for r in reports) else 1


def main() -> None:
    # The dev server's well-known key "secret" is short; PyJWT says so on every token.
    warnings.filterwarnings("ignore", message="The HMAC key is .* bytes long")
    parser = argparse.ArgumentParser(prog="python -m caller", description=__doc__)
    parser.add_argument("--room", help="room name (default: a new random room per call)")
    parser.add_argument("--account", help="account id, sent as the firstword.account attribute")
    parser.add_argument("--question", action="append", help="a question to ask (repeatable)")
    parser.add_argument("--wav", action="append", help="a 16-bit WAV file to play as a question")
    parser.add_argument("--runs", type=int, default=1, help="calls to make, one after another")
    parser.add_argument("--json", help="write the reports and summary to this file")
    parser.add_argument("--hang-up-mid-answer", action="store_true")
    parser.add_argument(
        "--hang-up-at-first-word",
        action="store_true",
        help="leave as soon as the greeting is heard (times the first word only)",
    )
    parser.add_argument(
        "--hang-up-after",
        type=float,
        metavar="S",
        help="leave S seconds after joining, whatever was heard (e.g. before the first word)",
    )
    parser.add_argument(
        "--telephone",
        action="store_true",
        help="send the questions as phone-line audio (8 kHz, 300-3400 Hz, μ-law, line hiss)",
    )
    parser.add_argument(
        "--sip",
        metavar="TRUNK_NUMBER",
        help="join as a SIP-kind participant dialling this trunk number (sip.* attributes)",
    )
    parser.add_argument(
        "--dial",
        metavar="NUMBER",
        help="phone the agent over SIP: dial NUMBER (a trunk number) through LiveKit's SIP "
        "bridge, G.711 both ways; times count from the INVITE",
    )
    parser.add_argument(
        "--sip-address",
        metavar="HOST:PORT",
        help="with --dial: the SIP bridge (default: FIRSTWORD_SIP_ADDRESS or 127.0.0.1:5060)",
    )
    parser.add_argument(
        "--barge-in",
        nargs="?",
        const=BARGE_IN,
        metavar="WORDS",
        help=f"speak over the first answer (default words: {BARGE_IN!r}; a backchannel such"
        " as 'Mm-hmm.' should not stop it) and report how soon the agent falls silent and"
        " whether it went on",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--web",
        metavar="URL",
        help="get the token from the web app at URL (python -m agent.web), which pre-dispatches",
    )
    parser.add_argument(
        "--web-lead",
        type=float,
        default=1.0,
        metavar="S",
        help="with --web: seconds between getting the token and joining (a page opened, "
        "then a click; default 1.0)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="do not save the agent's audio to .cache/calls"
    )
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
