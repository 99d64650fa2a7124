"""The clients of the HTTP/2 redaction audit, and the truth they leave.

    python3 client.py PORT ACCESS_LOG TRUTH

Three HTTP/2 client implementations talk h2c with prior knowledge to server.py:
- the `h2` library (its own HPACK encoder: `authorization` and short cookies never indexed),
  five connections at once, each sending four users' requests in concurrent batches (streams
  interleaved, request bodies cut into three DATA frames, some PADDED);
- curl (libnghttp2), one connection per request (curl 7.88 cannot reuse a prior-knowledge
  connection: its second transfer fails with "Error in the HTTP2 framing layer");
- nghttp (libnghttp2, another HPACK encoder that indexes what `h2` does not, plus its PRIORITY
  tree): one multiplexed connection for a user's plain GETs, one per request otherwise.

Secrets are planted in the path, the query (percent-encoded where they must be), headers
(`authorization` Bearer and Basic, `x-api-key`, `cookie`, `x-csrf-token`, typed values in
plain headers and in a URL-valued `referer`), JWT claims, request and response JSON bodies,
gzip-compressed response bodies and response headers (`set-cookie`, a typed value in a custom
header); a 22 KB header block is carried on in CONTINUATION frames.

Afterwards the server's access log is the record of what travelled: the client fails if it
differs from what the clients sent and received (count and (method, path, status) multiset),
audits it (a naive detector hit that is not a registered value stops the run) and writes the
truth (format in README.md).
"""
from __future__ import annotations

import base64
import collections
import gzip
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events
import h2.settings

from vaultdb import HOST, VaultDB  # noqa: I001 (sets up the path to ../fixtures.py)
import fixtures as fx  # noqa: E402

DB = VaultDB()
NOW = int(time.time())
SVC_JWT = DB.service_jwt(NOW)

PY_CONNS = 5          # h2-library connections
USERS_PER_CONN = 4    # users served on one h2 connection
CURL_USERS = 2        # users whose traffic curl sends
NGHTTP_USERS = 2      # users whose traffic nghttp sends


def q(v: str) -> str:
    return urllib.parse.quote(v, safe="")


class Req:
    def __init__(self, method, path, headers, body=None, expect=200, gz=False):
        self.method, self.path, self.headers = method, path, headers
        self.body = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        self.expect, self.gz = expect, gz
        self.status = None
        self.resp_headers: list = []
        self.resp_body = b""


