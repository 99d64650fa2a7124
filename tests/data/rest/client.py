#!/usr/bin/env python3
"""Drives server.py over real keep-alive connections and writes the ground truth.

    client.py APP PORT TRUTH_JSON [SERVER_ACCESS_LOG]      APP = rest | risky | clean

The request plan is a pure function of a seed (random.Random(PLAN_SEED[APP])):
which connections exist, who logs in on each, which requests it sends, in
which order, and the status each must get. Several connections run at once
(one thread each, http.client.HTTPConnection, HTTP/1.1 keep-alive: every
connection carries many requests). Only tokens issued at login (iat/exp from
the clock) and response timestamps vary between runs.

Every exchange is recorded as sent and received (gzip bodies decoded) and
truth.py derives templates, auth, sensitive data, decoys and (risky/clean)
findings from that record. The run fails if any status differs from the
plan, if the server's access log disagrees with the client's record, or if
the truth audit finds a sensitive-looking value that was not registered.
"""
from __future__ import annotations

import gzip
import http.client
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import fixtures as fx
import server as srv
import truth as tr

PLAN_SEED = {"rest": "apitap rest-api plan v1", "risky": "apitap risky-api plan v1", "clean": "apitap clean-api plan v1"}
WORKERS = {"rest": 4, "risky": 3, "clean": 3}


@dataclass
class Req:
    method: str
    host: str
    template: str
    path: str
    query: list = field(default_factory=list)
    headers: list = field(default_factory=list)
    body: bytes | None = None
    ctype: str | None = None
    auth: str = "none"        # how to authenticate at send time (see Conn.auth_headers)
    expect: int = 200
    hook: str | None = None   # "login" / "session": keep the token / cookie the response hands out

    def target(self):
        t = quote(self.path, safe="/@-._~:+")
        return t + ("?" + urlencode(self.query) if self.query else "")


@dataclass
class Conn:
    cid: int
    reqs: list
    gzip: bool = False
    ctx: dict = field(default_factory=dict)


def jbody(obj):
    return json.dumps(obj, separators=(",", ":")).encode(), "application/json"


# ---------------------------------------------------------------- rest plan

SHOP, FILES = srv.SHOP, srv.FILES


