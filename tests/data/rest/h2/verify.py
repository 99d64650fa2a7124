"""Checks the HTTP/2 capture against its truth.

    python3 verify.py PCAP TRUTH PORT [--apitap OBSERVATIONS.jsonl]

tshark (`-d tcp.port==PORT,http2`, out-of-order reassembly on) must see exactly the truth's
requests ((:method, :path) as a multiset) and statuses; with --apitap, the http_exchange lines
of `apitap replay` (redaction `mask`, so paths and queries are compared by method, template-free
path shape and status count only) must be as many as the truth's exchanges, all HTTP/2.
"""
from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys


def tshark_view(pcap: str, port: int):
    out = subprocess.run(
        ["tshark", "-r", pcap, "-o", "tcp.reassemble_out_of_order:TRUE", "-d", "tcp.port==%d,http2" % port,
         "-Y", "http2.type == 1", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
         "-e", "http2.headers.method", "-e", "http2.headers.path", "-e", "http2.headers.status"],
        check=True, capture_output=True, text=True).stdout
    reqs, statuses = collections.Counter(), collections.Counter()
    for line in out.splitlines():
        cols = line.split("\t")
        methods = [m for m in cols[0].split("|") if m]
        paths = [p for p in cols[1].split("|") if p]
        for m, p in zip(methods, paths):
            reqs[(m, p)] += 1
        for s in cols[2].split("|"):
            if s:
                statuses[int(s)] += 1
    return reqs, statuses


def main():
    pcap, truth_path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    truth = json.load(open(truth_path))
    log = truth["exchange_log"]
    ok = True
    if shutil.which("tshark"):
        reqs, statuses = tshark_view(pcap, port)
        want_r = collections.Counter((e["method"], e["target"]) for e in log)
        want_s = collections.Counter(e["status"] for e in log)
        if reqs != want_r:
            print("tshark requests differ: %s" % list(((want_r - reqs) + (reqs - want_r)).items())[:5])
            ok = False
        if statuses != want_s:
            print("tshark statuses differ: %s vs %s" % (dict(statuses), dict(want_s)))
            ok = False
        print("tshark: %d requests, %d responses" % (sum(reqs.values()), sum(statuses.values())))
    else:
        print("tshark not found: tshark check skipped")
    if "--apitap" in sys.argv:
        obs = [json.loads(ln) for ln in open(sys.argv[sys.argv.index("--apitap") + 1])]
        ex = [o for o in obs if o.get("type") == "http_exchange"]
        got = collections.Counter((o["request"]["method"], o["response"]["status"] if o.get("response") else None)
                                  for o in ex)
        want = collections.Counter((e["method"], e["status"]) for e in log)
        h2 = sum(1 for o in ex if o.get("protocol") == "HTTP/2")
        if got != want or h2 != len(log):
            print("apitap differs: %d exchanges (%d HTTP/2), truth %d; %s" % (len(ex), h2, len(log),
                                                                              (want - got) + (got - want)))
            ok = False
        print("apitap: %d exchanges, %d HTTP/2" % (len(ex), h2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
