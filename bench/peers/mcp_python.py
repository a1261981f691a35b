"""The peer for the MCP scenario: the official Python MCP SDK's high-level server
(`MCPServer`, called FastMCP before SDK 2.0) serving an equivalent `context_get` tool
over stateless Streamable HTTP with JSON answers, behind the SDK's bearer-token
middleware and a JWT TokenVerifier (EdDSA, issuer, audience and expiry checked with
PyJWT) — what a team would otherwise put in front of its contexts.

It is generous to the peer: contexts come from a dict in memory, with no database.
Usage: python mcp_python.py PORT   (prints the bearer token to use, then serves)
"""

import sys
import time

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

PORT = int(sys.argv[1])
BASE = f"http://127.0.0.1:{PORT}"
ISSUER = "https://issuer.bench.invalid"
AUDIENCE = f"{BASE}/mcp"
CONTEXT_ID = "6f1c2a4e-1b7d-4c1e-9d2f-2b1c3d4e5f60"
CONTEXTS = {
    CONTEXT_ID: {
        "context_id": CONTEXT_ID,
        "metadata": {"user_id": "user-123", "topic": "billing"},
        "session": {
            "history": [
                {"role": "system", "message": "You are a support agent."},
                {"role": "user", "message": "Where is my invoice?"},
                {"role": "assistant", "message": "It is in your inbox."},
            ]
        },
        "version": 1,
        "created_at": "2026-11-23T00:00:00Z",
        "updated_at": "2026-11-23T00:00:00Z",
    }
}

signing_key = Ed25519PrivateKey.generate()
public_pem = signing_key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


class JwtVerifier:
    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = jwt.decode(
                token,
                public_pem,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        return AccessToken(
            token=token,
            client_id=claims.get("client_id", claims["sub"]),
            scopes=claims.get("scope", "").split(),
            expires_at=claims["exp"],
            resource=AUDIENCE,
        )


server = MCPServer(
    "bench-peer",
    token_verifier=JwtVerifier(),
    auth=AuthSettings(
        issuer_url=ISSUER, resource_server_url=AUDIENCE, required_scopes=["mcp:read"], validate_token_resource=True
    ),
    log_level="WARNING",
)


@server.tool()
def context_get(context_id: str) -> dict:
    """The latest version of a context."""
    ctx = CONTEXTS.get(context_id)
    if ctx is None:
        raise ValueError(f"context {context_id} not found")
    return ctx


now = int(time.time())
token = jwt.encode(
    {"iss": ISSUER, "sub": "bench", "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 3600,
     "scope": "mcp:read", "client_id": "bench"},
    signing_key,
    algorithm="EdDSA",
    headers={"typ": "at+jwt"},
)
print(f"token {token}", flush=True)
print(f"peer listening on {BASE}", flush=True)
app = server.streamable_http_app(json_response=True, stateless_http=True)
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