class RestPlan:
    def __init__(self, reg: tr.Registry):
        self.db = srv.REST
        self.rng = random.Random(PLAN_SEED["rest"])
        self.reg = reg
        self.extra_planted = []
        self.register_db()

    def register_db(self):
        db, reg = self.db, self.reg
        for u in db.users:
            reg.add(u["email"], "email")
            reg.add(u["phone_e164"], "phone")
            reg.add(u["phone_us"], "phone")
            reg.add(u["ssn"], "ssn")
            reg.add(u["card"], "credit_card")
            reg.add(u["iban"], "iban")
            reg.add(u["ip"], "ip_address")
            reg.add(u["password"], "password")
            reg.add(db.session_cookie(u["username"]), tr.SECRET)
            for o in u["orders"]:
                reg.add(o["card"], "credit_card")
        for s in db.sessions.values():
            reg.add(s["ip"], "ip_address")
        for f in db.files.values():
            reg.add(f["owner_email"], "email")
            reg.add(f["uploaded_from"], "ip_address")
        for integ in db.integrations:
            for k, v in integ.items():
                if k in ("access_key_id", "secret_access_key", "secret_key", "token", "bot_token"):
                    reg.add(v, "api_key")
                elif k == "private_key":
                    reg.add(v, "private_key")
                    self.extra_planted += [line for line in v.splitlines() if not line.startswith("-----")]
        for p in db.payout_beneficiaries:
            reg.add(p["iban"], "iban")
        reg.add(db.api_key_header, "api_key")
        reg.add(db.api_key_query, "api_key")
        reg.add(tr.basic_value(db.basic_user, db.basic_password), tr.SECRET)
        self.extra_planted.append(db.basic_password)

    # -- helpers
    def user(self):
        return self.rng.choice(self.db.users)

    def bearer(self, r: Req):
        """Most bearer calls carry the connection's token; ~3 % a missing, expired or forged one."""
        x = self.rng.random()
        if x < 0.01:
            r.auth, r.expect = "bearer_missing", 401
        elif x < 0.02:
            r.auth, r.expect = "bearer_expired", 401
        elif x < 0.03:
            r.auth, r.expect = "bearer_forged", 401
        else:
            r.auth = "bearer"
        return r

    def G(self, host, template, path, **kw):
        return Req("GET", host, template, path, **kw)

    # -- actions (name -> weight, builder(conn_user, is_admin) -> [Req])
    def a_me(self, me, admin):
        return [self.bearer(self.G(SHOP, "/api/v1/users/me", "/api/v1/users/me"))]

    def a_users_get(self, me, admin):
        if self.rng.random() < 0.03:
            return [self.bearer(self.G(SHOP, "/api/v1/users/{user_id}", "/api/v1/users/%d" % self.rng.randint(100000, 999999), expect=404))]
        return [self.bearer(self.G(SHOP, "/api/v1/users/{user_id}", "/api/v1/users/%d" % self.user()["id"]))]

    def a_users_put(self, me, admin):
        b, ct = jbody({"name": me["name"], "email": me["email"], "phone": me["phone_us"],
                       "address": {"street": "%d Main St" % (me["id"] % 900 + 1), "city": "Springfield", "postal_code": "%05d" % (me["id"] % 99999)}})
        return [self.bearer(Req("PUT", SHOP, "/api/v1/users/{user_id}", "/api/v1/users/%d" % me["id"], body=b, ctype=ct))]

    def a_users_patch(self, me, admin):
        b, ct = jbody({"display_name": me["name"].split()[0] + self.rng.choice(["", " ✨", "_" + str(self.rng.randint(1, 99))]),
                       "marketing_opt_in": self.rng.random() < 0.5})
        return [self.bearer(Req("PATCH", SHOP, "/api/v1/users/{user_id}", "/api/v1/users/%d" % me["id"], body=b, ctype=ct))]

    def a_users_delete(self, me, admin):
        r = self.bearer(Req("DELETE", SHOP, "/api/v1/users/{user_id}", "/api/v1/users/%d" % self.user()["id"]))
        if r.expect == 200:
            r.expect = 204 if admin else 403
        return [r]

    def a_users_v2(self, me, admin):
        return [self.bearer(self.G(SHOP, "/api/v2/users/{user_id}", "/api/v2/users/%d" % self.user()["id"]))]

    def a_orders_list(self, me, admin):
        u = self.user()
        q = self.rng.choice([[("page", "2"), ("limit", "50"), ("sort", "name")], [("page", "1"), ("limit", "20")],
                             [("sort", "-placed_at")], [], [("page", "1"), ("limit", "10"), ("sort", "placed_at")]])
        return [self.bearer(self.G(SHOP, "/api/v1/users/{user_id}/orders", "/api/v1/users/%d/orders" % u["id"], query=q))]

    def a_orders_get(self, me, admin):
        u = self.user()
        o = self.rng.choice(u["orders"])
        return [self.bearer(self.G(SHOP, "/api/v1/users/{user_id}/orders/{order_id}", "/api/v1/users/%d/orders/%d" % (u["id"], o["id"])))]

    def a_orders_create(self, me, admin):
        items = [{"sku": self.rng.choice(self.db.skus), "qty": self.rng.randint(1, 3)} for _ in range(self.rng.randint(1, 3))]
        expect = 201
        if self.rng.random() < 0.08:
            items, expect = [], 422
        pan = me["card"] if self.rng.random() < 0.6 else fx.card(self.rng, self.rng.choice(["visa", "mastercard", "amex"]))
        self.reg.add(pan, "credit_card")
        b, ct = jbody({"items": items, "payment": {"card_number": pan, "holder": me["name"], "expiry": "%02d/%02d" % (self.rng.randint(1, 12), self.rng.randint(27, 31))},
                       "shipping": {"name": me["name"], "phone": me["phone_e164"], "address": {"city": "Springfield"}}})
        r = self.bearer(Req("POST", SHOP, "/api/v1/users/{user_id}/orders", "/api/v1/users/%d/orders" % me["id"], body=b, ctype=ct))
        if r.expect == 200:
            r.expect = expect
        return [r]

    def a_verification(self, me, admin):
        b, ct = jbody({"ssn": me["ssn"], "date_of_birth": "19%02d-%02d-%02d" % (self.rng.randint(50, 99), self.rng.randint(1, 12), self.rng.randint(1, 28)),
                       "payout_iban": me["iban"], "consent": True})
        r = self.bearer(Req("POST", SHOP, "/api/v1/users/{user_id}/verification", "/api/v1/users/%d/verification" % me["id"], body=b, ctype=ct))
        if r.expect == 200:
            r.expect = 202
        return [r]

    def a_order_by_id(self, me, admin):
        o = self.rng.choice(self.user()["orders"])
        return [self.bearer(self.G(SHOP, "/api/v1/orders/{order_id}", "/api/v1/orders/%d" % o["id"]))]

    def a_export(self, me, admin):
        good = self.rng.random() >= 0.1
        pw = self.db.basic_password if good else "wrong-" + self.db.basic_password[:6]
        cred = tr.basic_value(self.db.basic_user, pw)
        self.reg.add(cred, tr.SECRET)
        if not good:
            self.extra_planted.append(pw)
        m = self.rng.choice([3, 4])
        return [self.G(SHOP, "/api/v1/orders/export", "/api/v1/orders/export",
                       query=[("from", "2024-%02d-01" % m), ("to", "2024-%02d-28" % m)],
                       headers=[("Authorization", "Basic " + cred)], auth="basic", expect=200 if good else 401)]

    def a_sessions_get(self, me, admin):
        sid = self.rng.choice(sorted(self.db.sessions))
        return [self.bearer(self.G(SHOP, "/api/v1/sessions/{session_id}", "/api/v1/sessions/" + sid))]

    def a_sessions_delete(self, me, admin):
        sid = self.rng.choice(sorted(self.db.sessions))
        r = self.bearer(Req("DELETE", SHOP, "/api/v1/sessions/{session_id}", "/api/v1/sessions/" + sid))
        r.expect = 204 if r.expect == 200 else r.expect
        return [r]

    def a_unsubscribe(self, me, admin):
        r = self.bearer(Req("DELETE", SHOP, "/api/v1/newsletter/subscriptions/{email}",
                            "/api/v1/newsletter/subscriptions/" + self.user()["email"]))
        r.expect = 204 if r.expect == 200 else r.expect
        return [r]

    def a_products(self, me, admin):
        q = self.rng.choice([[("page", "2"), ("limit", "10"), ("sort", "name")], [("page", "1"), ("limit", "20")],
                             [("sort", "-price_cents")], [("page", "3"), ("limit", "10")], []])
        return [self.G(SHOP, "/api/v1/products", "/api/v1/products", query=q)]

    def a_product(self, me, admin):
        if self.rng.random() < 0.05:
            return [self.G(SHOP, "/api/v1/products/{sku}", "/api/v1/products/ZZZ-%05d" % self.rng.randint(10000, 99999), expect=404)]
        return [self.G(SHOP, "/api/v1/products/{sku}", "/api/v1/products/" + self.rng.choice(self.db.skus))]

    def a_search(self, me, admin):
        return [self.G(SHOP, "/api/v1/products/search", "/api/v1/products/search",
                       query=[("q", self.rng.choice(self.db.search_terms))] + self.rng.choice([[], [("limit", "3")]]))]

    def a_profile(self, me, admin):
        return [self.bearer(self.G(SHOP, "/api/v1/profiles/{username}", "/api/v1/profiles/" + self.user()["username"]))]

    def a_report(self, me, admin):
        d = self.rng.choice(self.db.report_dates)
        if self.rng.random() < 0.1:
            return [self.G(SHOP, "/api/v1/reports/{date}", "/api/v1/reports/" + d, auth="none", expect=401)]
        return [self.G(SHOP, "/api/v1/reports/{date}", "/api/v1/reports/" + d,
                       headers=[("X-API-Key", self.db.api_key_header)], auth="api_key")]

    def a_admin_stats(self, me, admin):
        r = self.bearer(self.G(SHOP, "/api/v1/admin/stats", "/api/v1/admin/stats"))
        if r.expect == 200 and not admin:
            r.expect = 403
        return [r]

    def a_integrations(self, me, admin):
        key, expect = self.db.api_key_query, 200
        if self.rng.random() < 0.1:
            key, expect = fx.generic_key(self.rng, "ak_live_"), 403
            self.reg.add(key, "api_key")
        return [self.G(SHOP, "/api/v1/integrations", "/api/v1/integrations", query=[("api_key", key)], auth="api_key", expect=expect)]

    def a_cart(self, me, admin):
        if self.rng.random() < 0.3:
            b, ct = jbody({"items": [{"sku": self.rng.choice(self.db.skus), "qty": self.rng.randint(1, 3)}]})
            return [Req("PUT", SHOP, "/api/v1/cart", "/api/v1/cart", body=b, ctype=ct, auth="cookie")]
        return [self.G(SHOP, "/api/v1/cart", "/api/v1/cart", auth="cookie")]

    def a_files_list(self, me, admin):
        return [self.bearer(self.G(FILES, "/files", "/files", query=self.rng.choice([[("limit", "10")], [("limit", "5"), ("page", "1")], []])))]

    def a_files_upload(self, me, admin):
        f = self.db.files[self.rng.choice(sorted(self.db.files))]
        boundary = "----apitapBoundary%08x" % self.rng.getrandbits(32)
        body = ("--%s\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n%s\r\n"
                "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\nContent-Type: text/plain\r\n\r\n"
                % (boundary, "quarterly " + f["name"], boundary, f["name"])).encode() + f["content"] + ("\r\n--%s--\r\n" % boundary).encode()
        r = self.bearer(Req("POST", FILES, "/files", "/files", body=body, ctype="multipart/form-data; boundary=" + boundary))
        r.expect = 201 if r.expect == 200 else r.expect
        return [r]

    def file_id(self):
        if self.rng.random() < 0.04:
            return "%040x" % self.rng.getrandbits(160), 404
        return self.rng.choice(sorted(self.db.files)), 200

    def a_files_get(self, me, admin):
        fid, e = self.file_id()
        r = self.bearer(self.G(FILES, "/files/{file_id}", "/files/" + fid))
        r.expect = e if r.expect == 200 else r.expect
        return [r]

    def a_files_meta(self, me, admin):
        fid, e = self.file_id()
        r = self.bearer(self.G(FILES, "/files/{file_id}/meta", "/files/%s/meta" % fid))
        r.expect = e if r.expect == 200 else r.expect
        return [r]

    def a_files_delete(self, me, admin):
        fid, e = self.file_id()
        r = self.bearer(Req("DELETE", FILES, "/files/{file_id}", "/files/" + fid))
        r.expect = (204 if e == 200 else e) if r.expect == 200 else r.expect
        return [r]

    def a_health(self, me, admin):
        return [self.G(self.rng.choice([SHOP, FILES]), "/health", "/health")]

    WEIGHTS = {
        "me": 6, "users_get": 10, "users_put": 3, "users_patch": 3, "users_delete": 1, "users_v2": 5,
        "orders_list": 6, "orders_get": 6, "orders_create": 3, "verification": 2, "order_by_id": 4, "export": 2,
        "sessions_get": 4, "sessions_delete": 1, "unsubscribe": 3, "products": 4, "product": 6, "search": 3,
        "profile": 8, "report": 4, "admin_stats": 2, "integrations": 2, "cart": 3,
        "files_list": 2, "files_upload": 2, "files_get": 4, "files_meta": 4, "files_delete": 1, "health": 1,
    }

    def login(self, u):
        body = urlencode({"username": u["username"], "password": u["password"]}).encode()
        return Req("POST", SHOP, "/api/v1/auth/login", "/api/v1/auth/login", body=body,
                   ctype="application/x-www-form-urlencoded", hook="login")

    def session_login(self, u):
        b, ct = jbody({"username": u["username"], "password": u["password"], "remember_me": True})
        return Req("POST", SHOP, "/api/v1/auth/session", "/api/v1/auth/session", body=b, ctype=ct, hook="session")

    def conns(self):
        names, weights = zip(*self.WEIGHTS.items())
        out = []
        admins = {2: "alice", 9: "victor"}
        for cid in range(18):
            reqs = []
            if cid < 2:  # anonymous shoppers: public catalogue, one probe of a protected endpoint
                for _ in range(self.rng.randint(30, 45)):
                    reqs += getattr(self, "a_" + self.rng.choice(["products", "product", "product", "search", "health"]))(None, False)
                probe = self.G(SHOP, "/api/v1/users/me", "/api/v1/users/me", auth="none", expect=401)
                reqs.insert(self.rng.randint(1, len(reqs)), probe)
                if self.rng.random() < 0.5:  # a failed login attempt
                    u = self.user()
                    bad = "x" + u["password"][::-1]
                    self.reg.add(bad, "password")
                    r = self.login(u)
                    r.body, r.expect, r.hook = urlencode({"username": u["username"], "password": bad}).encode(), 401, None
                    reqs.insert(0, r)
            else:
                u = self.db.by_name[admins[cid]] if cid in admins else self.user()
                admin = u["role"] == "admin"
                reqs.append(self.login(u))
                has_session = False
                for _ in range(self.rng.randint(60, 95)):
                    a = self.rng.choices(names, weights)[0]
                    if a == "cart" and not has_session:
                        reqs.append(self.session_login(u))
                        has_session = True
                    reqs += getattr(self, "a_" + a)(u, admin)
            out.append(Conn(cid, reqs, gzip=self.rng.random() < 0.5))
        return out


