"""The HTTP/2 (h2c, prior knowledge) API server of the redaction audit: a real HTTP/2 endpoint
built on the `h2` library (pure-Python RFC 9113 + HPACK) over plain sockets, one thread per
connection, streams answered as they complete (so responses of concurrent streams interleave).

    python3 server.py PORT ACCESS_LOG

Listens on 127.0.0.1 only. Every exchange is appended to ACCESS_LOG as one JSON line with the
request as received (pseudo-headers, headers in order, body) and the response as sent (status,
headers, body before compression, whether it was gzipped): the traffic truth client.py audits.
SIGTERM stops it.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid

import h2.config
import h2.connection
import h2.events

from vaultdb import HOST, VaultDB

DB = VaultDB()
LOG_LOCK = threading.Lock()


def jbody(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Request:
    def __init__(self, headers):
        self.headers = headers  # [(name, value)] as received, pseudo-headers first
        self.body = bytearray()

    def get(self, name: str):
        for n, v in self.headers:
            if n == name:
                return v
        return None


def bearer_claims(req: Request):
    a = req.get("authorization") or ""
    if not a.startswith("Bearer "):
        return None
    return DB.verify_jwt(a[7:])


def route(req: Request):
    """(status, extra headers, body object or bytes, gzip allowed)."""
    method = req.get(":method")
    raw_path = req.get(":path")
    path, _, query = raw_path.partition("?")
    segs = [urllib.parse.unquote(s) for s in path.split("/")[1:]]
    q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    body = bytes(req.body)
    if not (req.get(":authority") or "").startswith(HOST):
        return 421, [], {"error": "misdirected"}, False
    if path == "/health":
        return 200, [], {"status": "ok"}, False
    if segs[:3] == ["api", "v1", "auth"] and segs[3:] == ["login"] and method == "POST":
        d = json.loads(body)
        u = DB.by_email.get(d.get("username"))
        if not u or d.get("password") != u["password"]:
            return 401, [("www-authenticate", 'Bearer realm="vault"')], {"error": "invalid_credentials"}, False
        tok = DB.issue_jwt(u, int(time.time()))
        return 200, [("set-cookie", "sid=%s; Path=/; HttpOnly" % u["sid"]),
                     ("set-cookie", "csrftoken=%s; Path=/" % u["csrf"])], \
            {"access_token": tok, "token_type": "Bearer", "refresh_token": u["refresh"], "expires_in": 3600}, False
    if segs[:3] == ["api", "v1", "users"] and len(segs) == 4 and method == "GET":
        c = bearer_claims(req)
        if not c:
            return 401, [("www-authenticate", 'Bearer realm="vault"')], {"error": "unauthorized"}, False
        u = DB.by_email.get(segs[3])
        if not u:
            return 404, [], {"error": "not_found"}, False
        return 200, [("x-account-owner", u["email"])], {
            "id": u["id"], "email": u["email"], "phone": u["phone"], "ssn": u["ssn"],
            "card": {"number": u["card"], "cvv": u["cvv"]}, "iban": u["iban"], "last_login_ip": u["ip"]}, True
    if segs[:3] == ["api", "v1", "users"] and len(segs) == 5 and segs[4] == "profile" and method == "PUT":
        if req.get("authorization") != "Basic " + DB.basic_b64:
            return 401, [("www-authenticate", 'Basic realm="vault"')], {"error": "unauthorized"}, False
        u = DB.by_id.get(int(segs[3])) if segs[3].isdigit() else None
        if not u:
            return 404, [], {"error": "not_found"}, False
        d = json.loads(body)
        return 200, [], {"id": u["id"], "profile": d, "updated": True}, True
    if segs[:3] == ["api", "v1", "accounts"] and len(segs) == 5 and segs[4] == "balance" and method == "GET":
        if not bearer_claims(req):
            return 401, [], {"error": "unauthorized"}, False
        return 200, [], {"iban": segs[3], "balance_cents": sum(map(ord, segs[3])) * 37, "currency": "EUR"}, False
    if path == "/api/v1/search" and method == "GET":
        key = req.get("x-api-key")
        if key not in {u["api_key"] for u in DB.users}:
            return 401, [], {"error": "missing_api_key"}, False
        hits = [u for u in DB.users if u["email"] == q.get("email") or u["phone"] == q.get("phone")
                or u["ssn"] == q.get("ssn") or u["card"] == q.get("card")]
        return 200, [], {"matches": [{"id": u["id"], "email": u["email"], "phone": u["phone"]} for u in hits]}, True
    if path == "/api/v1/payments" and method == "POST":
        cookie = req.get("cookie") or ""
        sid = dict(p.strip().split("=", 1) for p in cookie.split(";") if "=" in p).get("sid")
        u = next((u for u in DB.users if u["sid"] == sid), None)
        if not u or req.get("x-csrf-token") != u["csrf"]:
            return 403, [], {"error": "forbidden"}, False
        d = json.loads(body)
        seed = ("%s/%s" % (d["card_number"], d["amount_cents"])).encode()
        pid = str(uuid.UUID(bytes=hashlib.sha256(seed).digest()[:16], version=4))
        return 201, [("location", "/api/v1/payments/" + pid)], {"payment_id": pid, "status": "accepted",
                                                                "card_last4": d["card_number"][-4:]}, False
    if path == "/api/v1/integrations" and method == "GET":
        c = bearer_claims(req)
        if not c or q.get("api_key") != DB.query_key or q.get("client_secret") != DB.client_secret:
            return 401, [], {"error": "unauthorized"}, False
        return 200, [], {"integrations": DB.integrations}, True
    if path == "/api/v1/keys" and method == "GET":
        if req.get("x-api-key") not in {u["api_key"] for u in DB.users}:
            return 401, [], {"error": "missing_api_key"}, False
        return 200, [], {"keys": [{"provider": p, **v} for p, v in DB.integrations.items()]}, True
    if path == "/api/v1/password-reset" and method == "POST":
        d = json.loads(body)
        u = DB.by_email.get(d.get("email"))
        if not u:
            return 404, [], {"error": "not_found"}, False
        tok = DB.reset_tokens[DB.users.index(u) % len(DB.reset_tokens)]
        return 202, [], {"reset_token": tok, "email": u["email"]}, False
    if path == "/api/v1/password-reset" and method == "GET":
        if q.get("token") not in DB.reset_tokens:
            return 404, [], {"error": "not_found"}, False
        return 200, [], {"valid": True, "email": q.get("email")}, False
    return 404, [], {"error": "not_found"}, False


class Conn(threading.Thread):
    def __init__(self, sock: socket.socket, peer, log_path: str):
        super().__init__(daemon=True)
        self.sock, self.peer, self.log_path = sock, peer, log_path
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.reqs: dict[int, Request] = {}

    def run(self):
        try:
            self.serve()
        except Exception as e:  # noqa: BLE001 - reported for make.sh to fail on
            print("server error on %s: %r" % (self.peer, e), file=sys.stderr, flush=True)
        finally:
            self.sock.close()

    def serve(self):
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            for ev in self.h2.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    self.reqs[ev.stream_id] = Request(list(ev.headers))
                elif isinstance(ev, h2.events.DataReceived):
                    self.reqs[ev.stream_id].body += ev.data
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.respond(ev.stream_id, self.reqs.pop(ev.stream_id))
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.sock.sendall(self.h2.data_to_send())
                    return
            out = self.h2.data_to_send()
            if out:
                self.sock.sendall(out)

    def respond(self, sid: int, req: Request):
        status, extra, obj, may_gzip = route(req)
        body = obj if isinstance(obj, bytes) else jbody(obj)
        gz = may_gzip and "gzip" in (req.get("accept-encoding") or "") and len(body) >= 128
        wire = gzip.compress(body, mtime=0) if gz else body
        headers = [(":status", str(status)), ("server", "vault-h2/1.0"), ("content-type", "application/json"),
                   ("content-length", str(len(wire))), ("x-request-id", str(uuid.uuid4()))]
        if gz:
            headers.append(("content-encoding", "gzip"))
        headers += extra
        self.h2.send_headers(sid, headers)
        if self.h2.local_flow_control_window(sid) < len(wire):
            raise RuntimeError("flow-control window too small for %d bytes on stream %d" % (len(wire), sid))
        step = self.h2.max_outbound_frame_size
        for i in range(0, len(wire), step):
            self.h2.send_data(sid, wire[i:i + step], end_stream=i + step >= len(wire))
        if not wire:
            self.h2.end_stream(sid)
        rec = {"conn": "%s:%d" % self.peer, "stream": sid,
               "request": {"headers": req.headers, "body": bytes(req.body).decode()},
               "response": {"headers": headers, "body": body.decode(), "gzip": gz}}
        with LOG_LOCK, open(self.log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def main():
    port, log_path = int(sys.argv[1]), sys.argv[2]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        s, peer = srv.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Conn(s, peer, log_path).start()


if __name__ == "__main__":
    main()
