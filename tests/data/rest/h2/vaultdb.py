"""Deterministic data of the HTTP/2 redaction-audit API ("vault"), shared by server.py and
client.py. A pure function of VAULT_SEED (JWT iat/exp aside), built from the generators of
../fixtures.py. Every secret is FAKE (see ../README.md).

Every value that must never leave the sensor is registered in `planted` with its type when it
is made; the client's audit then keeps those that actually travelled.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fixtures as fx  # noqa: E402

VAULT_SEED = "apitap rest-h2 v1"
JWT_SECRET = b"vault-h2-hs256-secret-not-real"
JWT_AUD = "vault-api"
HOST = "vault.example.test"


class VaultDB:
    def __init__(self, seed: str = VAULT_SEED):
        rng = random.Random(seed)
        self.planted: dict[str, str] = {}  # value -> type
        self.users = []
        ids = rng.sample(range(100000, 999999), 24)
        for i in range(24):
            first = fx.FIRST[(i * 7) % len(fx.FIRST)]
            last = rng.choice(fx.LAST)
            parts = fx.us_phone_parts(rng)
            # Some addresses carry '+' (sub-addressing): they travel percent-encoded in URLs.
            tag = "+vault" if i % 3 == 0 else ""
            u = {
                "id": ids[i],
                "username": first,
                "email": "%s.%s%s@%s" % (first, last, tag, rng.choice(fx.EMAIL_DOMAINS)),
                "phone": fx.phone_e164(parts) if i % 4 else fx.uk_mobile(rng),
                "phone_us": fx.phone_us(parts, i % 2),
                "ssn": fx.ssn(rng),
                "card": fx.card(rng, rng.choice(["visa", "mastercard", "amex"])),
                "cvv": "%03d" % rng.randint(100, 999),
                "iban": fx.iban(rng),
                "ip": fx.ip_address(rng),
                "password": fx.password(rng),
                "api_key": fx.generic_key(rng, "vk_live_"),
                "csrf": fx.alnum(rng, 32),
                "refresh": "rt_" + fx.alnum(rng, 40),
            }
            for k, t in [("email", "email"), ("phone", "phone"), ("phone_us", "phone"), ("ssn", "ssn"),
                         ("card", "credit_card"), ("iban", "iban"), ("ip", "ip_address"),
                         ("password", "password"), ("api_key", "api_key"), ("csrf", "secret"),
                         ("refresh", "secret")]:
                self.planted[u[k]] = t
            u["sid"] = self.session_cookie(u)
            self.planted[u["sid"]] = "secret"
            self.users.append(u)
        self.by_email = {u["email"]: u for u in self.users}
        self.by_id = {u["id"]: u for u in self.users}
        # A service account that calls with Basic credentials.
        self.basic_user = "payroll-sync"
        self.basic_password = fx.password(rng)
        self.planted[self.basic_password] = "password"
        basic = base64.b64encode(("%s:%s" % (self.basic_user, self.basic_password)).encode()).decode()
        self.basic_b64 = basic
        self.planted[basic] = "secret"
        # A Google-style service account: its email is the JWT issuer and subject.
        self.svc_email = "billing-sync@vault-prod-%d.iam.gserviceaccount.com" % rng.randint(1000, 9999)
        self.planted[self.svc_email] = "email"
        self.integrations = {
            "aws": {"access_key_id": fx.aws_key_id(rng), "secret_access_key": fx.aws_secret(rng)},
            "stripe": {"secret_key": fx.stripe_secret(rng)},
            "github": {"token": fx.github_pat(rng)},
            "slack": {"bot_token": fx.slack_bot(rng)},
            "signing": {"private_key": fx.pem_private_key(rng)},
        }
        for prov in self.integrations.values():
            for k, v in prov.items():
                if k == "private_key":
                    # As it travels inside JSON: newlines escaped.
                    self.planted[json.dumps(v)[1:-1]] = "private_key"
                    for line in v.splitlines():
                        if not line.startswith("-----"):
                            self.planted[line] = "secret"
                else:
                    self.planted[v] = "api_key"
        self.query_key = fx.generic_key(rng, "ak_live_")
        self.client_secret = "cs_" + fx.alnum(rng, 36)
        self.planted[self.query_key] = "api_key"
        self.planted[self.client_secret] = "secret"
        self.reset_tokens = [fx.alnum(rng, 40) for _ in range(6)]
        for t in self.reset_tokens:
            self.planted[t] = "secret"

    def session_cookie(self, u: dict) -> str:
        return "sv_" + hmac.new(JWT_SECRET, b"sid:" + u["username"].encode(), hashlib.sha256).hexdigest()[:40]

    def issue_jwt(self, u: dict, now: int) -> str:
        return fx.jwt_encode({"alg": "HS256", "typ": "JWT"},
                             {"iss": "https://auth.%s" % HOST, "aud": JWT_AUD, "sub": str(u["id"]),
                              "email": u["email"], "iat": now, "exp": now + 3600}, JWT_SECRET)

    def service_jwt(self, now: int) -> str:
        """Google service-account style: `iss` and `sub` are the account's email."""
        return fx.jwt_encode({"alg": "HS256", "typ": "JWT", "kid": "k1"},
                             {"iss": self.svc_email, "sub": self.svc_email, "aud": JWT_AUD,
                              "iat": now, "exp": now + 3600}, JWT_SECRET)

    def verify_jwt(self, token: str):
        d = fx.jwt_decode(token, JWT_SECRET)
        if not d or not d[2]:
            return None
        return d[1]
