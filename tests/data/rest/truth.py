"""Ground truth from what the client really sent and received.

client.py records every exchange (request as sent, response as received,
body decoded from gzip) and registers every sensitive value it planted or
was handed (login tokens). From that record this module derives:

* templates / auth per endpoint (the endpoint of each exchange is the server
  route the client targeted — server.ROUTES — checked by regex);
* sensitive: every (endpoint, type, location, field) where a registered value
  occurs, found by scanning the actual bytes, not by listing intentions;
* decoys: values that look sensitive but are not (by field name / shape);
* an audit: naive detectors (email, Luhn, SSN, JWT, key prefixes, PEM, IPv4,
  IBAN, phone patterns) run over everything; any hit that is neither a
  registered planted value nor a known decoy aborts the run, so the truth
  cannot silently miss a sensitive value;
* findings (risky/clean): the rules of issue #10 evaluated by a small
  reference checker over the same record (definitions in README.md).
"""
from __future__ import annotations

import base64
import json
import re
from collections import Counter, defaultdict
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from urllib.parse import parse_qsl, unquote, urlsplit

import fixtures as fx

TYPES = ("email", "phone", "credit_card", "ssn", "iban", "jwt", "api_key", "password", "private_key", "ip_address")
SECRET = "secret"  # credentials that must not leak but have no type of their own (Basic credentials, session ids)

OWASP = {
    "unauth_sensitive_data": "API3:2023",
    "excessive_data_exposure": "API3:2023",
    "credentials_in_query": "API2:2023",
    "cleartext_basic_auth": "API2:2023",
    "cleartext_bearer": "API2:2023",
    "jwt_alg_none": "API2:2023",
    "jwt_no_exp": "API2:2023",
    "jwt_long_lifetime": "API2:2023",
    "verbose_error": "API8:2023",
    "permissive_cors": "API8:2023",
    "server_banner": "API8:2023",
    "missing_security_headers": "API8:2023",
    "admin_endpoint_exposed": "API5:2023",
}
SEVERITY_HINT = {  # informative only
    "unauth_sensitive_data": "high", "excessive_data_exposure": "medium", "credentials_in_query": "high",
    "cleartext_basic_auth": "high", "cleartext_bearer": "medium", "jwt_alg_none": "critical",
    "jwt_no_exp": "medium", "jwt_long_lifetime": "medium", "verbose_error": "medium", "permissive_cors": "medium",
    "server_banner": "low", "missing_security_headers": "low", "admin_endpoint_exposed": "high",
}
EXCESSIVE_MIN_TYPES = 3          # distinct sensitive types in one response body
LONG_LIFETIME_S = 30 * 86400     # exp - iat above this is "very long"
SECURITY_HEADERS = ("strict-transport-security", "x-content-type-options", "x-frame-options",
                    "content-security-policy", "referrer-policy", "cache-control")
ADMIN_SEGMENT = re.compile(r"^(admin|internal|debug|actuator|manage|management)$")
STACK_TRACE = re.compile(r"Stack trace:\s*#0 |Traceback \(most recent call last\)|\n\s+at [\w$.]+\([\w$.]+\.java:\d+\)")
VERSIONED_BANNER = re.compile(r"/\d")
QUERY_CREDENTIAL_TYPES = ("api_key", "jwt", "password", SECRET)

# Last JSON key (or header) -> why a value under it looks sensitive but is not.
DECOY_FIELDS = {
    "order_number": "16-digit order number that fails Luhn (not a card)",
    "customer_number": "10-digit numeric id, not under a phone-like name (not a phone)",
    "upc": "12-digit product code (not a card, not a phone)",
    "created_at": "timestamp (Unix seconds or ISO 8601)", "placed_at": "Unix timestamp (10 digits)",
    "joined": "Unix timestamp (10 digits)", "generated_at": "Unix timestamp (10 digits)",
    "time": "Unix timestamp (10 digits)", "updated_at": "timestamp (Unix seconds or ISO 8601)",
    "version": "dotted version string (\"1.2.3.4\" has the shape of an IPv4 address)", "build": "SHA-1 build id",
    "sha1": "SHA-1 digest", "x-request-id": "UUID request id", "verification_id": "UUID",
    "session_id": "UUID", "file_id": "SHA-1 file id", "etag": "quoted SHA-1",
    "owner": "UUID principal id", "assignee": "UUID principal id",
}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX40_RE = re.compile(r'^"?[0-9a-f]{40}"?$')


