#!/usr/bin/env python3
"""Write the deterministic static content served by the apitap test nginx.

usage: make-site.py HTML_DIR
Everything is generated (no binary files in git) and byte-identical on every run.
"""
import json
import os
import random
import sys

root = sys.argv[1]


def w(rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)
    # fixed mtime so Last-Modified / ETag are stable across regenerations
    os.utime(path, (1700000000, 1700000000))


rng = random.Random(20240601)

w("index.html", "<!doctype html><title>apitap</title><p>apitap test site</p>\n")
users = [{"id": i, "name": f"user{i}", "email": f"user{i}@example.test"} for i in range(1, 4)]
w("v1/users.json", json.dumps({"users": users}) + "\n")
for uid in (1, 2, 3, 42):
    w(f"v1/users/{uid}.json", json.dumps({"id": uid, "name": f"user{uid}", "active": True}) + "\n")
w("v1/items.json", json.dumps({"items": [{"sku": f"SKU-{i:04d}", "qty": i} for i in range(5)]}) + "\n")
w("v1/search.json", json.dumps({"query": "static", "hits": [1, 2, 3]}) + "\n")
w("v1/orders.json", json.dumps({"orders": []}) + "\n")
w("v1/orders/recent.json", json.dumps({"orders": [
    {"id": 5000 + i, "user": f"user{i % 7}", "total": round(rng.uniform(5, 300), 2), "status": "shipped",
     "lines": [{"sku": f"SKU-{i:04d}", "qty": 1 + i % 3}]} for i in range(8)]}) + "\n")
w("v2/status.json", json.dumps({"ok": True, "version": "2.0.0"}) + "\n")

# > gzip_min_length, compressible: served gzip + chunked to clients that ask.
catalog = {"products": [{"id": i, "name": f"product-{i}", "price": round(rng.uniform(1, 500), 2),
                         "tags": ["alpha", "beta", "gamma"][: 1 + i % 3],
                         "description": "A product used for passive API discovery tests. " * 2}
                        for i in range(120)]}
w("v1/catalog.json", json.dumps(catalog, indent=1) + "\n")
w("docs/readme.txt", ("apitap readme line of text for gzip testing\n" * 400))

# 200 KB incompressible download (application/octet-stream, not gzipped).
w("files/big.bin", bytes(rng.getrandbits(8) for _ in range(200 * 1024)))
# 200 KB JSON-ish download (gzipped when asked).
rows = []
size = 0
i = 0
while size < 200 * 1024:
    s = json.dumps({"row": i, "value": rng.randrange(10**9), "label": f"r{i}"})
    rows.append(s)
    size += len(s) + 2
    i += 1
w("files/big.json", "[\n" + ",\n".join(rows) + "\n]\n")
