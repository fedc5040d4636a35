"""The container images' HEALTHCHECK command (agent/healthcheck.py) against real HTTP servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import healthcheck


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path in ("/live", "/healthz") else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    _Answer.status = 200


def test_each_process_is_asked_on_its_own_port_setting_and_path() -> None:
    assert healthcheck.url_for("worker", {}) == "http://127.0.0.1:8081/live"
    assert healthcheck.url_for("web", {}) == "http://127.0.0.1:8090/healthz"
    assert healthcheck.url_for("worker", {"FIRSTWORD_HTTP_PORT": "9000"}).endswith(":9000/live")
    assert healthcheck.url_for("web", {"FIRSTWORD_WEB_PORT": "80"}).endswith(":80/healthz")
    for port in ("0", "eighty"):
        with pytest.raises(ValueError, match="FIRSTWORD_HTTP_PORT"):
            healthcheck.url_for("worker", {"FIRSTWORD_HTTP_PORT": port})


def test_healthy_on_200_unhealthy_on_an_error_status_or_nobody(
    server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(server.server_address[1])
    monkeypatch.setenv("FIRSTWORD_HTTP_PORT", port)
    monkeypatch.setenv("FIRSTWORD_WEB_PORT", port)
    assert healthcheck.main(["worker"]) == 0
    assert healthcheck.main(["web"]) == 0
    _Answer.status = 503
    assert healthcheck.main(["worker"]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    server.shutdown()
    server.server_close()
    assert healthcheck.main(["worker"]) == 1
    assert "unhealthy" in capsys.readouterr().err


def test_an_unknown_process_is_a_usage_error() -> None:
    assert healthcheck.main([]) == 2
    assert healthcheck.main(["desk"]) == 2
