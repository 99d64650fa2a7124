"""Deterministic data shared by server.py, client.py and truth.py.

Everything here is a pure function of a seed string, so the server (which
serves the data) and the client (which requests it and writes the ground
truth) build the very same "database" independently. Only JWT `iat`/`exp`
come from the wall clock (tokens must be valid when the capture is made).

All secrets are FAKE: card numbers are Luhn-valid but random or public test
PANs, IBANs only satisfy ISO 13616 mod-97, API keys only have the shape of
AWS / Stripe / GitHub / Slack keys, the PEM is base64 of random bytes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import uuid

# ---------------------------------------------------------------- generators


def luhn_check_digit(body: str) -> str:
    total = 0
    # Walking from the right, every second digit starting with the one next to
    # the (missing) check digit is doubled.
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) > 1 and luhn_check_digit(number[:-1]) == number[-1]


def card(rng: random.Random, brand: str) -> str:
    if brand == "visa":
        prefix, length = "4", 16
    elif brand == "mastercard":
        prefix, length = rng.choice(["51", "52", "53", "54", "55", str(rng.randint(2221, 2720))]), 16
    elif brand == "amex":
        prefix, length = rng.choice(["34", "37"]), 15
    else:
        raise ValueError(brand)
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)


# Public test PANs (Stripe / payment-network documentation numbers).
TEST_PANS = ["4111111111111111", "5555555555554444", "378282246310005", "4242424242424242",
             "5105105105105100", "371449635398431"]


def non_luhn_16(rng: random.Random) -> str:
    """A 16-digit number that fails Luhn (an order number, not a card)."""
    while True:
        n = str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(15))
        if not luhn_valid(n):
            return n


def iban_check(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return "%02d" % (98 - int(digits) % 97)


def iban_valid(iban: str) -> bool:
    s = iban.replace(" ", "")
    if len(s) < 15 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    digits = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(digits) % 97 == 1


def iban(rng: random.Random) -> str:
    country = rng.choice(["DE", "GB", "FR", "NL", "ES"])
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    L = lambda n: "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))  # noqa: E731
    bban = {"DE": lambda: d(18), "GB": lambda: L(4) + d(14), "FR": lambda: d(23),
            "NL": lambda: L(4) + d(10), "ES": lambda: d(20)}[country]()
    return country + iban_check(country, bban) + bban


def ssn(rng: random.Random) -> str:
    """US SSN in a valid range: area 001-899 except 666, group 01-99, serial 0001-9999."""
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return "%03d-%02d-%04d" % (area, rng.randint(1, 99), rng.randint(1, 9999))


AREA_CODES = [212, 312, 415, 617, 646, 206, 303, 512, 720, 213]


def us_phone_parts(rng: random.Random) -> tuple[int, int, int]:
    return rng.choice(AREA_CODES), rng.randint(201, 989), rng.randint(100, 9999)


def phone_e164(parts: tuple[int, int, int]) -> str:
    return "+1%03d%03d%04d" % parts


def phone_us(parts: tuple[int, int, int], style: int) -> str:
    return ("(%03d) %03d-%04d" if style == 0 else "%03d-%03d-%04d") % parts


def uk_mobile(rng: random.Random) -> str:
    return "+447700900%03d" % rng.randint(0, 999)  # Ofcom drama range


def ip_address(rng: random.Random) -> str:
    net = rng.choice(["203.0.113", "198.51.100", "192.0.2", "81.2.69", "89.160.20"])
    return "%s.%d" % (net, rng.randint(11, 254))


def alnum(rng: random.Random, n: int, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def aws_key_id(rng):
    return "AKIA" + alnum(rng, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def aws_secret(rng):
    return alnum(rng, 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+")


def stripe_secret(rng):
    return "sk_live_" + alnum(rng, 24)


def github_pat(rng):
    return "ghp_" + alnum(rng, 36)


def slack_bot(rng):
    return "xoxb-%d-%d-%s" % (rng.randint(10**11, 10**12 - 1), rng.randint(10**12, 10**13 - 1), alnum(rng, 24))


def generic_key(rng, prefix="ak_live_"):
    return prefix + alnum(rng, 32, "0123456789abcdef")


def pem_private_key(rng: random.Random) -> str:
    raw = bytes(rng.getrandbits(8) for _ in range(1216))
    b64 = base64.b64encode(raw).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"


def password(rng: random.Random) -> str:
    # Only URL-unreserved characters, so the form-encoded wire form equals the raw value.
    return alnum(rng, 10) + rng.choice("-_.") + alnum(rng, 5)


def uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_encode(header: dict, claims: dict, secret: bytes | None) -> str:
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    if secret is None:
        return h + "." + p + "."
    sig = hmac.new(secret, (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + b64url(sig)


def jwt_decode(token: str, secret: bytes | None):
    """Returns (header, claims, signature_ok) or None when the token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except Exception:
        return None
    if secret is None or header.get("alg") != "HS256":
        return header, claims, False
    sig = hmac.new(secret, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
    return header, claims, hmac.compare_digest(b64url(sig), parts[2])


# ---------------------------------------------------------------- rest-api database

FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
         "xena", "yara", "zoe", "liam", "noah", "emma", "ava", "mia", "lucas", "ethan", "amelia",
         "harper", "logan", "ella", "mason", "aria", "henry", "chloe", "jack", "nora", "owen",
         "leah", "ruby", "felix", "iris", "hugo", "maya", "oscar", "lena", "theo", "sara",
         "kai", "ines", "omar", "yuki", "priya", "diego", "fatima", "marco", "anya", "tomas"]
