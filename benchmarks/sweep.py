"""Server API calls per second of the unanswered-room sweep across a fleet, before and after
the sweep lease (agent/worker/unanswered.py, agent/worker/sweep_lease.py), and how long a
takeover takes.

A real livekit-server with ROOMS rooms, each with two light participants (rtc.Room
connections without tracks): a caller and an agent-kind participant, i.e. an answered call
as the sweep sees it, so each sweep costs one ListRooms plus one ListParticipants per room.
WORKERS OS processes each run the real `agent.worker.unanswered.Watcher` (the code a worker runs;
not full workers with engines, which would need ~1 GB each; `has_room` is always true), in
two modes side by side in one invocation:

- before: no REDIS_URL, so every process sweeps (as every worker did before the lease);
- after: REDIS_URL set, so the lease holder sweeps for the fleet.

API calls are counted twice: by the server (its Prometheus counter
livekit_node_twirp_request_status, sampled every second: p50/p90 of calls per second over the
window) and by the clients (each process counts its Twirp requests; the total over the
window). Then, in `after`, the holder is killed with SIGKILL `--kills` times and the takeover
time is how long until another process starts a sweep.

    scripts/bench-sweep.sh [--workers 20] [--rooms 50] [--window 20] [--kills 3]
                           [--modes before,after]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent.settings import get_settings

MODES = ("before", "after")
_TWIRP = re.compile(r"^livekit_node_twirp_request_status\{[^}]*\}\s+([0-9.eE+]+)$", re.M)


# ---- a sweeping process: the real Watcher, counting its API calls --------------------------


def child_main(state: Path) -> None:
    """Run the real Watcher; write `calls sweeps last_sweep_wall` to `state` 5 times a second."""
    from livekit.api import twirp_client

    from agent.worker import unanswered

    counts = {"calls": 0, "sweeps": 0, "last_sweep": 0.0}
    request = twirp_client.TwirpClient.request

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["calls"] += 1
        return await request(self, *args, **kwargs)

    twirp_client.TwirpClient.request = counted  # type: ignore[method-assign]

    class Counted(unanswered.Watcher):
        async def sweep(self, lkapi: Any) -> int:
            counts["sweeps"] += 1
            counts["last_sweep"] = time.time()
            return await super().sweep(lkapi)

    async def report() -> None:
        tmp = state.with_suffix(".tmp")
        while True:
            tmp.write_text(f"{counts['calls']} {counts['sweeps']} {counts['last_sweep']:.3f}")
            tmp.replace(state)
            await asyncio.sleep(0.2)

    async def main() -> None:
        settings = get_settings()
        watcher = Counted(settings, lambda: True, unanswered.lease_for(settings))
        reporter = asyncio.create_task(report())
        try:
            await watcher.run()
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)

    loop = asyncio.new_event_loop()
    task = loop.create_task(main())
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()


# ---- the rooms ------------------------------------------------------------------------------


async def open_rooms(count: int, prefix: str) -> tuple[list[Any], list[str]]:
    """`count` rooms made with CreateRoom, each joined by a caller and an agent (no tracks)."""
    from livekit import api, rtc

    settings = get_settings()
    secret = settings.livekit_api_secret.get_secret_value()
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    async with api.LiveKitAPI(settings.livekit_url, settings.livekit_api_key, secret) as lkapi:
        for name in names:
            await asyncio.wait_for(
                lkapi.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=600)), 5.0
            )
    rooms: list[rtc.Room] = []
    limit = asyncio.Semaphore(8)

    async def join(name: str, kind: Literal["standard", "agent"]) -> None:
        token = (
            api.AccessToken(settings.livekit_api_key, secret)
            .with_identity(f"{kind}-{name}")
            .with_kind(kind)
            .with_grants(api.VideoGrants(room_join=True, room=name))
            .to_jwt()
        )
        room = rtc.Room()
        async with limit:
            await asyncio.wait_for(room.connect(settings.livekit_url, token), 20.0)
        rooms.append(room)

    # A caller (the server counts it in num_participants, so the sweep lists the room's
    # participants; an agent alone is not counted) and its agent (so the room is answered).
    await asyncio.gather(*(join(n, kind) for n in names for kind in ("standard", "agent")))
    return rooms, names


async def close_rooms(rooms: list[Any], names: list[str]) -> None:
    from livekit import api

    settings = get_settings()
    for room in rooms:
        try:
            await asyncio.wait_for(room.disconnect(), 5.0)
        except (TimeoutError, RuntimeError):
            pass
    async with api.LiveKitAPI(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
    ) as lkapi:
        for name in names:
            try:
                await asyncio.wait_for(lkapi.room.delete_room(api.DeleteRoomRequest(room=name)), 5)
            except (TimeoutError, api.TwirpError):
                pass


# ---- a mode: start the processes, sample, (kill the holder) ---------------------------------


def server_calls(prometheus: str | None) -> float | None:
    """The server's count of Twirp requests so far (every service, method and status)."""
    if not prometheus:
        return None
    try:
        with urllib.request.urlopen(prometheus, timeout=2.0) as response:
            text = response.read().decode()
    except OSError:
        return None
    return sum(float(v) for v in _TWIRP.findall(text))