def journey(u: dict, i: int) -> list[list[Req]]:
    """One user's requests in rounds; each round's requests go out concurrently. `{token}` in
    a header is the user's access token from the login of round 0."""
    email_in_path = q(u["email"]) if i % 2 else u["email"].replace("+", "%2B")
    gz = [("accept-encoding", "gzip")] if i % 2 == 0 else []
    bearer = [("authorization", "Bearer {token}")]
    rounds = []
    login = []
    if i % 5 == 1:
        login.append(Req("POST", "/api/v1/auth/login", [("content-type", "application/json")],
                         {"username": u["email"], "password": u["password"][::-1]}, 401))
    rounds.append(login)
    rounds.append([Req("POST", "/api/v1/auth/login", [("content-type", "application/json")],
                       {"username": u["email"], "password": u["password"]})])
    rounds.append([
        Req("GET", "/api/v1/users/" + email_in_path, bearer + gz, gz=bool(gz)),
        Req("GET", "/api/v1/accounts/%s/balance" % u["iban"], bearer + [("x-forwarded-for", u["ip"])]),
        Req("GET", "/api/v1/search?email=%s&phone=%s&ssn=%s&card=%s"
            % (q(u["email"]), q(u["phone"]), u["ssn"], u["card"]),
            [("x-api-key", u["api_key"]), ("x-user-email", u["email"])] + gz, gz=bool(gz)),
        Req("POST", "/api/v1/payments",
            [("content-type", "application/json"), ("cookie", "sid=%s; csrftoken=%s" % (u["sid"], u["csrf"])),
             ("x-csrf-token", u["csrf"])],
            {"card_number": u["card"], "cvv": u["cvv"], "iban": u["iban"], "email": u["email"],
             "amount_cents": 1000 + i * 37}, 201),
        Req("PUT", "/api/v1/users/%d/profile" % u["id"],
            [("content-type", "application/json"), ("authorization", "Basic " + DB.basic_b64)] + gz,
            {"email": u["email"], "phone": u["phone_us"], "ssn": u["ssn"], "ip": u["ip"]}, gz=bool(gz)),
        Req("POST", "/api/v1/password-reset",
            [("content-type", "application/json"),
             ("referer", "https://app.example.test/forgot?email=" + q(u["email"]))],
            {"email": u["email"]}, 202),
    ])
    last = [
        Req("GET", "/api/v1/password-reset?token=%s&email=%s"
            % (DB.reset_tokens[DB.users.index(u) % len(DB.reset_tokens)], q(u["email"])), []),
        Req("GET", "/api/v1/integrations?api_key=%s&client_secret=%s" % (DB.query_key, DB.client_secret),
            [("authorization", "Bearer " + SVC_JWT), ("accept-encoding", "gzip")], gz=True),
        Req("GET", "/api/v1/keys", [("x-api-key", u["api_key"]), ("accept-encoding", "gzip, deflate")], gz=True),
        Req("GET", "/health", []),
    ]
    if i % 3 == 0:
        last.append(Req("GET", "/api/v1/search?email=" + q(u["email"]), [], expect=401))
    if i % 5 == 0:
        # A header block larger than a frame: the secrets after the filler travel in a
        # CONTINUATION frame, and the filler (larger than the HPACK table) empties the table.
        last.append(Req("GET", "/api/v1/keys", [("x-trace-baggage", "k=" + "v" * 22000),
                                                ("x-api-key", u["api_key"]),
                                                ("cookie", "sid=%s; csrftoken=%s" % (u["sid"], u["csrf"]))]))
    if i % 4 == 2:
        last.append(Req("GET", "/api/v1/users/nobody%40example.com", bearer, expect=404))
    rounds.append(last)
    return [r for r in rounds if r]


# ---------------------------------------------------------------- the h2-library client


