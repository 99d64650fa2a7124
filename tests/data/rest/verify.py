#!/usr/bin/env python3
"""Checks a capture against its truth file with independent readers.

    verify.py PCAP TRUTH_JSON PORT [--apitap OBSERVATIONS.jsonl]

* tshark (if installed): every HTTP request (method, Host, request-target
  with query) and every response status in the pcap, as multisets, equal the
  truth's exchange_log.
* --apitap: observations written by `apitap replay PCAP -o jsonl:FILE`:
  (host, method, path, status) multiset equals the truth's (the query is
  compared by parameter names only, since apitap masks credential values).

Prints one line per check; exits 1 on any difference.
"""
import json
import shutil
import subprocess
import sys
from collections import Counter
from urllib.parse import parse_qsl


def tshark_fields(pcap, port, display, fields):
    cmd = ["tshark", "-r", pcap, "-o", "tcp.reassemble_out_of_order:TRUE", "-d", "tcp.port==%s,http" % port,
           "-Y", display, "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line]


def diff(a, b):
    return "only in capture: %s; only in truth: %s" % (list((a - b).items())[:5], list((b - a).items())[:5])


def main():
    args = sys.argv[1:]
    apitap = None
    if "--apitap" in args:
        i = args.index("--apitap")
        apitap = args[i + 1]
        del args[i:i + 2]
    pcap, truth_path, port = args
    truth = json.load(open(truth_path))
    log = truth["exchange_log"]
    ok = True

    if shutil.which("tshark"):
        reqs = Counter(tshark_fields(pcap, port, "http.request", ["http.request.method", "http.host", "http.request.uri"]))
        want = Counter((x["method"], x["host"], x["target"]) for x in log)
        codes = Counter(c for (c,) in tshark_fields(pcap, port, "http.response", ["http.response.code"]))
        want_codes = Counter(str(x["status"]) for x in log)
        good = reqs == want and codes == want_codes
        ok &= good
        print("tshark: %d requests, %d responses (truth %d) %s" % (sum(reqs.values()), sum(codes.values()), len(log),
                                                                   "OK" if good else "MISMATCH " + diff(reqs, want) + " / " + diff(codes, want_codes)))
    else:
        print("tshark: not installed, skipped")

    if apitap:
        got = Counter()
        with open(apitap) as f:
            for line in f:
                o = json.loads(line)
                if o.get("type") != "http_exchange" or o.get("response") is None:
                    got[("?", o.get("type"), line[:80])] += 1
                    continue
                rq = o["request"]
                qnames = tuple(k for k, _ in parse_qsl(rq.get("query") or "", keep_blank_values=True))
                got[(rq["host"], rq["method"], rq["path"], qnames, o["response"]["status"])] += 1
        want = Counter()
        for x in log:
            path, _, q = x["target"].partition("?")
            want[(x["host"], x["method"], path, tuple(k for k, _ in parse_qsl(q, keep_blank_values=True)), x["status"])] += 1
        good = got == want
        ok &= good
        print("apitap: %d exchanges (truth %d) %s" % (sum(got.values()), len(log), "OK" if good else "MISMATCH " + diff(got, want)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
