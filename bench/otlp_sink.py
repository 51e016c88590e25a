"""An OTLP/HTTP receiver that discards what it is sent, for the benchmark's tracing runs.

Run pinned to the client's core (``taskset -c 1 python -m bench.otlp_sink``):
the service exports to it at full speed, so the network and a collector are never what is
measured; only the service's own cost of making and exporting spans is. ``GET /stats``
answers how many export requests and bytes it has taken.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection
    lock = threading.Lock()
    posts = 0
    received = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        size = int(self.headers.get("content-length") or 0)
        self.rfile.read(size)
        with Sink.lock:
            Sink.posts += 1
            Sink.received += size
        self._answer(b"", "application/x-protobuf")  # an empty ExportTraceServiceResponse

    def do_GET(self) -> None:  # noqa: N802
        with Sink.lock:
            stats = {"posts": Sink.posts, "bytes": Sink.received}
        self._answer(json.dumps(stats).encode(), "application/json")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Sink).serve_forever()


if __name__ == "__main__":
    main()