class Registry:
    """Planted sensitive values (value -> type) and the scanner over them."""

    def __init__(self):
        self.types: dict[str, str] = {}
        self._re = None

    def add(self, value, typ):
        value = str(value)
        assert typ in TYPES or typ == SECRET, typ
        old = self.types.get(value)
        assert old in (None, typ), (value, old, typ)
        self.types[value] = typ
        self._re = None

    def regex(self):
        if self._re is None:
            vals = sorted(self.types, key=len, reverse=True)
            self._re = re.compile("|".join(re.escape(v) for v in vals)) if vals else re.compile(r"(?!)")
        return self._re

    def find(self, text):
        return [(m.group(0), self.types[m.group(0)], m.span()) for m in self.regex().finditer(text)]


# ---------------------------------------------------------------- leaves


def walk_json(v, path="$"):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from walk_json(x, "%s.%s" % (path, k))
    elif isinstance(v, list):
        for x in v:
            yield from walk_json(x, path + "[*]")
    elif v is None or isinstance(v, bool):
        return
    else:
        yield path, str(v)


def body_leaves(ctype, body: bytes):
    ctype = (ctype or "").lower()
    if not body:
        return
    if "json" in ctype:
        yield from walk_json(json.loads(body))
    elif ctype.startswith("application/x-www-form-urlencoded"):
        for k, v in parse_qsl(body.decode(), keep_blank_values=True):
            yield "$." + k, v
    elif ctype.startswith("multipart/form-data"):
        msg = BytesParser(policy=HTTP_POLICY).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            yield "$." + name, part.get_payload(decode=True).decode("latin-1")
    else:
        yield "$", body.decode("latin-1")


def header(hs, name):
    for k, v in hs:
        if k.lower() == name:
            return v
    return None


def leaves(ex):
    """(location, field, value) for every value an inspector could look at."""
    u = urlsplit(ex["target"])
    tsegs = ex["template"].strip("/").split("/")
    for i, seg in enumerate(u.path.strip("/").split("/")):
        yield "request.path", tsegs[i] if i < len(tsegs) else "#%d" % i, unquote(seg)
    for k, v in parse_qsl(u.query, keep_blank_values=True):
        yield "request.query", k, v
    for k, v in ex["req_headers"]:
        if k.lower() == "cookie":
            for part in v.split(";"):
                ck, _, cv = part.strip().partition("=")
                yield "request.cookie", ck, cv
        else:
            yield "request.header", k.lower(), v
    for f, v in body_leaves(header(ex["req_headers"], "content-type"), ex["req_body"]):
        yield "request.body", f, v
    for k, v in ex["resp_headers"]:
        yield "response.header", k.lower(), v
    for f, v in body_leaves(header(ex["resp_headers"], "content-type"), ex["resp_body"]):
        yield "response.body", f, v


def last_key(field):
    f = field.rstrip("]").rstrip("[*")
    return re.split(r"[.\[]", f)[-1].strip("{}").lower()


# ---------------------------------------------------------------- audit

AUDIT = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")),
    ("credit_card", re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")),
    ("ssn", re.compile(r"(?<![\w-])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![\w-])")),
    ("jwt", re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]*")),
    ("api_key", re.compile(r"AKIA[0-9A-Z]{16}|sk_live_\w+|pk_live_\w+|ghp_\w+|xox[abposr]-[\w-]+|[a-z]{2,4}_live_\w+")),
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("ip_address", re.compile(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w.])")),
    ("iban", re.compile(r"(?<![A-Z0-9])[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}(?![A-Z0-9])")),
    ("phone", re.compile(r"\+[1-9][0-9]{7,14}(?![0-9])|\([0-9]{3}\) [0-9]{3}-[0-9]{4}|(?<![\w-])[0-9]{3}-[0-9]{3}-[0-9]{4}(?![\w-])")),
]


