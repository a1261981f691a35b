"""Recomputes ctxguard's audit chain from `ctxguard audit export` with a third-party
RFC 8785 implementation, exactly as docs/audit.md ("Verifying with another tool") shows.
Usage: verify.py EXPORT.jsonl [--expect-broken]"""
import hashlib
import json
import sys

import rfc8785


def first_break(path):
    prev = "0" * 64
    count = 0
    for line in open(path):
        r = json.loads(line)
        stated = r.pop("hash")
        if r["prev_hash"] != prev:
            return count, f"record {r['seq']} does not follow its predecessor"
        if hashlib.sha256(rfc8785.dumps(r)).hexdigest() != stated:
            return count, f"record {r['seq']} was altered"
        prev = stated
        count += 1
    return count, None


count, broken = first_break(sys.argv[1])
expect_broken = "--expect-broken" in sys.argv
if expect_broken:
    assert broken, "an edited export verified"
    print(f"third-party check names the edit: {broken}")
else:
    assert broken is None, broken
    assert count > 5, f"only {count} records"
    print(f"third-party check: {count} records chain correctly (rfc8785 + sha256)")
