#!/usr/bin/env python3
"""Tiny JSON API backend for the apitap nginx test config.

Listens on 127.0.0.1:PORT (default 18090), HTTP/1.1 keep-alive. Reads the
whole request body (Content-Length or chunked) and answers JSON:
  GET    /api/...      200 {"path":..., "items":[...]}
  POST   /api/...      201 {"created":..., "received_bytes":N}
  PUT    /api/...      200 {"updated":..., "received_bytes":N}
  PATCH  /api/...      200
  DELETE /api/...      204 (no body)
  any    /api/missing* 404 {"error":"not found"}
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "apitap-backend/1"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, obj=None):
        body = b"" if obj is None else (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        body = self._read_body()
        path = self.path
        if path.startswith("/api/missing"):
            return self._send(404, {"error": "not found", "path": path})
        m = self.command
        if m == "GET" or m == "HEAD":
            return self._send(200, {"path": path, "items": [{"id": i, "name": f"item-{i}"} for i in range(3)]})
        if m == "POST":
            return self._send(201, {"created": path, "received_bytes": len(body)})
        if m in ("PUT", "PATCH"):
            return self._send(200, {"updated": path, "method": m, "received_bytes": len(body)})
        if m == "DELETE":
            return self._send(204)
        return self._send(405, {"error": "method not allowed"})

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18090
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