def h2_connection(port: int, users: list[tuple[dict, int]], done: list):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 22})
    c.increment_flow_control_window(1 << 24)
    s.sendall(c.data_to_send())
    tokens: dict[int, str] = {}
    plans = [(u, journey(u, i)) for u, i in users]
    n_rounds = max(len(p) for _, p in plans)
    for r in range(n_rounds):
        batch = []  # (user, Req)
        for u, p in plans:
            if r < len(p):
                batch += [(u, x) for x in p[r]]
        streams = {}
        for k, (u, x) in enumerate(batch):
            sid = c.get_next_available_stream_id()
            hdrs = [(":method", x.method), (":scheme", "http"), (":authority", "%s:%d" % (HOST, port)),
                    (":path", x.path), ("user-agent", "vault-client/2.0 (h2)")]
            hdrs += [(n, v.replace("{token}", tokens.get(u["id"], ""))) for n, v in x.headers]
            if x.body:
                hdrs.append(("content-length", str(len(x.body))))
            c.send_headers(sid, hdrs, end_stream=not x.body)
            streams[sid] = x
        s.sendall(c.data_to_send())
        # Bodies: a third at a time, round robin over the streams, every other stream PADDED.
        pending = {sid: x.body for sid, x in streams.items() if x.body}
        while pending:
            for sid in list(pending):
                b = pending[sid]
                n = max(1, -(-len(streams[sid].body) // 3))
                chunk, rest = b[:n], b[n:]
                c.send_data(sid, chunk, end_stream=not rest, pad_length=(sid % 7) * 3 if sid % 4 == 1 else None)
                if rest:
                    pending[sid] = rest
                else:
                    del pending[sid]
            s.sendall(c.data_to_send())
        open_streams = set(streams)
        while open_streams:
            data = s.recv(65536)
            if not data:
                raise RuntimeError("server closed the connection with streams open")
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    x = streams[ev.stream_id]
                    x.resp_headers = list(ev.headers)
                    x.status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id].resp_body += ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    open_streams.discard(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    raise RuntimeError("stream %d reset" % ev.stream_id)
            out = c.data_to_send()
            if out:
                s.sendall(out)
        for sid, x in streams.items():
            body = x.resp_body
            if ("content-encoding", "gzip") in x.resp_headers:
                body = gzip.decompress(body)
            if x.path == "/api/v1/auth/login" and x.status == 200:
                u = next(u for u, y in batch if y is x)
                tokens[u["id"]] = json.loads(body)["access_token"]
            done.append(("h2", x.method, x.path, x.status, x.expect))
    c.close_connection()
    s.sendall(c.data_to_send())
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()


# ---------------------------------------------------------------- curl and nghttp (libnghttp2)


def curl_user(port: int, u: dict, i: int, done: list):
    """curl, one connection per request (curl 7.88 cannot reuse a prior-knowledge h2c
    connection: its second transfer fails with "Error in the HTTP2 framing layer"). The token
    is minted here, as valid for the server as a login's."""
    tok = DB.issue_jwt(u, NOW)
    for rnd in journey(u, i):
        for x in rnd:
            argv = ["curl", "-sS", "--http2-prior-knowledge", "--resolve", "%s:%d:127.0.0.1" % (HOST, port),
                    "-o", "/dev/null", "-w", "%{http_code}", "-A", "vault-client/2.0 (curl)", "-X", x.method]
            for n, v in x.headers:
                if n == "accept-encoding":
                    argv.append("--compressed")
                else:
                    argv += ["-H", "%s: %s" % (n, v.replace("{token}", tok))]
            if x.body:
                argv += ["--data-binary", x.body.decode()]
            argv.append("http://%s:%d%s" % (HOST, port, x.path))
            code = int(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
            done.append(("curl", x.method, x.path, code, x.expect))


def nghttp(port: int, xs: list, headers: list, body: bytes | None, tmp: str) -> list:
    """One nghttp process, one connection: every request in `xs` as a concurrent stream (nghttp
    also sends its PRIORITY tree), the same `headers` on each. Statuses from its HAR."""
    har = tmp + ".har"
    argv = ["nghttp", "-n", "--har", har, "-H", ":authority: %s:%d" % (HOST, port),
            "-H", "user-agent: vault-client/2.0 (nghttp)"]
    argv += [a for n, v in headers for a in ("-H", "%s: %s" % (n, v))]
    if body is not None:
        with open(tmp + ".body", "wb") as f:
            f.write(body)
        argv += ["-H", ":method: %s" % xs[0].method, "-d", tmp + ".body"]
    argv += ["http://127.0.0.1:%d%s" % (port, x.path) for x in xs]
    subprocess.run(argv, check=True, capture_output=True)
    entries = json.load(open(har))["log"]["entries"]
    got = collections.Counter((urllib.parse.urlsplit(e["request"]["url"])._replace(scheme="", netloc="").geturl(),
                               e["response"]["status"]) for e in entries)
    want = collections.Counter((x.path, x.expect) for x in xs)
    if got != want:
        raise RuntimeError("nghttp statuses differ from the plan: %s" % ((want - got) + (got - want)))
    return [("nghttp", x.method, x.path, x.expect, x.expect) for x in xs]


def nghttp_user(port: int, u: dict, i: int, done: list, tmp: str):
    """nghttp: each request with a body, or planned to fail, on a connection of its own; all the
    other GETs multiplexed on one connection carrying the union of their headers."""
    tok = DB.issue_jwt(u, NOW)
    together, union = [], []
    for rnd in journey(u, i):
        for x in rnd:
            hs = [(n, v.replace("{token}", tok)) for n, v in x.headers]
            svc = any(v == "Bearer " + SVC_JWT for _, v in hs)
            if x.body or x.expect == 401 or svc:
                done += nghttp(port, [x], hs, x.body if x.body else None, tmp)
            else:
                together.append(x)
                union += [h for h in hs if h not in union and h[0] not in {n for n, _ in union}]
    done += nghttp(port, together, union, None, tmp)


# ---------------------------------------------------------------- the record and its audit

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
DIGITS = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
SSN = re.compile(r"(?<![0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9])")
IPV4 = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")
IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}\b")
PHONE = re.compile(r"\+[0-9]{10,14}\b|\(?[0-9]{3}\)?[ -][0-9]{3}-[0-9]{4}")
KEYS = re.compile(r"\b(?:AKIA[A-Z0-9]{16}|sk_live_\w+|ghp_\w+|xoxb-[\w-]+|[a-z]{2}_live_\w+|cs_\w{20,}|rt_\w{20,}|sv_\w{20,})")


def wire_forms(v: str) -> list[str]:
    """The forms a value can take on the wire: as is, percent-encoded, form-encoded."""
    out = [v]
    for f in (urllib.parse.quote(v, safe=""), urllib.parse.quote(v, safe="@"), urllib.parse.quote_plus(v),
              v.replace("+", "%2B")):
        if f not in out:
            out.append(f)
    return out


def audit_and_truth(log_path: str, truth_path: str, done: list, port: int):
    recs = [json.loads(ln) for ln in open(log_path)]
    # 1. The record agrees with what the clients saw.
    sent = collections.Counter((m, p, s) for _, m, p, s, _ in done)
    logged = collections.Counter((dict(r["request"]["headers"])[":method"], dict(r["request"]["headers"])[":path"],
                                  int(dict(r["response"]["headers"])[":status"])) for r in recs)
    if sent != logged:
        raise SystemExit("access log and clients differ: %s" % ((sent - logged) + (logged - sent)))
    bad = [d for d in done if d[3] != d[4]]
    if bad:
        raise SystemExit("statuses differ from the plan: %s" % bad[:5])

    # 2. Register what travelled: every JWT we signed, then every planted value.
    planted = dict(DB.planted)
    blob_parts = []
    for r in recs:
        for _, v in r["request"]["headers"] + r["response"]["headers"]:
            blob_parts.append(v)
        blob_parts += [r["request"]["body"], r["response"]["body"]]
    blob = "\n".join(blob_parts)
    for t in set(JWT.findall(blob)):
        if DB.verify_jwt(t) is None:
            raise SystemExit("a JWT that is not ours travelled: %s" % t)
        planted[t] = "jwt"
    for u in DB.users:
        planted.setdefault(u["password"][::-1], "password")  # the failed logins' passwords

    where: dict[str, set] = collections.defaultdict(set)
    forms: dict[str, set] = collections.defaultdict(set)
    for r in recs:
        h = r["request"]["headers"]
        path, _, query = dict(h)[":path"].partition("?")
        spots = [("request.path", path), ("request.query", query)]
        spots += [("request.header:" + n, v) for n, v in h if not n.startswith(":")]
        spots += [("request.body", r["request"]["body"]), ("response.body", r["response"]["body"])]
        spots += [("response.header:" + n, v) for n, v in r["response"]["headers"] if not n.startswith(":")]
        for v in planted:
            for loc, text in spots:
                for f in wire_forms(v):
                    if f in text:
                        where[v].add(loc)
                        forms[v].add(f)

    # Values that travelled only inside an encoding: Basic credentials (base64) and JWT claims
    # (base64url). The decoded value is what a sensor that decodes them could leak.
    for r in recs:
        for n, v in r["request"]["headers"]:
            if n != "authorization":
                continue
            if v.startswith("Basic "):
                user_pass = base64.b64decode(v[6:]).decode()
                for p in planted:
                    if p in user_pass:
                        where[p].add("request.header:authorization (inside base64)")
            elif v.startswith("Bearer "):
                claims = json.dumps(fx.jwt_decode(v[7:], None)[1])
                for p in planted:
                    if len(p) >= 6 and p in claims:
                        where[p].add("request.header:authorization (inside a JWT claim)")

    # 3. Audit: every sensitive-looking string in the record is (inside) a registered value.
    known = sorted({f for v in planted for f in wire_forms(v)}, key=len, reverse=True)
    decoys = {"127.0.0.1"}
    unknown = set()
    for rx in (EMAIL, JWT, DIGITS, SSN, IPV4, IBAN, PHONE, KEYS):
        for m in rx.finditer(blob):
            s = m.group(0)
            if s in decoys or any(s in k or k in s for k in known if len(k) >= 6):
                continue
            if rx is DIGITS and not fx.luhn_valid(s):
                continue
            if rx is IBAN and not fx.iban_valid(s):
                continue
            unknown.add(s)
    if unknown:
        raise SystemExit("audit: unregistered sensitive-looking values travelled: %s" % sorted(unknown)[:10])

    def shown(locs):  # where a sensor with redaction off shows the value as it travelled
        return any(loc.startswith(("request.path", "request.query", "request.header", "response.header"))
                   and "(inside" not in loc for loc in locs)

    travelled = sorted(where)
    detail = [{"value": v, "type": planted[v], "locations": sorted(where[v]), "wire_forms": sorted(forms[v]),
               "visible_when_off": shown(where[v])} for v in travelled]
    values = sorted({f for v in travelled for f in forms[v]} | set(travelled))
    statuses = collections.Counter(str(d[3]) for d in done)
    methods = collections.Counter(d[1] for d in done)
    conns = len({r["conn"] for r in recs})
    truth = {
        "capture": "rest-h2.pcap",
        "generator": "tests/data/rest/h2/make.sh",
        "server": "tests/data/rest/h2/server.py (python h2 %s)" % h2.__version__,
        "port": port,
        "host": HOST,
        "exchanges": {
            "count": len(recs),
            "http2": len(recs),
            "connections": conns,
            "by_client": dict(collections.Counter(d[0] for d in done)),
            "statuses": dict(sorted(statuses.items())),
            "methods": dict(sorted(methods.items())),
            "gzip_responses": sum(1 for r in recs if r["response"]["gzip"]),
        },
        "planted_values": values,
        "planted": detail,
        "exchange_log": [{"conn": r["conn"], "stream": r["stream"],
                          "method": dict(r["request"]["headers"])[":method"],
                          "target": dict(r["request"]["headers"])[":path"],
                          "status": int(dict(r["response"]["headers"])[":status"])} for r in recs],
    }
    with open(truth_path, "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.write("\n")
    never = sorted(set(DB.planted) - set(where))
    if never:
        print("registered but never sent: %s" % never, file=sys.stderr)
    print("truth: %d exchanges on %d connections, %d planted values travelled (%d wire forms), %d visible "
          "when redaction is off; %d registered values never sent"
          % (len(recs), conns, len(travelled), len(values), sum(d["visible_when_off"] for d in detail), len(never)),
          file=sys.stderr)


def main():
    port, log_path, truth_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    users = [(u, i) for i, u in enumerate(DB.users)]
    py = users[:PY_CONNS * USERS_PER_CONN]
    rest = users[PY_CONNS * USERS_PER_CONN:]
    cu, ng = rest[:CURL_USERS], rest[CURL_USERS:CURL_USERS + NGHTTP_USERS]
    done: list = []
    errors: list = []

    def guard(f, *a):
        try:
            f(*a)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=guard, args=(h2_connection, port, py[k::PY_CONNS], done))
               for k in range(PY_CONNS)]
    threads += [threading.Thread(target=guard, args=(curl_user, port, u, i, done)) for u, i in cu]
    threads += [threading.Thread(target=guard, args=(nghttp_user, port, u, i, done, "%s.nghttp%d" % (log_path, i)))
                for u, i in ng]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("client failed: %s" % errors)
    time.sleep(0.5)  # the server logs after it sent the response
    audit_and_truth(log_path, truth_path, done, port)


if __name__ == "__main__":
    main()