@dataclass
class Fleet:
    states: dict[int, Path] = field(default_factory=dict)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def read(self) -> dict[int, tuple[int, int, float]]:
        out: dict[int, tuple[int, int, float]] = {}
        for pid, path in self.states.items():
            try:
                calls, sweeps, last = path.read_text().split()
            except (OSError, ValueError):
                continue
            out[pid] = (int(calls), int(sweeps), float(last))
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_fleet(workers: int, env: dict[str, str], tmp: Path) -> Fleet:
    fleet = Fleet()
    for i in range(workers):
        state = tmp / f"w{i}"
        with open(tmp / f"w{i}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.sweep", "--child", str(state)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        fleet.states[proc.pid] = state
        fleet.procs[proc.pid] = proc
    deadline = time.monotonic() + 180
    while len(fleet.read()) < workers:
        dead = [p for p in fleet.procs.values() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            fleet.stop()
            logs = "\n".join((tmp / f"w{i}.log").read_text()[-2000:] for i in range(workers))
            raise SystemExit(f"sweeping processes did not start:\n{logs}")
        time.sleep(0.5)
    return fleet


def run_mode(
    mode: str, args: argparse.Namespace, tmp: Path, prometheus: str | None
) -> dict[str, Any]:
    env = {**os.environ, "FIRSTWORD_LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    if mode == "after":
        env["REDIS_URL"] = args.redis_url
        import redis

        redis.Redis.from_url(args.redis_url, socket_timeout=2).delete(
            "firstword:unanswered:sweeper"
        )
    print(f"[{mode}] starting {args.workers} sweeping processes...", flush=True)
    fleet = start_fleet(args.workers, env, tmp / mode)
    try:
        time.sleep(args.warmup)
        per_second_server: list[float] = []
        per_second_client: list[float] = []
        sweepers: set[int] = set()
        start_counts = fleet.read()
        start_server = server_calls(prometheus)
        prev_client = sum(c for c, _, _ in start_counts.values())
        prev_server = start_server
        t0 = time.monotonic()
        for second in range(1, int(args.window) + 1):
            time.sleep(max(0.0, t0 + second - time.monotonic()))
            counts = fleet.read()
            client = sum(c for c, _, _ in counts.values())
            per_second_client.append(client - prev_client)
            prev_client = client
            now_server = server_calls(prometheus)
            if now_server is not None and prev_server is not None:
                per_second_server.append(now_server - prev_server)
            prev_server = now_server
            for pid, (_, sweeps, _) in counts.items():
                if sweeps > start_counts.get(pid, (0, 0, 0.0))[1]:
                    sweepers.add(pid)
        elapsed = time.monotonic() - t0
        end_counts = fleet.read()
        end_server = server_calls(prometheus)
        total_client = sum(c for c, _, _ in end_counts.values()) - sum(
            c for c, _, _ in start_counts.values()
        )
        total_sweeps = sum(s for _, s, _ in end_counts.values()) - sum(
            s for _, s, _ in start_counts.values()
        )
        result: dict[str, Any] = {
            "mode": mode,
            "window_s": round(elapsed, 1),
            "client_calls": total_client,
            "client_per_s": per_second_client,
            "server_calls": None
            if end_server is None or start_server is None
            else end_server - start_server,
            "server_per_s": per_second_server,
            "sweeps_per_s": total_sweeps / elapsed,
            "sweepers": len(sweepers),
        }
        if mode == "after" and args.kills:
            result["takeover_s"] = takeovers(fleet, args)
        return result
    finally:
        fleet.stop()


def takeovers(fleet: Fleet, args: argparse.Namespace) -> list[float]:
    import redis

    client = redis.Redis.from_url(args.redis_url, socket_timeout=2, decode_responses=True)
    times: list[float] = []
    for _ in range(args.kills):
        holder = client.get("firstword:unanswered:sweeper")
        if not holder:
            print("  no holder of the lease to kill", flush=True)
            break
        pid = int(str(holder).split(":")[1])
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        fleet.procs.pop(pid).wait()
        fleet.states.pop(pid)
        deadline = time.monotonic() + 30
        taken = None
        while taken is None and time.monotonic() < deadline:
            time.sleep(0.02)
            later = [last for _, _, last in fleet.read().values() if last > killed_at]
            taken = min(later) - killed_at if later else None
        if taken is None:
            print(f"  no process swept within 30 s of killing {pid}", flush=True)
            break
        times.append(taken)
        print(f"  killed holder {pid}: another process swept {taken:.2f} s later", flush=True)
        time.sleep(1.5)  # the new holder settles (its next renewals) before the next kill
    return times


# ---- report ---------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "n/a"


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(
        f"Unanswered-room sweep: {args.workers} sweeping processes (each the real "
        f"agent.worker.unanswered.Watcher; not full workers with engines, ~1 GB each), "
        f"{args.rooms} rooms (a caller and an agent each), sweep every "
        f"{get_settings().unanswered_sweep:g} s, {args.window:g} s window, one 2-core machine."
    )
    print("API calls per second to the LiveKit server (server: its Prometheus twirp counter):")
    header = (
        f"{'mode':8} {'server p50':>10} {'server p90':>10} {'server total':>12} "
        f"{'client p50':>10} {'client p90':>10} {'client total':>12} {'sweeps/s':>8} "
        f"{'sweepers':>8}"
    )
    print(header)
    by_mode = {r["mode"]: r for r in results}
    for r in results:
        server_total = "n/a" if r["server_calls"] is None else f"{r['server_calls']:.0f}"
        print(
            f"{r['mode']:8} {_pct(r['server_per_s'], 50):>10} {_pct(r['server_per_s'], 90):>10} "
            f"{server_total:>12} {_pct(r['client_per_s'], 50):>10} "
            f"{_pct(r['client_per_s'], 90):>10} {r['client_calls']:>12} "
            f"{r['sweeps_per_s']:>8.1f} {r['sweepers']:>8}"
        )
    if "before" in by_mode and "after" in by_mode:
        before, after = by_mode["before"], by_mode["after"]
        for source in ("server", "client"):
            b = np.median(before[f"{source}_per_s"]) if before[f"{source}_per_s"] else 0
            a = np.median(after[f"{source}_per_s"]) if after[f"{source}_per_s"] else 0
            ratio = f"{b / a:.1f}x fewer" if a else "n/a"
            print(f"before/after ({source} p50 calls/s): {ratio}")
    expected = 1 + args.rooms
    print(
        f"(one sweep = ListRooms + {args.rooms} ListParticipants = {expected} calls; "
        f"every process sweeping ~1/s would be ~{expected * args.workers}/s if the machine "
        "kept up, one sweeper ~"
        f"{expected}/s)"
    )
    if "after" in by_mode:
        takeover = by_mode["after"].get("takeover_s") or []
        if takeover:
            print(
                f"takeover after kill -9 of the holder ({len(takeover)} kills, lease TTL "
                f"{3 * get_settings().unanswered_sweep:g} s): "
                + ", ".join(f"{t:.2f}" for t in takeover)
                + f" s; p50 {np.median(takeover):.2f} s, max {max(takeover):.2f} s"
            )
        else:
            print("takeover: not measured (see above)")
    if any(not r["server_per_s"] for r in results):
        print("server counts: not measured (no LIVEKIT_PROMETHEUS_PORT on this server)")
    print(json.dumps({"results": results}, default=float))


async def parent(args: argparse.Namespace) -> None:
    rooms, names = await open_rooms(args.rooms, f"sweep-{uuid.uuid4().hex[:6]}")
    print(f"{len(names)} rooms made, each with a caller and an agent", flush=True)
    try:
        # ListRooms' participant counts are refreshed every 5 s: let them catch up.
        await asyncio.sleep(6)
        with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmpdir:
            tmp = Path(tmpdir)
            results = []
            for mode in args.modes:
                (tmp / mode).mkdir()
                results.append(
                    await asyncio.to_thread(run_mode, mode, args, tmp, args.prometheus or None)
                )
        report(results, args)
    finally:
        await close_rooms(rooms, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds per mode")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--kills", type=int, default=3, help="holders killed in `after`")
    parser.add_argument("--modes", default="before,after")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", ""))
    parser.add_argument("--prometheus", default=os.environ.get("BENCH_LIVEKIT_METRICS", ""))
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown mode(s) {', '.join(unknown)}; choose from {MODES}")
    if "after" in args.modes and not args.redis_url:
        parser.error("--redis-url (or BENCH_REDIS_URL) is needed for the `after` mode")
    asyncio.run(parent(args))


if __name__ == "__main__":
    main()
