"""Verifies ctxguard context signatures with third-party code only: the manifest is
recomputed by the algorithm of docs/integrity.md with rfc8785 (RFC 8785) and hashlib,
and the detached JWS is checked by jwcrypto against the server's /oauth/jwks.

Usage: verify.py JWKS_FILE CONTEXT_FILE... [--expect-broken]
Exit code 0 when every context verifies (or, with --expect-broken, when none does).
"""

import base64
import hashlib
import json
import sys

import rfc8785
from jwcrypto import jwk, jws


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def manifest(ctx: dict) -> bytes:
    """The signed payload: the version manifest as canonical JSON."""
    history = ctx["session"]["history"]
    h = bytes(32)
    for message in history:
        h = hashlib.sha256(h + hashlib.sha256(rfc8785.dumps(message)).digest()).digest()
    m = {
        "context_id": ctx["context_id"],
        "created_at": ctx["created_at"],
        "history_len": len(history),
        "history_sha256": b64url(h),
        "metadata_sha256": b64url(hashlib.sha256(rfc8785.dumps(ctx["metadata"])).digest()),
        "updated_at": ctx["updated_at"],
        "version": ctx["version"],
    }
    if ctx.get("expires") is not None:
        m["expires"] = ctx["expires"]
    return rfc8785.dumps(m)


def verify(ctx: dict, keys: jwk.JWKSet) -> str:
    token = jws.JWS()
    token.deserialize(ctx["signature"])
    header = token.jose_header
    if header.get("typ") != "ocp-manifest+json":
        raise ValueError(f"unexpected typ {header.get('typ')!r}")
    key = keys.get_key(header["kid"])
    if key is None:
        raise ValueError(f"kid {header['kid']} is not in the JWKS")
    token.verify(key, alg=header["alg"], detached_payload=manifest(ctx))
    return header["kid"]


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    expect_broken = "--expect-broken" in sys.argv
    with open(args[0]) as f:
        keys = jwk.JWKSet.from_json(f.read())
    failures = 0
    for path in args[1:]:
        with open(path) as f:
            ctx = json.load(f)
        try:
            kid = verify(ctx, keys)
            print(f"{path}: version {ctx['version']} verifies (kid {kid})")
        except Exception as e:  # noqa: BLE001 - any failure is a failed verification
            failures += 1
            print(f"{path}: does not verify: {type(e).__name__}: {e}")
    if expect_broken:
        return 0 if failures == len(args) - 1 else 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