# ---------------------------------------------------------------- risky plan

LEGACY, PARTNER = srv.LEGACY, srv.PARTNER

EXPECTED_RISKY = {
    (LEGACY, "GET", "/health"): [],
    (LEGACY, "GET", "/api/v1/customers"): ["permissive_cors", "unauth_sensitive_data", "excessive_data_exposure"],
    (LEGACY, "GET", "/api/v1/customers/{customer_id}"): ["permissive_cors", "unauth_sensitive_data", "excessive_data_exposure"],
    (LEGACY, "GET", "/api/v1/customers/{customer_id}/orders"): ["permissive_cors", "credentials_in_query"],
    (LEGACY, "GET", "/api/v1/reports/{date}"): ["permissive_cors", "credentials_in_query"],
    (LEGACY, "GET", "/internal/admin"): ["admin_endpoint_exposed"],
    (LEGACY, "GET", "/internal/admin/users"): ["admin_endpoint_exposed", "unauth_sensitive_data", "excessive_data_exposure"],
    (LEGACY, "GET", "/api/v1/account"): ["permissive_cors", "cleartext_basic_auth"],
    (LEGACY, "GET", "/api/v1/orders"): ["permissive_cors", "cleartext_bearer", "jwt_alg_none"],
    (LEGACY, "GET", "/api/v1/invoices/{invoice_id}"): ["permissive_cors", "cleartext_bearer", "jwt_no_exp"],
    (LEGACY, "GET", "/api/v1/subscriptions"): ["permissive_cors", "cleartext_bearer", "jwt_long_lifetime"],
    (LEGACY, "POST", "/api/v1/orders"): ["permissive_cors", "cleartext_bearer", "verbose_error"],
    (LEGACY, "GET", "/api/v1/search"): ["permissive_cors", "verbose_error"],
    (PARTNER, "GET", "/health"): [],
    (PARTNER, "GET", "/v2/lookup"): ["credentials_in_query"],
    (PARTNER, "POST", "/v2/webhooks"): [],
}
ALWAYS_RISKY = ["server_banner", "missing_security_headers"]  # every risky endpoint