def audit_leaf(reg, loc, field, value, ok_decoy):
    covered = [span for _, _, span in reg.find(value)]
    problems = []
    for kind, rx in AUDIT:
        for m in rx.finditer(value):
            if kind == "credit_card" and not fx.luhn_valid(m.group(0)):
                continue
            if kind == "iban" and not fx.iban_valid(m.group(0)):
                continue
            if any(a <= m.start() and m.end() <= b for a, b in covered):
                continue
            if ok_decoy:
                continue
            problems.append((kind, loc, field, m.group(0)))
    return problems


# ---------------------------------------------------------------- auth


def exchange_auth(ex):
    a = header(ex["req_headers"], "authorization") or ""
    if a.startswith("Bearer "):
        return "bearer"
    if a.startswith("Basic "):
        return "basic"
    if header(ex["req_headers"], "x-api-key") is not None:
        return "api_key"
    q = dict(parse_qsl(urlsplit(ex["target"]).query))
    if any(k in q for k in ("api_key", "apikey", "token", "access_token", "key")):
        return "api_key"
    c = header(ex["req_headers"], "cookie") or ""
    if re.search(r"(^|;\s*)sid=", c):
        return "session_cookie"
    return "none"


def jwt_of(ex):
    a = header(ex["req_headers"], "authorization") or ""
    if a.startswith("Bearer "):
        d = fx.jwt_decode(a[7:], None)
        if d:
            return d[0], d[1]
    return None


# ---------------------------------------------------------------- assembly


def endpoint_of(ex):
    return (ex["host"], ex["method"], ex["template"])


def ep_dict(key, **kw):
    d = {"host": key[0], "method": key[1], "template": key[2]}
    d.update(kw)
    return d


def build(exchanges, reg: Registry, extra_planted=(), with_findings=False):
    problems = []
    sensitive = set()
    decoys = defaultdict(list)
    occurrences = Counter()
    auth_kinds = defaultdict(Counter)
    per_ex_types = []
    for ex in exchanges:
        ep = endpoint_of(ex)
        kind = exchange_auth(ex)
        ex["auth"] = kind
        auth_kinds[ep][kind] += 1
        resp_types = set()
        for loc, field, value in leaves(ex):
            hits = reg.find(value)
            for val, typ, _ in hits:
                occurrences[val] += 1
                if typ != SECRET:
                    sensitive.add(ep + (typ, loc, field))
                    if loc == "response.body":
                        resp_types.add(typ)
            lk = last_key(field)
            ok_decoy = False
            if not hits:
                why = DECOY_FIELDS.get(lk)
                if why is None and UUID_RE.match(value):
                    why = "UUID"
                if why is None and HEX40_RE.match(value):
                    why = "SHA-1 digest"
                if why:
                    ok_decoy = True
                    k = ep + (loc, field, why)
                    if value not in decoys[k] and len(decoys[k]) < 3:
                        decoys[k].append(value)
            problems += audit_leaf(reg, loc, field, value, ok_decoy)
        per_ex_types.append(resp_types)
    if problems:
        seen = sorted(set(problems))
        raise SystemExit("truth audit: %d unregistered sensitive-looking values, e.g. %s" % (len(seen), seen[:10]))

    planted = sorted(v for v in reg.types if occurrences[v])
    truth = {
        "exchanges": summary(exchanges),
        "templates": [ep_dict(k) for k in sorted(auth_kinds)],
        "auth": [ep_dict(k, kind=c.most_common(1)[0][0], exchanges=dict(sorted(c.items()))) for k, c in sorted(auth_kinds.items())],
        "sensitive": [ep_dict(s[:3], type=s[3], location=s[4], field=s[5]) for s in sorted(sensitive)],
        "planted_values": sorted(set(planted) | set(extra_planted)),
        "planted": [{"value": v, "type": reg.types[v], "occurrences": occurrences[v]} for v in planted],
        "decoys": [ep_dict(k[:3], location=k[3], field=k[4], why=k[5], value=v[0], examples=v)
                   for k, v in sorted(decoys.items())],
        "exchange_log": [{"conn": ex["conn"], "seq": ex["seq"], "host": ex["host"], "method": ex["method"],
                          "target": ex["target"], "template": ex["template"], "status": ex["status"], "auth": ex["auth"]}
                         for ex in exchanges],
    }
    if with_findings:
        truth["findings"] = findings(exchanges, per_ex_types, reg)
    return truth


