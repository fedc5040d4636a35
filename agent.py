"""Run the firstword worker: `python agent.py dev|start|console|connect --room NAME`."""

from __future__ import annotations

import sys

from agent.settings import get_settings
from agent.worker import native_memory
from agent.worker.preflight import (
    PreflightError,
    check_accounts,
    check_secrets,
    check_server_reachable,
    startup_warnings,
)

_NEEDS_SERVER = {"dev", "start", "connect"}


def main() -> None:
    settings = get_settings()
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        check_accounts(settings)
        if command in _NEEDS_SERVER:
            check_secrets(settings)
            check_server_reachable(settings)
    except PreflightError as exc:
        print(f"firstword: {exc}", file=sys.stderr)
        sys.exit(2)
    # Said once here rather than in every job process's prewarm.
    for warning in startup_warnings(settings):
        print(f"firstword: warning: {warning}", file=sys.stderr)

    # Before any thread of a call exists (agent/worker/native_memory.py).
    native_memory.limit_arenas(settings.malloc_arenas)

    from livekit.agents import cli

    from agent.worker.server import server

    cli.run_app(server)


if __name__ == "__main__":
    main()