class RiskyPlan:
    def __init__(self, reg):
        self.db = srv.RISKY
        self.rng = random.Random(PLAN_SEED["risky"])
        self.reg = reg
        self.extra_planted = []
        for c in self.db.customers:
            for k, t in (("email", "email"), ("phone", "phone"), ("ssn", "ssn"), ("card", "credit_card")):
                reg.add(c[k], t)
        reg.add("legacy-admin@corp.example.net", "email")
        for k in self.db.query_keys + self.db.partner_tokens + [self.db.webhook_key]:
            reg.add(k, "api_key")
        reg.add(tr.basic_value(self.db.basic_user, self.db.basic_password), tr.SECRET)
        self.extra_planted.append(self.db.basic_password)

    def G(self, host, template, path, **kw):
        return Req("GET", host, template, path, **kw)

    def cust(self):
        return self.rng.choice(self.db.customers)

    def key(self):
        if self.rng.random() < 0.1:
            k = fx.generic_key(self.rng, "ak_")
            self.reg.add(k, "api_key")
            return k, 401
        return self.rng.choice(self.db.query_keys), 200

    def origin(self):
        return [("Origin", self.rng.choice(["https://app.example.test", "https://evil.example"]))] if self.rng.random() < 0.4 else []

    def a_health(self):
        return self.G(self.rng.choice([LEGACY, PARTNER]), "/health", "/health")

    def a_customers(self):
        return self.G(LEGACY, "/api/v1/customers", "/api/v1/customers",
                      query=[("limit", str(self.rng.choice([5, 10]))), ("offset", str(self.rng.randint(0, 30)))], headers=self.origin())

    def a_customer(self):
        if self.rng.random() < 0.05:
            return self.G(LEGACY, "/api/v1/customers/{customer_id}", "/api/v1/customers/%d" % self.rng.randint(10000, 20000), expect=404)
        return self.G(LEGACY, "/api/v1/customers/{customer_id}", "/api/v1/customers/%d" % self.cust()["id"], headers=self.origin())

    def a_customer_orders(self):
        k, e = self.key()
        return self.G(LEGACY, "/api/v1/customers/{customer_id}/orders", "/api/v1/customers/%d/orders" % self.cust()["id"],
                      query=[("api_key", k)], auth="api_key", expect=e)

    def a_reports(self):
        k, e = self.key()
        return self.G(LEGACY, "/api/v1/reports/{date}", "/api/v1/reports/" + self.rng.choice(self.db.report_dates),
                      query=[("format", "json"), ("api_key", k)], auth="api_key", expect=e)

    def a_admin(self):
        return self.G(LEGACY, "/internal/admin", "/internal/admin")

    def a_admin_users(self):
        return self.G(LEGACY, "/internal/admin/users", "/internal/admin/users")

    def a_account(self):
        if self.rng.random() < 0.1:
            return self.G(LEGACY, "/api/v1/account", "/api/v1/account", expect=401)
        cred = tr.basic_value(self.db.basic_user, self.db.basic_password)
        return self.G(LEGACY, "/api/v1/account", "/api/v1/account", headers=[("Authorization", "Basic " + cred)], auth="basic")

    def a_orders(self):
        return self.G(LEGACY, "/api/v1/orders", "/api/v1/orders", auth="jwt_none", headers=self.origin())

    def a_invoice(self):
        return self.G(LEGACY, "/api/v1/invoices/{invoice_id}", "/api/v1/invoices/%d" % self.rng.choice(self.db.invoices), auth="jwt_noexp")

    def a_subscriptions(self):
        return self.G(LEGACY, "/api/v1/subscriptions", "/api/v1/subscriptions", auth="jwt_long")

    def a_orders_create(self):
        if self.rng.random() < 0.3:
            b, ct, e = json.dumps({"item": self.rng.choice(self.db.products), "qty": 1}).encode(), "application/json", 500
        else:
            b, ct = jbody({"items": [{"product": self.rng.choice(self.db.products), "qty": self.rng.randint(1, 5)}]})
            e = 201
        return Req("POST", LEGACY, "/api/v1/orders", "/api/v1/orders", body=b, ctype=ct, auth="jwt_hs256", expect=e)

    def a_search(self):
        t = self.rng.choice(self.db.products)
        if self.rng.random() < 0.25:
            return self.G(LEGACY, "/api/v1/search", "/api/v1/search", query=[("q", t + "' OR 1=1 -- ")], expect=500)
        return self.G(LEGACY, "/api/v1/search", "/api/v1/search", query=[("q", t[:self.rng.randint(2, len(t))])])

    def a_lookup(self):
        c = self.cust()
        tok, e = self.rng.choice(self.db.partner_tokens), 200
        if self.rng.random() < 0.1:
            tok, e = fx.generic_key(self.rng, "tok_live_"), 401
            self.reg.add(tok, "api_key")
        return self.G(PARTNER, "/v2/lookup", "/v2/lookup", query=[("phone", c["phone"]), ("token", tok)], auth="api_key", expect=e)

    def a_webhook(self):
        b, ct = jbody({"event": self.rng.choice(["order.paid", "order.refunded"]), "order_id": self.rng.choice(self.cust()["orders"])})
        return Req("POST", PARTNER, "/v2/webhooks", "/v2/webhooks", body=b, ctype=ct,
                   headers=[("X-API-Key", self.db.webhook_key)], auth="api_key", expect=202)

    WEIGHTS = {"health": 2, "customers": 5, "customer": 8, "customer_orders": 5, "reports": 4, "admin": 2, "admin_users": 2,
               "account": 4, "orders": 4, "invoice": 4, "subscriptions": 3, "orders_create": 5, "search": 5, "lookup": 5, "webhook": 3}

    def conns(self):
        names, weights = zip(*self.WEIGHTS.items())
        out = []
        for cid in range(6):
            n = self.rng.randint(40, 60)
            reqs = [getattr(self, "a_" + self.rng.choices(names, weights)[0])() for _ in range(n)]
            if cid == 0:  # make sure every endpoint is there
                reqs = [getattr(self, "a_" + a)() for a in names] + reqs
            out.append(Conn(cid, reqs))
        return out


