"""An HTTP endpoint on 127.0.0.1 that answers 200 and then trickles its body a byte at a
time, never finishing: each read succeeds well within any per-read timeout."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TricklingEndpoint:
    def __init__(self, *, interval: float = 0.1) -> None:
        self.interval = interval
        self.requests = 0
        self._stopped = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v3/certs"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> TricklingEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                endpoint.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    while not endpoint._stopped.is_set():
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(endpoint.interval)
                except OSError:
                    pass  # the client gave up: what the test wants

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
