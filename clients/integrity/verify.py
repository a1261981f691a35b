"""Verifies ctxguard context signatures with third-party code only: the manifest is
recomputed by the algorithm of docs/integrity.md with rfc8785 (RFC 8785) and hashlib,
and the detached JWS is checked by jwcrypto against the server's /oauth/jwks.

Usage: verify.py JWKS_FILE CONTEXT_FILE... [--expect-broken]
       verify.py JWKS_FILE --sealed TOKEN_FILE AUDIENCE   (a sealed inline context)
Exit code 0 when every context verifies (or, with --expect-broken, when none does).
"""

import base64
import hashlib
import json
import sys

import rfc8785
from jwcrypto import jwk, jws, jwt


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


def verify_sealed(token: str, keys: jwk.JWKSet, audience: str) -> dict:
    """A sealed inline context: a JWT whose claims are the context plus iss/iat/exp/aud."""
    checked = jwt.JWT(jwt=token, key=keys, algs=["EdDSA", "ES256"], expected_type="JWS",
                      check_claims={"exp": None, "iat": None, "aud": audience})
    header = json.loads(checked.header)
    if header.get("typ") != "ocp-context+jwt":
        raise ValueError(f"unexpected typ {header.get('typ')!r}")
    claims = json.loads(checked.claims)
    if "context_id" not in claims or "history" not in claims.get("session", {}):
        raise ValueError("the payload is not an OCP context")
    return claims


def main() -> int:
    if "--sealed" in sys.argv:
        jwks_file, _, token_file, audience = sys.argv[1:5]
        with open(jwks_file) as f:
            keys = jwk.JWKSet.from_json(f.read())
        with open(token_file) as f:
            claims = verify_sealed(f.read().strip(), keys, audience)
        print(f"sealed context {claims['context_id']} verifies (aud {claims['aud']}, exp {claims['exp']})")
        return 0
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