# ---------------------------------------------------------------- clean plan

API = srv.API


class CleanPlan:
    def __init__(self, reg):
        self.db = srv.CLEAN
        self.rng = random.Random(PLAN_SEED["clean"])
        self.reg = reg
        self.extra_planted = []

    def pid(self):
        if self.rng.random() < 0.04:
            return self.rng.randint(1000, 1999), 404
        return self.rng.choice(sorted(self.db.projects)), 200

    def common(self):
        hs = [("X-Forwarded-Proto", "https"), ("Accept", "application/json")]
        if self.rng.random() < 0.3:
            hs.append(("Origin", self.rng.choice([fx.CLEAN_ORIGIN, fx.CLEAN_ORIGIN, "https://other.example"])))
        return hs

    def R(self, method, template, path, expect=200, body=None, query=(), bearer=True):
        ctype = None
        if body is not None:
            body, ctype = jbody(body)
        auth, e = "none", expect
        if bearer:
            auth = "clean_bearer"
            if self.rng.random() < 0.02:
                auth, e = "none", 401
        return Req(method, API, template, path, query=list(query), headers=self.common(), body=body, ctype=ctype, auth=auth, expect=e)

    def a_health(self):
        return self.R("GET", "/health", "/health", bearer=False)

    def a_projects(self):
        return self.R("GET", "/v1/projects", "/v1/projects", query=self.rng.choice([[("page", "1"), ("limit", "10")], [("page", "2"), ("limit", "10")], []]))

    def a_project_create(self):
        if self.rng.random() < 0.1:
            return self.R("POST", "/v1/projects", "/v1/projects", 422, body={"tags": ["x"]})
        return self.R("POST", "/v1/projects", "/v1/projects", 201,
                      body={"name": "Project %s" % self.rng.choice(self.db.tags).capitalize(), "tags": self.rng.sample(self.db.tags, 2)})

    def a_project(self):
        p, e = self.pid()
        return self.R("GET", "/v1/projects/{project_id}", "/v1/projects/%d" % p, e)

    def a_project_patch(self):
        p, e = self.pid()
        return self.R("PATCH", "/v1/projects/{project_id}", "/v1/projects/%d" % p, e, body={"tags": self.rng.sample(self.db.tags, 3)})

    def a_project_delete(self):
        p, e = self.pid()
        return self.R("DELETE", "/v1/projects/{project_id}", "/v1/projects/%d" % p, 204 if e == 200 else e)

    def a_tasks(self):
        p, e = self.pid()
        return self.R("GET", "/v1/projects/{project_id}/tasks", "/v1/projects/%d/tasks" % p, e,
                      query=self.rng.choice([[("state", "open")], [("state", "done")], []]))

    def task(self):
        pr = self.db.projects[self.rng.choice(sorted(self.db.projects))]
        if self.rng.random() < 0.05:
            return pr["id"], 999, 404
        return pr["id"], self.rng.choice(sorted(pr["tasks"])), 200

    def a_task(self):
        p, t, e = self.task()
        return self.R("GET", "/v1/projects/{project_id}/tasks/{task_id}", "/v1/projects/%d/tasks/%d" % (p, t), e)

    def a_task_put(self):
        p, t, e = self.task()
        st = self.rng.choice(["open", "in_progress", "done", "archived"])
        if st == "archived" and e == 200:
            e = 422
        return self.R("PUT", "/v1/projects/{project_id}/tasks/{task_id}", "/v1/projects/%d/tasks/%d" % (p, t), e,
                      body={"state": st, "points": self.rng.choice([1, 2, 3, 5])})

    def a_tags(self):
        return self.R("GET", "/v1/tags", "/v1/tags")

    WEIGHTS = {"health": 2, "projects": 6, "project_create": 3, "project": 8, "project_patch": 3, "project_delete": 1,
               "tasks": 6, "task": 8, "task_put": 4, "tags": 2}

    def conns(self):
        names, weights = zip(*self.WEIGHTS.items())
        out = []
        for cid in range(5):
            reqs = [getattr(self, "a_" + self.rng.choices(names, weights)[0])() for _ in range(self.rng.randint(50, 70))]
            if cid == 0:
                reqs = [getattr(self, "a_" + a)() for a in names] + reqs
            out.append(Conn(cid, reqs, ctx={"principal": self.db.principals[cid % len(self.db.principals)]}))
        return out