def body_text(ex):
    """The response body as text, JSON string values unescaped (a trace inside JSON counts)."""
    raw = ex["resp_body"].decode("latin-1")
    try:
        return raw + "\n" + "\n".join(v for _, v in body_leaves(header(ex["resp_headers"], "content-type"), ex["resp_body"]))
    except ValueError:
        return raw


def summary(exchanges):
    return {"count": len(exchanges), "connections": len({ex["conn"] for ex in exchanges}),
            "methods": dict(sorted(Counter(ex["method"] for ex in exchanges).items())),
            "statuses": dict(sorted(Counter(str(ex["status"]) for ex in exchanges).items())),
            "gzip_responses": sum(1 for ex in exchanges if (header(ex["resp_headers"], "content-encoding") or "") == "gzip")}


def findings(exchanges, per_ex_types, reg):
    """The reference checker: one finding per (endpoint, rule) the traffic exhibits."""
    found = defaultdict(Counter)
    for ex, resp_types in zip(exchanges, per_ex_types):
        ep = endpoint_of(ex)
        ok = 200 <= ex["status"] < 300
        via_tls = (header(ex["req_headers"], "x-forwarded-proto") or "").lower() == "https"
        if ex["auth"] == "none" and ok and resp_types:
            found[ep]["unauth_sensitive_data"] += 1
        if len(resp_types) >= EXCESSIVE_MIN_TYPES:
            found[ep]["excessive_data_exposure"] += 1
        for k, v in parse_qsl(urlsplit(ex["target"]).query):
            if any(t in QUERY_CREDENTIAL_TYPES for _, t, _ in reg.find(v)):
                found[ep]["credentials_in_query"] += 1
        a = header(ex["req_headers"], "authorization") or ""
        if a.startswith("Basic ") and not via_tls:
            found[ep]["cleartext_basic_auth"] += 1
        if a.startswith("Bearer ") and not via_tls:
            found[ep]["cleartext_bearer"] += 1
        j = jwt_of(ex)
        if j:
            h, c = j
            if str(h.get("alg", "")).lower() == "none":
                found[ep]["jwt_alg_none"] += 1
            if "exp" not in c:
                found[ep]["jwt_no_exp"] += 1
            elif "iat" in c and c["exp"] - c["iat"] > LONG_LIFETIME_S:
                found[ep]["jwt_long_lifetime"] += 1
        if ex["status"] >= 400 and STACK_TRACE.search(body_text(ex)):
            found[ep]["verbose_error"] += 1
        if header(ex["resp_headers"], "access-control-allow-origin") == "*":
            found[ep]["permissive_cors"] += 1
        for hn in ("server", "x-powered-by"):
            v = header(ex["resp_headers"], hn)
            if v and VERSIONED_BANNER.search(v):
                found[ep]["server_banner"] += 1
                break
        names = {k.lower() for k, _ in ex["resp_headers"]}
        if any(h not in names for h in SECURITY_HEADERS):
            found[ep]["missing_security_headers"] += 1
        if ok and any(ADMIN_SEGMENT.match(s) for s in ex["template"].strip("/").split("/")):
            found[ep]["admin_endpoint_exposed"] += 1
    out = []
    for ep in sorted(found):
        for rule in sorted(found[ep]):
            out.append(ep_dict(ep, rule=rule, owasp=OWASP[rule], severity_hint=SEVERITY_HINT[rule],
                               exchanges=found[ep][rule]))
    return out


def basic_value(user, pw):
    return base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()
