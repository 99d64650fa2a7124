#!/usr/bin/env python3
"""Real HTTP/1.1 API servers for the inventory (#4) and findings (#10) captures.

    server.py APP PORT ACCESS_LOG        APP = rest | risky | clean

Python 3.11 stdlib only: http.server.ThreadingHTTPServer, protocol_version
HTTP/1.1 (persistent connections; every response has Content-Length, except 204).
Virtual hosts by the Host header, like any reverse-proxied API:

* rest:  shop.example.test, files.example.test  (ROUTES["rest"])
* risky: legacy.example.test, partner.example.test  (ROUTES["risky"])
* clean: api.example.test  (ROUTES["clean"])

Responses are pure functions of the request and of the seeded databases in
fixtures.py (no state is kept between requests), so concurrent clients get the
same answers in any interleaving. Each answered request is appended to
ACCESS_LOG as {"host","method","target","status"} (checked against the client).

ROUTES is imported by client.py: the templates in the ground truth are the
ones this server routes on.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

import fixtures as fx

# ---------------------------------------------------------------- routing

PARAM_RE = {
    "user_id": r"[0-9]+", "order_id": r"[0-9]+", "customer_id": r"[0-9]+", "invoice_id": r"[0-9]+",
    "project_id": r"[0-9]+", "task_id": r"[0-9]+",
    "session_id": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "file_id": r"[0-9a-f]{40}",
    "email": r"[^/@]+@[^/@]+",
    "sku": r"[A-Z]{3}-[0-9]{4,5}(?:-[A-Z]{1,3})?",
    "username": r"[a-z]+",
    "date": r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
}


def compile_template(template: str) -> re.Pattern:
    out = []
    for seg in template.strip("/").split("/"):
        if seg.startswith("{"):
            name = seg[1:-1]
            out.append("(?P<%s>%s)" % (name, PARAM_RE[name]))
        else:
            out.append(re.escape(seg))
    return re.compile("^/" + "/".join(out) + "$")


class Route:
    def __init__(self, host, method, template, fn):
        self.host, self.method, self.template, self.fn = host, method, template, fn
        self.regex = compile_template(template)

    @property
    def key(self):
        return (self.host, self.method, self.template)


ROUTES: dict[str, list[Route]] = {"rest": [], "risky": [], "clean": []}


def route(app, host, method, template):
    def deco(fn):
        ROUTES[app].append(Route(host, method, template, fn))
        return fn
    return deco


def find_route(app, host, method, path):
    """(route, params) or (None, 404|405)."""
    path_matched = False
    for r in ROUTES[app]:
        if r.host != host:
            continue
        m = r.regex.match(path)
        if m:
            path_matched = True
            if r.method == method:
                return r, {k: unquote(v) for k, v in m.groupdict().items()}
    return None, 405 if path_matched else 404


class Resp:
    """What a route returns; Handler turns it into bytes on the wire."""

    def __init__(self, status, body=None, headers=None, ctype="application/json"):
        self.status, self.body, self.headers, self.ctype = status, body, list(headers or []), ctype


def err(status, code, headers=None):
    return Resp(status, {"error": code}, headers)


def derived_int(*parts, lo=1_000_000, hi=9_999_999):
    h = int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest(), 16)
    return lo + h % (hi - lo + 1)


def derived_uuid(*parts):
    import uuid
    return str(uuid.UUID(bytes=hashlib.sha1("|".join(map(str, parts)).encode()).digest()[:16], version=4))


def derived_non_luhn_16(*parts):
    n = str(derived_int(*parts, lo=10**15, hi=10**16 - 1))
    if fx.luhn_valid(n):
        n = n[:-1] + str((int(n[-1]) + 1) % 10)
    return n


# ---------------------------------------------------------------- rest-api

REST = fx.RestDB()
SHOP, FILES = "shop.example.test", "files.example.test"
ORDERS = {o["id"]: (u, o) for u in REST.users for o in u["orders"]}
SESSION_USERS = {REST.session_cookie(u["username"]): u for u in REST.users}


def bearer_user(h):
    a = h.headers.get("Authorization", "")
    if not a.startswith("Bearer "):
        return None
    dec = fx.jwt_decode(a[7:], fx.JWT_SECRET)
    if not dec or not dec[2]:
        return None
    _, claims, _ = dec
    if claims.get("iss") != fx.JWT_ISS or claims.get("aud") != fx.JWT_AUD or claims.get("exp", 0) < time.time():
        return None
    try:
        return REST.by_id.get(int(claims.get("sub", "")))
    except ValueError:
        return None


UNAUTHORIZED = [("WWW-Authenticate", 'Bearer realm="shop", error="invalid_token"')]


def needs_bearer(fn):
    def wrapper(h, p, q, body):
        user = bearer_user(h)
        if user is None:
            return err(401, "unauthorized", UNAUTHORIZED)
        return fn(h, p, q, body, user)
    wrapper.__name__ = fn.__name__
    return wrapper


def user_or_404(p):
    return REST.by_id.get(int(p["user_id"]))


def json_body(body):
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


for _host in (SHOP, FILES):
    @route("rest", _host, "GET", "/health")
    def health(h, p, q, body, _host=_host):
        return Resp(200, {"status": "ok", "service": _host.split(".")[0], "version": REST.version,
                          "build": REST.build_sha, "time": int(time.time())})


@route("rest", SHOP, "POST", "/api/v1/auth/login")
def login(h, p, q, body):
    form = dict(parse_qsl(body.decode("utf-8", "replace")))
    u = REST.by_name.get(form.get("username", ""))
    if u is None or form.get("password") != u["password"]:
        return err(401, "invalid_credentials")
    return Resp(200, {"access_token": REST.issue_jwt(u, int(time.time())), "token_type": "Bearer",
                      "expires_in": 3600, "user_id": u["id"]}, [("Cache-Control", "no-store")])


@route("rest", SHOP, "POST", "/api/v1/auth/session")
def session_login(h, p, q, body):
    j = json_body(body) or {}
    u = REST.by_name.get(j.get("username", ""))
    if u is None or j.get("password") != u["password"]:
        return err(401, "invalid_credentials")
    cookie = "sid=%s; Path=/; HttpOnly; SameSite=Lax" % REST.session_cookie(u["username"])
    return Resp(200, {"ok": True, "user_id": u["id"]}, [("Set-Cookie", cookie)])


def cookie_user(h):
    for part in h.headers.get("Cookie", "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == "sid":
            return SESSION_USERS.get(v)
    return None


def cart_view(items):
    total = sum(REST.products[i["sku"]]["price_cents"] * i["qty"] for i in items if i.get("sku") in REST.products)
    return {"items": items, "total_cents": total, "currency": "USD"}


@route("rest", SHOP, "GET", "/api/v1/cart")
def cart_get(h, p, q, body):
    u = cookie_user(h)
    if u is None:
        return err(401, "no_session")
    items = [{"sku": REST.skus[(u["id"] + i * 7) % len(REST.skus)], "qty": 1 + i % 3} for i in range(u["id"] % 4 + 1)]
    return Resp(200, cart_view(items))


@route("rest", SHOP, "PUT", "/api/v1/cart")
def cart_put(h, p, q, body):
    u = cookie_user(h)
    if u is None:
        return err(401, "no_session")
    j = json_body(body)
    if not isinstance(j, dict) or not isinstance(j.get("items"), list):
        return err(400, "bad_request")
    return Resp(200, cart_view(j["items"]))


def user_v1(u):
    return {"id": u["id"], "username": u["username"], "name": u["name"], "email": u["email"],
            "phone": u["phone_e164"], "customer_number": u["customer_number"], "created_at": u["created_at"],
            "links": {"orders": "/api/v1/users/%d/orders" % u["id"]}}


@route("rest", SHOP, "GET", "/api/v1/users/me")
@needs_bearer
def users_me(h, p, q, body, user):
    d = user_v1(user)
    d.update({"ssn": user["ssn"], "last_login_ip": user["ip"], "role": user["role"]})
    return Resp(200, d)


@route("rest", SHOP, "GET", "/api/v1/users/{user_id}")
@needs_bearer
def users_get(h, p, q, body, user):
    u = user_or_404(p)
    return Resp(200, user_v1(u)) if u else err(404, "not_found")


@route("rest", SHOP, "PUT", "/api/v1/users/{user_id}")
@needs_bearer
def users_put(h, p, q, body, user):
    u = user_or_404(p)
    j = json_body(body)
    if u is None:
        return err(404, "not_found")
    if not isinstance(j, dict) or "email" not in j:
        return err(422, "validation_failed")
    d = {"id": u["id"], "name": j.get("name"), "email": j["email"], "phone": j.get("phone"),
         "address": j.get("address"), "updated_at": int(time.time())}
    return Resp(200, d)


@route("rest", SHOP, "PATCH", "/api/v1/users/{user_id}")
@needs_bearer
def users_patch(h, p, q, body, user):
    u = user_or_404(p)
    j = json_body(body)
    if u is None:
        return err(404, "not_found")
    if not isinstance(j, dict):
        return err(400, "bad_request")
    return Resp(200, {"id": u["id"], "display_name": j.get("display_name"),
                      "marketing_opt_in": bool(j.get("marketing_opt_in")), "updated_at": int(time.time())})


@route("rest", SHOP, "DELETE", "/api/v1/users/{user_id}")
@needs_bearer
def users_delete(h, p, q, body, user):
    if user["role"] != "admin":
        return err(403, "forbidden")
    return Resp(204) if user_or_404(p) else err(404, "not_found")


@route("rest", SHOP, "GET", "/api/v2/users/{user_id}")
@needs_bearer
def users_v2(h, p, q, body, user):
    u = user_or_404(p)
    if u is None:
        return err(404, "not_found")
    return Resp(200, {"api_version": 2, "user": {
        "id": u["id"], "username": u["username"], "profile": {"name": u["name"], "created_at": u["created_at"]},
        "contact": {"email": u["email"], "phones": [{"type": "mobile", "number": u["phone_us"]},
                                                     {"type": "home", "number": u["phone_e164"]}]}}})


def order_summary(o, with_card):
    d = {"id": o["id"], "order_number": o["order_number"], "total_cents": o["total_cents"],
         "placed_at": o["placed_at"], "items": o["items"]}
    if with_card:
        d["card"] = o["card"]
    return d


@route("rest", SHOP, "GET", "/api/v1/users/{user_id}/orders")
@needs_bearer
def orders_list(h, p, q, body, user):
    u = user_or_404(p)
    if u is None:
        return err(404, "not_found")
    page, limit = int(q.get("page", "1")), int(q.get("limit", "20"))
    orders = sorted(u["orders"], key=lambda o: o["placed_at"], reverse=q.get("sort", "").startswith("-"))
    return Resp(200, {"user_id": u["id"], "page": page, "limit": limit, "sort": q.get("sort", "placed_at"),
                      "total": len(orders), "orders": [order_summary(o, True) for o in orders]})


@route("rest", SHOP, "POST", "/api/v1/users/{user_id}/orders")
@needs_bearer
def orders_create(h, p, q, body, user):
    u = user_or_404(p)
    j = json_body(body)
    if u is None:
        return err(404, "not_found")
    if not isinstance(j, dict) or not j.get("items") or not fx.luhn_valid(str(j.get("payment", {}).get("card_number", ""))):
        return err(422, "validation_failed")
    oid = derived_int(body)
    return Resp(201, {"id": oid, "order_number": derived_non_luhn_16("order", body), "status": "created"},
                [("Location", "/api/v1/users/%d/orders/%d" % (u["id"], oid))])


@route("rest", SHOP, "GET", "/api/v1/users/{user_id}/orders/{order_id}")
@needs_bearer
def orders_get(h, p, q, body, user):
    u = user_or_404(p)
    hit = ORDERS.get(int(p["order_id"]))
    if u is None or hit is None or hit[0] is not u:
        return err(404, "not_found")
    o = hit[1]
    brand = {"4": "visa", "5": "mastercard", "2": "mastercard", "3": "amex"}[o["card"][0]]
    return Resp(200, {"id": o["id"], "order_number": o["order_number"], "user_id": u["id"], "status": "shipped",
                      "payment": {"card": o["card"], "brand": brand, "holder": u["name"]},
                      "shipping": {"name": u["name"], "phone": u["phone_e164"],
                                   "address": {"street": "%d Main St" % (u["id"] % 900 + 1), "city": "Springfield"}},
                      "billing_email": u["email"], "items": o["items"], "placed_at": o["placed_at"]})


@route("rest", SHOP, "POST", "/api/v1/users/{user_id}/verification")
@needs_bearer
def verification(h, p, q, body, user):
    u = user_or_404(p)
    j = json_body(body)
    if u is None:
        return err(404, "not_found")
    if not isinstance(j, dict) or not j.get("ssn") or not fx.iban_valid(j.get("payout_iban", "")):
        return err(422, "validation_failed")
    return Resp(202, {"verification_id": derived_uuid("verif", body), "status": "pending"})


@route("rest", SHOP, "GET", "/api/v1/orders/export")
def orders_export(h, p, q, body):
    import base64
    want = "Basic " + base64.b64encode(("%s:%s" % (REST.basic_user, REST.basic_password)).encode()).decode()
    if h.headers.get("Authorization") != want:
        return err(401, "unauthorized", [("WWW-Authenticate", 'Basic realm="exports"')])
    return Resp(200, {"from": q.get("from"), "to": q.get("to"), "format": "json", "payouts": REST.payout_beneficiaries})


@route("rest", SHOP, "GET", "/api/v1/orders/{order_id}")
@needs_bearer
def order_by_id(h, p, q, body, user):
    hit = ORDERS.get(int(p["order_id"]))
    if hit is None:
        return err(404, "not_found")
    u, o = hit
    d = order_summary(o, False)
    d.update({"user_id": u["id"], "status": "shipped"})
    return Resp(200, d)


@route("rest", SHOP, "GET", "/api/v1/sessions/{session_id}")
@needs_bearer
def sessions_get(h, p, q, body, user):
    s = REST.sessions.get(p["session_id"])
    return Resp(200, s) if s else err(404, "not_found")


@route("rest", SHOP, "DELETE", "/api/v1/sessions/{session_id}")
@needs_bearer
def sessions_delete(h, p, q, body, user):
    return Resp(204) if p["session_id"] in REST.sessions else err(404, "not_found")


EMAILS = {u["email"] for u in REST.users}


@route("rest", SHOP, "DELETE", "/api/v1/newsletter/subscriptions/{email}")
@needs_bearer
def unsubscribe(h, p, q, body, user):
    return Resp(204) if p["email"] in EMAILS else err(404, "not_found")


@route("rest", SHOP, "GET", "/api/v1/products")
def products_list(h, p, q, body):
    page, limit = int(q.get("page", "1")), min(int(q.get("limit", "10")), 20)
    key = q.get("sort", "sku").lstrip("-")
    items = sorted(REST.products.values(), key=lambda x: x.get(key, x["sku"]), reverse=q.get("sort", "").startswith("-"))
    chunk = items[(page - 1) * limit: page * limit]
    return Resp(200, {"page": page, "limit": limit, "total": len(items), "products": chunk},
                [("Cache-Control", "public, max-age=60")])


@route("rest", SHOP, "GET", "/api/v1/products/search")
def products_search(h, p, q, body):
    words = q.get("q", "").lower().split()
    hits = [x for x in REST.products.values() if any(w in x["name"] for w in words)]
    return Resp(200, {"q": q.get("q", ""), "count": len(hits), "results": hits[:int(q.get("limit", "5"))]})


@route("rest", SHOP, "GET", "/api/v1/products/{sku}")
def products_get(h, p, q, body):
    x = REST.products.get(p["sku"])
    return Resp(200, x) if x else err(404, "not_found")


@route("rest", SHOP, "GET", "/api/v1/profiles/{username}")
@needs_bearer
def profiles(h, p, q, body, user):
    u = REST.by_name.get(p["username"])
    if u is None:
        return err(404, "not_found")
    d = {"username": u["username"], "display_name": u["name"], "bio": "Hi, I am %s." % u["name"].split()[0],
         "followers": u["id"] % 997, "joined": u["created_at"]}
    if u["public_email"]:
        d["contact_email"] = u["email"]
    return Resp(200, d)


@route("rest", SHOP, "GET", "/api/v1/reports/{date}")
def reports(h, p, q, body):
    if h.headers.get("X-API-Key") != REST.api_key_header:
        return err(401, "invalid_api_key")
    n = derived_int(p["date"], lo=50, hi=900)
    return Resp(200, {"date": p["date"], "orders": n, "revenue_cents": n * 4321,
                      "top_skus": REST.skus[n % 30: n % 30 + 3], "generated_at": 1_711_929_600 + n})


@route("rest", SHOP, "GET", "/api/v1/admin/stats")
@needs_bearer
def admin_stats(h, p, q, body, user):
    if user["role"] != "admin":
        return err(403, "forbidden")
    return Resp(200, {"users": len(REST.users), "orders": len(ORDERS), "products": len(REST.products),
                      "version": REST.version, "build": REST.build_sha, "uptime_s": int(time.time()) % 100000})


@route("rest", SHOP, "GET", "/api/v1/integrations")
def integrations(h, p, q, body):
    if q.get("api_key") != REST.api_key_query:
        return err(403, "forbidden")
    return Resp(200, {"integrations": REST.integrations})


@route("rest", FILES, "GET", "/files")
@needs_bearer
def files_list(h, p, q, body, user):
    limit = min(int(q.get("limit", "10")), 25)
    files = sorted(REST.files.values(), key=lambda f: f["created_at"])[:limit]
    return Resp(200, {"files": [{"id": f["id"], "name": f["name"], "size": len(f["content"]),
                                 "created_at": f["created_at"]} for f in files]})


@route("rest", FILES, "POST", "/files")
@needs_bearer
def files_upload(h, p, q, body, user):
    ctype = h.headers.get("Content-Type", "")
    if not ctype.startswith("multipart/form-data"):
        return err(415, "unsupported_media_type")
    msg = BytesParser(policy=HTTP_POLICY).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            data = part.get_payload(decode=True)
            fid = hashlib.sha1(data).hexdigest()
            return Resp(201, {"id": fid, "name": part.get_filename(), "size": len(data)}, [("Location", "/files/" + fid)])
    return err(422, "validation_failed")


@route("rest", FILES, "GET", "/files/{file_id}")
@needs_bearer
def files_get(h, p, q, body, user):
    f = REST.files.get(p["file_id"])
    if f is None:
        return err(404, "not_found")
    return Resp(200, f["content"], [("ETag", '"%s"' % f["id"])], ctype="text/plain; charset=utf-8")


@route("rest", FILES, "GET", "/files/{file_id}/meta")
@needs_bearer
def files_meta(h, p, q, body, user):
    f = REST.files.get(p["file_id"])
    if f is None:
        return err(404, "not_found")
    return Resp(200, {"id": f["id"], "name": f["name"], "size": len(f["content"]), "sha1": f["id"],
                      "owner": {"id": f["owner_id"], "email": f["owner_email"]},
                      "uploaded_from": f["uploaded_from"], "created_at": f["created_at"]})


@route("rest", FILES, "DELETE", "/files/{file_id}")
@needs_bearer
def files_delete(h, p, q, body, user):
    return Resp(204) if p["file_id"] in REST.files else err(404, "not_found")


# ---------------------------------------------------------------- risky-api

RISKY = fx.RiskyDB()
LEGACY, PARTNER = "legacy.example.test", "partner.example.test"


def customer_full(c):
    return {"id": c["id"], "name": c["name"], "email": c["email"], "phone": c["phone"], "ssn": c["ssn"],
            "card": c["card"], "orders": len(c["orders"])}


for _host in (LEGACY, PARTNER):
    @route("risky", _host, "GET", "/health")
    def risky_health(h, p, q, body):
        return Resp(200, {"status": "ok"})


@route("risky", LEGACY, "GET", "/api/v1/customers")
def r_customers(h, p, q, body):
    off, lim = int(q.get("offset", "0")), int(q.get("limit", "10"))
    return Resp(200, {"offset": off, "limit": lim, "total": len(RISKY.customers),
                      "customers": [customer_full(c) for c in RISKY.customers[off:off + lim]]})


@route("risky", LEGACY, "GET", "/api/v1/customers/{customer_id}")
def r_customer(h, p, q, body):
    c = RISKY.by_id.get(int(p["customer_id"]))
    return Resp(200, customer_full(c)) if c else err(404, "not found")


@route("risky", LEGACY, "GET", "/api/v1/customers/{customer_id}/orders")
def r_customer_orders(h, p, q, body):
    if q.get("api_key") not in RISKY.query_keys:
        return err(401, "invalid api key")
    c = RISKY.by_id.get(int(p["customer_id"]))
    if c is None:
        return err(404, "not found")
    return Resp(200, {"customer_id": c["id"], "orders": [{"id": o, "total_cents": o % 9973, "card_last4": c["card_last4"]}
                                                         for o in c["orders"]]})


@route("risky", LEGACY, "GET", "/api/v1/reports/{date}")
def r_reports(h, p, q, body):
    if q.get("api_key") not in RISKY.query_keys:
        return err(401, "invalid api key")
    n = derived_int(p["date"], lo=10, hi=500)
    return Resp(200, {"date": p["date"], "format": q.get("format", "json"), "orders": n, "revenue_cents": n * 1999})


@route("risky", LEGACY, "GET", "/internal/admin")
def r_admin(h, p, q, body):
    return Resp(200, {"status": "ok", "debug": True, "php_version": "7.2.1", "db_host": "db-primary.internal",
                      "cache": "redis", "workers": 8})


@route("risky", LEGACY, "GET", "/internal/admin/users")
def r_admin_users(h, p, q, body):
    return Resp(200, {"users": [{"id": c["id"], "email": c["email"], "phone": c["phone"], "ssn": c["ssn"],
                                 "role": "admin" if c["id"] % 7 == 0 else "user"} for c in RISKY.customers[:12]]})


def basic_ok(h):
    import base64
    want = "Basic " + base64.b64encode(("%s:%s" % (RISKY.basic_user, RISKY.basic_password)).encode()).decode()
    return h.headers.get("Authorization") == want


@route("risky", LEGACY, "GET", "/api/v1/account")
def r_account(h, p, q, body):
    if not basic_ok(h):
        return err(401, "unauthorized", [("WWW-Authenticate", 'Basic realm="legacy"')])
    return Resp(200, {"username": RISKY.basic_user, "email": "legacy-admin@corp.example.net", "plan": "enterprise"})


def legacy_bearer(h):
    """The legacy app 'verifies' tokens the vulnerable way: alg none is accepted, exp is optional."""
    a = h.headers.get("Authorization", "")
    if not a.startswith("Bearer "):
        return None
    dec = fx.jwt_decode(a[7:], RISKY_SECRET_BYTES)
    if not dec:
        return None
    header, claims, sig_ok = dec
    if header.get("alg", "").lower() != "none" and not sig_ok:
        return None
    if "exp" in claims and claims["exp"] < time.time():
        return None
    return claims


RISKY_SECRET_BYTES = fx.RISKY_SECRET


def needs_legacy_bearer(fn):
    def wrapper(h, p, q, body):
        if legacy_bearer(h) is None:
            return err(401, "unauthorized", [("WWW-Authenticate", 'Bearer realm="legacy"')])
        return fn(h, p, q, body)
    wrapper.__name__ = fn.__name__
    return wrapper


@route("risky", LEGACY, "GET", "/api/v1/orders")
@needs_legacy_bearer
def r_orders(h, p, q, body):
    return Resp(200, {"orders": [{"id": o, "status": "paid", "total_cents": o % 9973}
                                 for c in RISKY.customers[:5] for o in c["orders"]]})


@route("risky", LEGACY, "GET", "/api/v1/invoices/{invoice_id}")
@needs_legacy_bearer
def r_invoice(h, p, q, body):
    i = int(p["invoice_id"])
    if i not in RISKY.invoices:
        return err(404, "not found")
    return Resp(200, {"id": i, "amount_cents": i % 7919 * 10, "status": "open", "currency": "EUR"})


@route("risky", LEGACY, "GET", "/api/v1/subscriptions")
@needs_legacy_bearer
def r_subscriptions(h, p, q, body):
    return Resp(200, {"subscriptions": [{"id": k, "plan": pl, "active": True} for k, pl in enumerate(["basic", "pro", "team"])]})


PHP_ORDER_TRACE = (
    "<br />\n<b>Fatal error</b>:  Uncaught TypeError: Argument 1 passed to OrderService::create() must be of the type array, "
    "null given, called in /var/www/html/api/v1/orders.php on line 17 and defined in /var/www/html/lib/OrderService.php:23\n"
    "Stack trace:\n"
    "#0 /var/www/html/api/v1/orders.php(17): OrderService-&gt;create(NULL)\n"
    "#1 /var/www/html/index.php(58): require('/var/www/html/a...')\n"
    "#2 {main}\n"
    "  thrown in <b>/var/www/html/lib/OrderService.php</b> on line <b>23</b><br />\n")


@route("risky", LEGACY, "POST", "/api/v1/orders")
@needs_legacy_bearer
def r_orders_create(h, p, q, body):
    j = json_body(body)
    if not isinstance(j, dict) or not isinstance(j.get("items"), list):
        return Resp(500, PHP_ORDER_TRACE.encode(), ctype="text/html; charset=UTF-8")
    return Resp(201, {"id": derived_int(body), "status": "created"})


@route("risky", LEGACY, "GET", "/api/v1/search")
def r_search(h, p, q, body):
    term = q.get("q", "")
    if "'" in term:
        sql = "SELECT * FROM products WHERE name LIKE '%" + term + "%'"
        trace = ("PHP Fatal error:  Uncaught PDOException: SQLSTATE[42000]: Syntax error or access violation: 1064 "
                 "You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version "
                 "for the right syntax to use near '%s' at line 1 in /var/www/html/api/v1/search.php:42\n"
                 "Stack trace:\n#0 /var/www/html/api/v1/search.php(42): PDO->query('%s')\n#1 /var/www/html/index.php(58): "
                 "require('/var/www/html/a...')\n#2 {main}\n  thrown in /var/www/html/api/v1/search.php on line 42\n") % (term, sql)
        return Resp(500, {"error": "internal error", "exception": "PDOException", "trace": trace})
    return Resp(200, {"q": term, "results": [x for x in RISKY.products if term.lower() in x]})


@route("risky", PARTNER, "GET", "/v2/lookup")
def r_lookup(h, p, q, body):
    if q.get("token") not in RISKY.partner_tokens:
        return err(401, "invalid token")
    for c in RISKY.customers:
        if c["phone"] == q.get("phone"):
            return Resp(200, {"match": True, "customer_id": c["id"], "name": c["name"], "email": c["email"]})
    return Resp(200, {"match": False})


@route("risky", PARTNER, "POST", "/v2/webhooks")
def r_webhooks(h, p, q, body):
    if h.headers.get("X-API-Key") != RISKY.webhook_key:
        return err(401, "invalid api key")
    return Resp(202, {"accepted": True, "id": derived_int(body)})


# ---------------------------------------------------------------- clean-api

CLEAN = fx.CleanDB()
API = "api.example.test"


def clean_principal(h):
    a = h.headers.get("Authorization", "")
    if not a.startswith("Bearer "):
        return None
    dec = fx.jwt_decode(a[7:], fx.CLEAN_SECRET)
    if not dec or not dec[2]:
        return None
    _, c, _ = dec
    if c.get("iss") != fx.CLEAN_ISS or c.get("aud") != fx.CLEAN_AUD or c.get("exp", 0) < time.time():
        return None
    return c


def needs_clean_bearer(fn):
    def wrapper(h, p, q, body):
        if clean_principal(h) is None:
            return err(401, "unauthorized", [("WWW-Authenticate", 'Bearer realm="projects"')])
        return fn(h, p, q, body)
    wrapper.__name__ = fn.__name__
    return wrapper


def project_view(pr):
    return {"id": pr["id"], "key": pr["key"], "name": pr["name"], "owner": pr["owner"], "created_at": pr["created_at"],
            "tags": pr["tags"], "task_count": len(pr["tasks"])}


@route("clean", API, "GET", "/health")
def c_health(h, p, q, body):
    return Resp(200, {"status": "ok", "version": CLEAN.api_version})


@route("clean", API, "GET", "/v1/projects")
@needs_clean_bearer
def c_projects(h, p, q, body):
    page, limit = int(q.get("page", "1")), min(int(q.get("limit", "10")), 10)
    items = sorted(CLEAN.projects.values(), key=lambda x: x["id"])
    return Resp(200, {"page": page, "limit": limit, "total": len(items),
                      "projects": [project_view(x) for x in items[(page - 1) * limit: page * limit]]})


@route("clean", API, "POST", "/v1/projects")
@needs_clean_bearer
def c_project_create(h, p, q, body):
    j = json_body(body)
    if not isinstance(j, dict) or not j.get("name"):
        return Resp(422, {"error": "validation_failed", "fields": ["name"]})
    pid = derived_int(body, lo=1000, hi=9999)
    return Resp(201, {"id": pid, "key": "PRJ-%d" % pid, "name": j["name"], "tags": j.get("tags", [])},
                [("Location", "/v1/projects/%d" % pid)])


def project_or_404(p):
    return CLEAN.projects.get(int(p["project_id"]))


@route("clean", API, "GET", "/v1/projects/{project_id}")
@needs_clean_bearer
def c_project(h, p, q, body):
    pr = project_or_404(p)
    return Resp(200, project_view(pr)) if pr else err(404, "not_found")


@route("clean", API, "PATCH", "/v1/projects/{project_id}")
@needs_clean_bearer
def c_project_patch(h, p, q, body):
    pr = project_or_404(p)
    j = json_body(body)
    if pr is None:
        return err(404, "not_found")
    if not isinstance(j, dict):
        return err(400, "bad_request")
    v = project_view(pr)
    v.update({k: j[k] for k in ("name", "tags") if k in j})
    return Resp(200, v)


@route("clean", API, "DELETE", "/v1/projects/{project_id}")
@needs_clean_bearer
def c_project_delete(h, p, q, body):
    return Resp(204) if project_or_404(p) else err(404, "not_found")


@route("clean", API, "GET", "/v1/projects/{project_id}/tasks")
@needs_clean_bearer
def c_tasks(h, p, q, body):
    pr = project_or_404(p)
    if pr is None:
        return err(404, "not_found")
    state = q.get("state")
    return Resp(200, {"project_id": pr["id"], "tasks": [t for t in pr["tasks"].values() if state in (None, t["state"])]})


@route("clean", API, "GET", "/v1/projects/{project_id}/tasks/{task_id}")
@needs_clean_bearer
def c_task(h, p, q, body):
    pr = project_or_404(p)
    t = pr["tasks"].get(int(p["task_id"])) if pr else None
    return Resp(200, t) if t else err(404, "not_found")


@route("clean", API, "PUT", "/v1/projects/{project_id}/tasks/{task_id}")
@needs_clean_bearer
def c_task_put(h, p, q, body):
    pr = project_or_404(p)
    t = pr["tasks"].get(int(p["task_id"])) if pr else None
    j = json_body(body)
    if t is None:
        return err(404, "not_found")
    if not isinstance(j, dict) or j.get("state") not in ("open", "in_progress", "done"):
        return Resp(422, {"error": "validation_failed", "fields": ["state"]})
    v = dict(t)
    v.update({k: j[k] for k in ("title", "state", "points") if k in j})
    return Resp(200, v)


@route("clean", API, "GET", "/v1/tags")
@needs_clean_bearer
def c_tags(h, p, q, body):
    return Resp(200, {"tags": CLEAN.tags})


CLEAN_SECURITY_HEADERS = [
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]

# ---------------------------------------------------------------- HTTP plumbing


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in two writes; without TCP_NODELAY the body waits for the client's
    # delayed ACK (40 ms per response on Linux loopback).
    disable_nagle_algorithm = True
    app = "rest"
    log_file = None
    log_lock = threading.Lock()

    def log_message(self, fmt, *args):  # the access log below replaces stderr logging
        pass

    # --- per-app response decoration
    def banner(self):
        if self.app == "rest":
            return "shop-api"
        if self.app == "risky":
            return "Apache/2.4.49 (Unix) PHP/7.2.1" if self.host == LEGACY else "nginx/1.14.0 (Ubuntu)"
        return None  # clean: no Server header at all

    def send_response(self, code, message=None):
        self.send_response_only(code, message)
        b = self.banner()
        if b:
            self.send_header("Server", b)
        self.send_header("Date", self.date_time_string())

    def extra_headers(self, path):
        if self.app == "rest":
            return [("X-Request-Id", derived_uuid(self.command, self.path, time.monotonic_ns()))]
        if self.app == "risky":
            hs = []
            if self.host == LEGACY:
                hs.append(("X-Powered-By", "PHP/7.2.1"))
                if path.startswith("/api/"):
                    hs += [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Credentials", "true")]
            return hs
        hs = list(CLEAN_SECURITY_HEADERS) + [("Vary", "Origin")]
        if self.headers.get("Origin") == fx.CLEAN_ORIGIN:
            hs += [("Access-Control-Allow-Origin", fx.CLEAN_ORIGIN), ("Access-Control-Allow-Credentials", "true")]
        return hs

    def gzip_ok(self):
        # rest-api only: gzip when the client asks for it.
        return self.app == "rest" and "gzip" in self.headers.get("Accept-Encoding", "")

    # --- dispatch
    def dispatch(self):
        self.host = (self.headers.get("Host") or "").split(":")[0]
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        u = urlsplit(self.path)
        q = dict(parse_qsl(u.query, keep_blank_values=True))
        r, params = find_route(self.app, self.host, self.command, u.path)
        if r is None:
            resp = err(params, "not_found" if params == 404 else "method_not_allowed")
        else:
            try:
                resp = r.fn(self, params, q, body)
            except Exception as e:  # a bug here must not look like designed traffic
                print("server error on %s %s: %r" % (self.command, self.path, e), file=sys.stderr)
                resp = Resp(500, {"error": "internal"})
                resp.headers.append(("X-Unexpected", "1"))
        self.write(resp, u.path)
        with Handler.log_lock:
            Handler.log_file.write(json.dumps({"host": self.host, "method": self.command, "target": self.path,
                                               "status": resp.status}) + "\n")
            Handler.log_file.flush()

    def write(self, resp, path):
        payload = b""
        if resp.body is not None and resp.status != 204:
            payload = resp.body if isinstance(resp.body, bytes) else json.dumps(resp.body, separators=(",", ":")).encode()
        headers = [("Content-Type", resp.ctype)] if payload else []
        if payload and len(payload) >= 256 and self.gzip_ok():
            payload = gzip.compress(payload, compresslevel=6, mtime=0)
            headers.append(("Content-Encoding", "gzip"))
            headers.append(("Vary", "Accept-Encoding"))
        self.send_response(resp.status)
        for k, v in headers + resp.headers + self.extra_headers(path):
            self.send_header(k, v)
        if resp.status != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = dispatch


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ROUTES:
        sys.exit("usage: server.py rest|risky|clean PORT ACCESS_LOG")
    Handler.app = sys.argv[1]
    Handler.log_file = open(sys.argv[3], "a")
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
    srv.daemon_threads = True
    import signal
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    print("serving %s on 127.0.0.1:%s" % (sys.argv[1], sys.argv[2]), file=sys.stderr, flush=True)
    srv.serve_forever()
    Handler.log_file.close()


if __name__ == "__main__":
    main()