# ---------------------------------------------------------------- sending


class Runner:
    def __init__(self, app, port, reg):
        self.app, self.port, self.reg = app, port, reg
        self.lock = threading.Lock()
        self.records = []
        self.errors = []

    def auth_headers(self, conn: Conn, r: Req):
        now = int(time.time())
        mode = r.auth
        if mode in ("bearer", "bearer_forged"):
            tok = conn.ctx.get("token")
            if tok is None:
                raise RuntimeError("conn %d: bearer request before login" % conn.cid)
            if mode == "bearer_forged":
                # same header and claims, signed with a guessed secret: the signature check fails
                h, p, _ = json.loads(fx.b64url_decode(tok.split(".")[0])), json.loads(fx.b64url_decode(tok.split(".")[1])), None
                tok = fx.jwt_encode(h, p, b"secret")
            return [("Authorization", "Bearer " + self.token(tok))]
        if mode == "bearer_expired":
            u = srv.REST.by_id[int(json.loads(fx.b64url_decode(conn.ctx["token"].split(".")[1]))["sub"])]
            return [("Authorization", "Bearer " + self.token(srv.REST.issue_jwt(u, now - 7200, 3600)))]
        if mode == "cookie":
            return [("Cookie", "sid=%s; theme=dark" % conn.ctx["sid"])]
        if mode == "jwt_none":
            return [("Authorization", "Bearer " + self.token(fx.jwt_encode(
                {"alg": "none", "typ": "JWT"}, {"iss": "legacy", "sub": "svc-reporting", "iat": now, "exp": now + 3600}, None)))]
        if mode == "jwt_noexp":
            return [("Authorization", "Bearer " + self.token(fx.jwt_encode(
                {"alg": "HS256", "typ": "JWT"}, {"iss": "legacy", "sub": "billing-ui", "iat": now}, fx.RISKY_SECRET)))]
        if mode == "jwt_long":
            return [("Authorization", "Bearer " + self.token(fx.jwt_encode(
                {"alg": "HS256", "typ": "JWT"}, {"iss": "legacy", "sub": "mobile-app", "iat": now, "exp": now + 10 * 365 * 86400}, fx.RISKY_SECRET)))]
        if mode == "jwt_hs256":
            return [("Authorization", "Bearer " + self.token(fx.jwt_encode(
                {"alg": "HS256", "typ": "JWT"}, {"iss": "legacy", "sub": "checkout", "iat": now, "exp": now + 3600}, fx.RISKY_SECRET)))]
        if mode == "clean_bearer":
            return [("Authorization", "Bearer " + self.token(srv.CLEAN.token(conn.ctx["principal"], now)))]
        return []  # none, basic / api_key (already in r.headers / r.query), bearer_missing

    def token(self, t):
        with self.lock:
            self.reg.add(t, "jwt")
        return t

    def run_conn(self, conn: Conn):
        hc = None
        for seq, r in enumerate(conn.reqs):
            if hc is None:
                hc = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            hs = [("Host", r.host), ("User-Agent", "apitap-testclient/1.0 (python http.client)"),
                  ("Accept-Encoding", "gzip" if conn.gzip else "identity")]
            hs += self.auth_headers(conn, r) + r.headers
            if r.body is not None:
                hs += [("Content-Type", r.ctype), ("Content-Length", str(len(r.body)))]
            target = r.target()
            hc.putrequest(r.method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in hs:
                hc.putheader(k, v)
            hc.endheaders(r.body)
            resp = hc.getresponse()
            raw = resp.read()
            rh = resp.getheaders()
            body = gzip.decompress(raw) if tr.header(rh, "content-encoding") == "gzip" else raw
            rec = {"conn": conn.cid, "seq": seq, "host": r.host, "method": r.method, "target": target,
                   "template": r.template, "status": resp.status, "req_headers": hs, "req_body": r.body or b"",
                   "resp_headers": rh, "resp_body": body}
            if resp.status != r.expect:
                self.errors.append("conn %d #%d %s %s: status %d, planned %d: %s" % (conn.cid, seq, r.method, target, resp.status, r.expect, body[:200]))
            if r.hook == "login" and resp.status == 200:
                conn.ctx["token"] = self.token(json.loads(body)["access_token"])
            if r.hook == "session" and resp.status == 200:
                conn.ctx["sid"] = tr.header(rh, "set-cookie").split(";")[0].split("=", 1)[1]
            with self.lock:
                self.records.append(rec)
        if hc is not None:
            hc.close()

    def run(self, conns, workers):
        queues = [conns[i::workers] for i in range(workers)]

        def worker(q):
            try:
                for c in q:
                    self.run_conn(c)
            except Exception as e:  # surfaced below; a half-run capture must not pass
                self.errors.append("worker: %r" % e)

        ts = [threading.Thread(target=worker, args=(q,)) for q in queues]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.records.sort(key=lambda x: (x["conn"], x["seq"]))


def check_routes(app, conns):
    """Every planned request names the server route that will answer it."""
    routes = {r.key: r for r in srv.ROUTES[app]}
    for c in conns:
        for r in c.reqs:
            rt = routes.get((r.host, r.method, r.template))
            if rt is None:
                raise SystemExit("plan names an unknown route %s %s %s" % (r.host, r.method, r.template))
            if not rt.regex.match(r.path):
                raise SystemExit("path %s does not match route %s" % (r.path, r.template))


def check_cardinality(conns):
    seen = {}
    for c in conns:
        for r in c.reqs:
            seen.setdefault(r.template, set()).add(r.path)
    need = {"/api/v1/profiles/{username}": 30, "/api/v1/users/{user_id}": 30, "/api/v1/sessions/{session_id}": 20,
            "/files/{file_id}": 20, "/files/{file_id}/meta": 15, "/api/v1/products/{sku}": 25, "/api/v1/reports/{date}": 20,
            "/api/v1/newsletter/subscriptions/{email}": 15, "/api/v1/users/{user_id}/orders/{order_id}": 30,
            "/api/v2/users/{user_id}": 20, "/api/v1/orders/{order_id}": 20}
    for t, n in need.items():
        if len(seen.get(t, ())) < n:
            raise SystemExit("cardinality: %s has %d distinct paths, want >= %d" % (t, len(seen.get(t, ())), n))
    return {t: len(v) for t, v in sorted(seen.items())}


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in PLAN_SEED:
        sys.exit("usage: client.py rest|risky|clean PORT TRUTH_JSON [SERVER_ACCESS_LOG]")
    app, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    reg = tr.Registry()
    plan = {"rest": RestPlan, "risky": RiskyPlan, "clean": CleanPlan}[app](reg)
    conns = plan.conns()
    check_routes(app, conns)
    distinct = check_cardinality(conns) if app == "rest" else None

    runner = Runner(app, port, reg)
    runner.run(conns, WORKERS[app])
    planned = sum(len(c.reqs) for c in conns)
    if len(runner.records) != planned:
        runner.errors.append("sent %d of %d planned requests" % (len(runner.records), planned))
    if runner.errors:
        sys.exit("client: %d errors:\n  %s" % (len(runner.errors), "\n  ".join(runner.errors[:20])))

    if len(sys.argv) == 5:  # the server's own log must tell the same story
        time.sleep(0.2)
        with open(sys.argv[4]) as f:
            srv_log = Counter((j["host"], j["method"], j["target"], j["status"]) for j in map(json.loads, f))
        cli_log = Counter((x["host"], x["method"], x["target"], x["status"]) for x in runner.records)
        if srv_log != cli_log:
            sys.exit("server access log and client record differ: %s / %s" % (srv_log - cli_log, cli_log - srv_log))

    truth = tr.build(runner.records, reg, plan.extra_planted, with_findings=app != "rest")
    doc = {"capture": "%s-api.pcap" % app, "generator": "tests/data/rest/make.sh", "server": "tests/data/rest/server.py %s" % app,
           "port": port, "plan_seed": PLAN_SEED[app]}
    if distinct is not None:
        doc["distinct_paths_per_template"] = distinct
    if app == "risky":
        got = {(f["host"], f["method"], f["template"], f["rule"]) for f in truth["findings"]}
        want = {k + (rule,) for k, rules in EXPECTED_RISKY.items() for rule in rules + ALWAYS_RISKY}
        if got != want:
            sys.exit("risky findings differ from the design: unexpected %s, missing %s" % (sorted(got - want), sorted(want - got)))
    if app == "clean":
        if truth["findings"]:
            sys.exit("clean capture exhibits findings: %s" % truth["findings"])
        bearer_eps = sorted({(a["host"], a["method"], a["template"]) for a in truth["auth"] if a["exchanges"].get("bearer")})
        doc["tolerated"] = [{"rule": "cleartext_bearer", "why": "every request is plain HTTP on loopback but carries "
                             "X-Forwarded-Proto: https (TLS terminated by a load balancer in front); a sensor that does not "
                             "honour X-Forwarded-Proto would raise cleartext_bearer here, and only that",
                             "endpoints": [tr.ep_dict(k) for k in bearer_eps]}]
    doc.update(truth)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    ex = truth["exchanges"]
    print("%s: %d exchanges on %d connections, %d templates, %d sensitive, %d planted values, %s" % (
        app, ex["count"], ex["connections"], len(truth["templates"]), len(truth["sensitive"]),
        len(truth["planted_values"]), ("%d findings" % len(truth["findings"])) if "findings" in truth else "statuses " + json.dumps(ex["statuses"])))


if __name__ == "__main__":
    main()
