#!/usr/bin/env python3
"""A tiny HTTP backend for the test bed's HAProxy: answers every GET/HEAD with TEXT.

Usage: backend.py PORT TEXT   (listens on 127.0.0.1:PORT; body is TEXT, no newline)
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so HAProxy can reuse connections
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the
    # peer's delayed ACK adds ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    body = b""

    def _answer(self, with_body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, format, *args) -> None:  # one line per request is noise here
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # HAProxy ends its health checks with a TCP RST: not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main() -> None:
    port, text = int(sys.argv[1]), sys.argv[2]
    Handler.body = text.encode()
    server = Server(("127.0.0.1", port), Handler)
    print(f"backend {text!r} listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
