"""A local OTLP/HTTP trace receiver for arm B6 that accepts every export and keeps only counts.

The test suite's receiver (tests/support/otlp.py) decodes every span, which costs this machine's
CPU as much as the services it measures; a real collector runs elsewhere. This one reads the
body and answers an empty ``ExportTraceServiceResponse`` (zero bytes of protobuf), so the
services pay for recording and exporting spans, and nobody for decoding them.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.processes import free_port


class OtlpSink:
    """Listens on 127.0.0.1; ``endpoint`` is the value for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                size = int(self.headers.get("Content-Length", 0))
                self.rfile.read(size)
                sink.exports += 1
                sink.bytes += size
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
