"""A stub OpenAI-compatible chat server on loopback for the judge tests.

``StubServer(respond)`` serves ``POST /v1/chat/completions`` on 127.0.0.1 (a free port) in a
background thread; ``respond(n, body)`` (n = the request's number, from 0) returns
``(status, headers, body_bytes, delay_s)``. It records every request, the most requests in flight
at once, and shuts itself down after ``lifetime`` seconds even if a test forgets to.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(text: str) -> tuple[int, dict, bytes, float]:
    payload = {"id": "stub", "object": "chat.completion",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode(), 0.0


class StubServer:
    def __init__(self, respond, lifetime: float = 60.0):
        self.respond = respond
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    n = len(stub.requests)
                    stub.requests.append(body)
                    stub.headers.append(dict(self.headers))
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    if self.path != "/v1/chat/completions":
                        status, headers, data, delay = 404, {}, b"not found", 0.0
                    else:
                        status, headers, data, delay = stub.respond(n, body)
                    time.sleep(delay)
                finally:  # before the answer goes out: the client may read it and send its next request at once
                    with stub._lock:
                        stub.in_flight -= 1
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    def __enter__(self):
        self._thread.start()
        self._timer.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __exit__(self, *exc):
        self._timer.cancel()
        self.stop()
