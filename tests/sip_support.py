"""What the SIP end-to-end tests and the SIP benchmark share: the phone stack and the far phones.

`sip_stack` starts Redis, livekit-server in Redis mode and LiveKit's SIP bridge with
`scripts/sip.sh` (which provisions each account's trunk and dispatch rule), on ports derived
from the tests' base port. `person_phone` is a real baresip that answers a transferred call,
plays a short line and records what it hears; `busy_phone` is sipp answering 486 Busy Here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.settings import PROJECT_ROOT

SIP_SCRIPT = PROJECT_ROOT / "scripts" / "sip.sh"
# Loopback only: the server in Redis mode refuses a secret under 32 characters.
TEST_SECRET = "firstword-sip-tests-loopback-secret-0123456789"


@dataclass(frozen=True)
class SipPorts:
    livekit: int
    redis: int
    sip: int
    rtp: str
    person: int
    person_rtp: str
    busy: int

    @staticmethod
    def from_base(base: int) -> SipPorts:
        return SipPorts(
            livekit=base + 30,
            redis=base + 20,
            sip=base + 60,
            rtp=f"{base + 100}-{base + 199}",
            person=base + 70,
            person_rtp=f"{base + 80}-{base + 89}",
            busy=base + 75,
        )


def stack_env(ports: SipPorts, cache_dir: Path, accounts_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LIVEKIT_PORT": str(ports.livekit),
        "REDIS_PORT": str(ports.redis),
        "SIP_PORT": str(ports.sip),
        "SIP_RTP_PORTS": ports.rtp,
        "LIVEKIT_URL": f"ws://127.0.0.1:{ports.livekit}",
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": TEST_SECRET,
        "FIRSTWORD_CACHE_DIR": str(cache_dir),
        "FIRSTWORD_ACCOUNTS_DIR": str(accounts_dir),
        "FIRSTWORD_SIP_ADDRESS": f"127.0.0.1:{ports.sip}",
    }


@contextmanager
def sip_stack(env: Mapping[str, str]) -> Iterator[None]:
    """Redis + livekit-server (Redis mode) + livekit-sip, provisioned; stopped on exit.

    Also installs the far phones of the tests: baresip and sipp, from the OS packages."""
    subprocess.run(
        [str(PROJECT_ROOT / "scripts" / "os-packages.sh"), "baresip-core", "sip-tester"],
        check=True,
        timeout=900,
    )
    try:
        # The first run builds the bridge (a few minutes); later runs find it current.
        proc = subprocess.run(
            [str(SIP_SCRIPT), "start"], env=dict(env), capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"sip.sh start failed:\n{proc.stdout}\n{proc.stderr}"
        yield
    finally:
        subprocess.run([str(SIP_SCRIPT), "stop"], env=dict(env), check=False, timeout=60)


def write_wav_8k(path: Path, samples: object) -> None:
    """16-bit mono 8 kHz WAV (baresip's aufile wants the call's rate)."""
    import numpy as np

    from caller.recorder import save_wav

    save_wav(path, np.asarray(samples, dtype=np.float32), 8000)


@contextmanager
def person_phone(workdir: Path, port: int, rtp_ports: str, line_wav: Path) -> Iterator[Path]:
    """baresip answering `sip:person@127.0.0.1:<port>` at once; yields its recordings folder.

    It plays `line_wav` (8 kHz) to whoever calls and `sndfile` records the decoded audio it
    hears as `dump-…-dec.wav`. When the file ends, baresip hangs up, so give it a long one.
    """
    assert shutil.which("baresip"), "baresip is not installed (scripts/os-packages.sh baresip-core)"
    workdir.mkdir(parents=True, exist_ok=True)
    recordings = workdir / "recordings"
    recordings.mkdir(exist_ok=True)
    (workdir / "config").write_text(
        "poll_method epoll\n"
        f"sip_listen 127.0.0.1:{port}\n"
        "net_interface 127.0.0.1\n"
        f"rtp_ports {rtp_ports}\n"
        f"audio_source aufile,{line_wav}\n"
        f"audio_player aufile,{recordings / 'played.wav'}\n"
        f"audio_alert aufile,{recordings / 'alert.wav'}\n"
        "module_path /usr/lib/baresip/modules\n"
        "module g711.so\n"
        "module aufile.so\n"
        "module sndfile.so\n"
        "module_app account.so\n"
        "module_app menu.so\n"
        f"snd_path {recordings}\n"
    )
    (workdir / "accounts").write_text(
        "<sip:person@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU,PCMA\n"
    )
    log = workdir / "baresip.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["baresip", "-f", str(workdir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 15
        while "baresip is ready" not in log.read_text():
            assert proc.poll() is None, f"baresip exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"baresip not ready:\n{log.read_text()}"
            time.sleep(0.1)
        yield recordings
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


BUSY_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE" />
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]busy[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" />
</scenario>
"""


@contextmanager
def busy_phone(workdir: Path, port: int) -> Iterator[None]:
    """sipp on `sip:busy@127.0.0.1:<port>`, refusing every call with 486 Busy Here."""
    assert shutil.which("sipp"), "sipp is not installed (scripts/os-packages.sh sip-tester)"
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "busy.xml"
    scenario.write_text(BUSY_SCENARIO)
    log = workdir / "sipp.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-nostdin"],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        time.sleep(0.5)
        assert proc.poll() is None, f"sipp exited:\n{log.read_text()[-2000:]}"
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