LAST = ["johnson", "smith", "nguyen", "garcia", "miller", "davis", "martinez", "lopez", "wilson",
        "anderson", "thomas", "taylor", "moore", "jackson", "martin", "lee", "perez", "thompson",
        "white", "harris", "clark", "lewis", "walker", "hall", "young", "allen", "king", "wright"]
EMAIL_DOMAINS = ["example.com", "mail.example.org", "corp.example.net"]

REST_SEED = "apitap rest-api v1"
JWT_SECRET = b"apitap-test-hs256-secret-not-real"
JWT_ISS = "https://auth.shop.example.test"
JWT_AUD = "shop-api"


class RestDB:
    """The rest-api 'database'. Built from REST_SEED only."""

    def __init__(self, seed: str = REST_SEED):
        rng = random.Random(seed)
        self.users = []
        ids = rng.sample(range(10000, 99999), len(FIRST))
        for i, first in enumerate(FIRST):
            last = rng.choice(LAST)
            parts = us_phone_parts(rng)
            u = {
                "id": ids[i],
                "username": first,
                "name": "%s %s" % (first.capitalize(), last.capitalize()),
                "email": "%s.%s@%s" % (first, last, rng.choice(EMAIL_DOMAINS)),
                "phone_e164": phone_e164(parts) if i % 5 else uk_mobile(rng),
                "phone_us": phone_us(parts, i % 2),
                "ssn": ssn(rng),
                "card": TEST_PANS[i] if i < len(TEST_PANS) else card(rng, rng.choice(["visa", "visa", "mastercard", "amex"])),
                "iban": iban(rng),
                "ip": ip_address(rng),
                "password": password(rng),
                "customer_number": rng.randint(2_000_000_000, 9_899_999_999),  # 10 digits, not a phone
                "created_at": 1_600_000_000 + rng.randint(0, 100_000_000),
                "role": "admin" if first in ("alice", "victor") else "customer",
                "public_email": rng.random() < 0.4,
            }
            orders = []
            for _ in range(rng.randint(2, 6)):
                orders.append({
                    "id": rng.randint(1_000_000, 9_999_999),
                    "order_number": non_luhn_16(rng),
                    "card": u["card"] if rng.random() < 0.7 else card(rng, "visa"),
                    "total_cents": rng.randint(500, 250_000),
                    "items": [{"sku": None, "qty": rng.randint(1, 4)} for _ in range(rng.randint(1, 3))],
                    "placed_at": u["created_at"] + rng.randint(0, 30_000_000),
                })
            u["orders"] = orders
            self.users.append(u)
        self.by_id = {u["id"]: u for u in self.users}
        self.by_name = {u["username"]: u for u in self.users}

        self.skus = []
        for _ in range(16):
            self.skus.append("SKU-%05d-%s" % (rng.randint(10000, 99999), rng.choice(["XS", "S", "M", "L", "XL", "XXL"])))
        for _ in range(14):
            self.skus.append("%s-%05d" % (alnum(rng, 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"), rng.randint(10000, 99999)))
        for _ in range(10):
            self.skus.append("%s-%04d-%s" % (alnum(rng, 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"), rng.randint(1000, 9999),
                                             rng.choice(["BLK", "WHT", "RED", "BLU"])))
        adjectives = ["red", "blue", "wool", "linen", "running", "rain", "travel", "desk", "garden", "kids"]
        nouns = ["shoes", "jacket", "scarf", "lamp", "backpack", "mug", "shirt", "hat", "gloves", "bottle"]
        self.products = {}
        for sku in self.skus:
            self.products[sku] = {
                "sku": sku,
                "name": "%s %s" % (rng.choice(adjectives), rng.choice(nouns)),
                "price_cents": rng.randint(499, 19999),
                "upc": "%012d" % rng.randint(10**10, 10**12 - 1),
                "stock": rng.randint(0, 500),
                "tags": rng.sample(adjectives, 2),
            }
        for u in self.users:
            for o in u["orders"]:
                for it in o["items"]:
                    it["sku"] = rng.choice(self.skus)
        self.search_terms = ["red shoes", "wool scarf", "desk lamp", "travel mug", "rain jacket",
                             "kids hat", "garden gloves", "linen shirt"]

        self.sessions = {}
        for _ in range(30):
            sid = uuid4(rng)
            self.sessions[sid] = {"id": sid, "user_id": rng.choice(self.users)["id"], "ip": ip_address(rng),
                                  "user_agent": rng.choice(["Mozilla/5.0 (X11; Linux x86_64)", "okhttp/4.12.0",
                                                            "ShopApp/3.4.1 (iOS 17.2)"]),
                                  "created_at": 1_700_000_000 + rng.randint(0, 9_000_000)}

        self.files = {}
        for i in range(25):
            words = " ".join(rng.choice(adjectives + nouns) for _ in range(rng.randint(20, 80)))
            content = ("report %d\n%s\n" % (i, words)).encode()
            fid = hashlib.sha1(content).hexdigest()
            owner = rng.choice(self.users)
            self.files[fid] = {"id": fid, "name": "report-%02d.txt" % i, "content": content,
                               "owner_id": owner["id"], "owner_email": owner["email"],
                               "uploaded_from": ip_address(rng), "created_at": 1_700_000_000 + rng.randint(0, 9_000_000)}

        self.report_dates = ["2024-%02d-%02d" % (m, d) for m in (3, 4) for d in range(1, 29)]
        self.api_key_header = generic_key(rng, "rk_live_")    # X-API-Key for /reports
        self.api_key_query = generic_key(rng, "ak_live_")     # ?api_key= for /integrations
        self.basic_user = "reports-bot"
        self.basic_password = password(rng)
        self.integrations = [
            {"provider": "aws", "access_key_id": aws_key_id(rng), "secret_access_key": aws_secret(rng), "region": "eu-west-1"},
            {"provider": "stripe", "secret_key": stripe_secret(rng), "account": "acct_" + alnum(rng, 16)},
            {"provider": "github", "token": github_pat(rng), "org": "example-shop"},
            {"provider": "slack", "bot_token": slack_bot(rng), "channel": "#orders"},
            {"provider": "apns", "key_id": alnum(rng, 10, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), "private_key": pem_private_key(rng)},
        ]
        self.payout_beneficiaries = [{"iban": iban(rng), "beneficiary": "%s %s" % (rng.choice(FIRST).capitalize(), rng.choice(LAST).capitalize()),
                                      "amount_cents": rng.randint(10_000, 5_000_000)} for _ in range(12)]
        self.build_sha = hashlib.sha1(b"build " + seed.encode()).hexdigest()
        self.version = "1.2.3.4"

    def session_cookie(self, username: str) -> str:
        return "s_" + hmac.new(JWT_SECRET, b"session:" + username.encode(), hashlib.sha256).hexdigest()[:40]

    def issue_jwt(self, user: dict, now: int, lifetime: int = 3600) -> str:
        return jwt_encode({"alg": "HS256", "typ": "JWT"},
                          {"iss": JWT_ISS, "aud": JWT_AUD, "sub": str(user["id"]), "role": user["role"],
                           "iat": now, "exp": now + lifetime}, JWT_SECRET)


# ---------------------------------------------------------------- risky-api database

RISKY_SEED = "apitap risky-api v1"
RISKY_SECRET = b"legacy-app-secret"


class RiskyDB:
    def __init__(self, seed: str = RISKY_SEED):
        rng = random.Random(seed)
        self.customers = []
        ids = rng.sample(range(100, 9999), 40)
        for i in range(40):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            parts = us_phone_parts(rng)
            self.customers.append({
                "id": ids[i], "name": "%s %s" % (first.capitalize(), last.capitalize()),
                "email": "%s.%s%d@%s" % (first, last, i, rng.choice(EMAIL_DOMAINS)),
                "phone": phone_us(parts, i % 2) if i % 3 else phone_e164(parts),
                "ssn": ssn(rng), "card": card(rng, rng.choice(["visa", "mastercard", "amex"])),
                "card_last4": None, "orders": [rng.randint(100000, 999999) for _ in range(rng.randint(1, 4))],
            })
        for c in self.customers:
            c["card_last4"] = c["card"][-4:]
        self.by_id = {c["id"]: c for c in self.customers}
        self.query_keys = [generic_key(rng, "ak_") for _ in range(3)]      # ?api_key=
        self.partner_tokens = [generic_key(rng, "tok_live_") for _ in range(2)]  # ?token=
        self.webhook_key = generic_key(rng, "whk_")                        # X-API-Key
        self.basic_user, self.basic_password = "legacy-admin", password(rng)
        self.report_dates = ["2024-05-%02d" % d for d in range(1, 31)]
        self.invoices = rng.sample(range(50000, 59999), 25)
        self.products = ["widget", "gadget", "sprocket", "gizmo", "doohickey"]


# ---------------------------------------------------------------- clean-api database

CLEAN_SEED = "apitap clean-api v1"
CLEAN_SECRET = b"clean-api-hs256-secret-not-real"
CLEAN_ISS = "https://auth.api.example.test"
CLEAN_AUD = "projects-api"
CLEAN_ORIGIN = "https://app.example.test"


class CleanDB:
    def __init__(self, seed: str = CLEAN_SEED):
        rng = random.Random(seed)
        words = ["falcon", "harbor", "juniper", "meridian", "quartz", "summit", "tundra", "willow",
                 "aurora", "cobalt", "delta", "ember", "fjord", "granite", "horizon", "indigo"]
        self.principals = [uuid4(rng) for _ in range(6)]
        self.projects = {}
        pids = rng.sample(range(100, 999), 24)
        for pid in pids:
            tasks = {}
            for tid in rng.sample(range(1, 500), rng.randint(2, 9)):
                tasks[tid] = {"id": tid, "title": "%s %s" % (rng.choice(["review", "draft", "ship", "test", "plan"]), rng.choice(words)),
                              "state": rng.choice(["open", "in_progress", "done"]),
                              "assignee": rng.choice(self.principals), "points": rng.choice([1, 2, 3, 5, 8]),
                              "updated_at": "2026-%02d-%02dT%02d:%02d:00Z" % (rng.randint(1, 10), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59))}
            self.projects[pid] = {"id": pid, "name": "Project %s" % rng.choice(words).capitalize(),
                                  "key": "PRJ-%d" % pid, "owner": rng.choice(self.principals),
                                  "created_at": "2025-%02d-%02dT12:00:00Z" % (rng.randint(1, 12), rng.randint(1, 28)),
                                  "tasks": tasks, "tags": rng.sample(words, 3)}
        self.tags = sorted(words)
        self.api_version = "2.14.0"

    def token(self, principal: str, now: int, lifetime: int = 900, scope: str = "projects:read projects:write") -> str:
        return jwt_encode({"alg": "HS256", "typ": "JWT", "kid": "k1"},
                          {"iss": CLEAN_ISS, "aud": CLEAN_AUD, "sub": principal, "scope": scope,
                           "iat": now, "nbf": now, "exp": now + lifetime}, CLEAN_SECRET)
