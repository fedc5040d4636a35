"""The container images' HEALTHCHECK: `python -m agent.healthcheck worker|web`.

Asks the process in the same container on the port its settings give it: the worker's
`/live` on `FIRSTWORD_HTTP_PORT` (its event loop answers; not `/ready`, since a worker that is
draining or reconnecting is not broken), the web app's `/healthz` on `FIRSTWORD_WEB_PORT`.
Exit 0 on a 200 within 2 s, 1 otherwise, with one line that says why.

Why a module and not a URL in the Dockerfile: the check follows the port settings (a port
written into the image would check the wrong one once an operator moves it), and the images
need no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

from .settings import Settings

TIMEOUT_S = 2.0

# What each process answers on: (the port's setting, its variable, the path asked).
CHECKS = {
    "worker": ("http_port", "FIRSTWORD_HTTP_PORT", "/live"),
    "web": ("web_port", "FIRSTWORD_WEB_PORT", "/healthz"),
}


def url_for(process: str, environ: Mapping[str, str] = os.environ) -> str:
    """The URL to ask for `process` ("worker" or "web"), from the environment or the default."""
    field, variable, path = CHECKS[process]
    port = environ.get(variable) or str(Settings.model_fields[field].default)
    if not port.isdigit() or int(port) == 0:
        raise ValueError(f"{variable}={port!r}: the health check needs a fixed port")
    return f"http://127.0.0.1:{int(port)}{path}"


def check(process: str) -> str | None:
    """None when healthy, otherwise why not."""
    try:
        url = url_for(process)
    except ValueError as error:
        return str(error)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        return f"{url}: {error}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: python -m agent.healthcheck {'|'.join(CHECKS)}", file=sys.stderr)
        return 2
    problem = check(argv[0])
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
