"""The official MCP Python SDK against a running ctxguard.

Discovers the protected resource and authorization server metadata, registers
(dynamic registration), runs the PKCE flow through ctxguard's real login and consent
pages (the browser step is scripted with HTTP requests), checks `iss`, calls every
tool, reads a resource, refreshes, and is refused after revocation.

Usage: python flow.py <base-url> <user> <password> <initialize|discover>
  initialize: the 2025 handshake (sessions); discover: 2026-07-28 (stateless).
"""

import asyncio
import logging
import os
import re
import sys
from html import unescape
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

BASE, USER, PASSWORD, MODE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
REDIRECT = "http://127.0.0.1:53682/callback"


class Memory(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Fills ctxguard's login and consent forms the way a person's browser would."""

    def __init__(self):
        self.result = None
        self.allowed = True
        self.logins = 0

    @staticmethod
    def field(html: str, name: str) -> str:
        m = re.search(rf'name="{name}" value="([^"]*)"', html)
        assert m, f"no {name} field in page"
        return unescape(m.group(1))

    async def open(self, authorization_url: str) -> None:
        self.logins += 1
        if not self.allowed:
            raise RuntimeError("the user is not available to sign in again")
        async with httpx2.AsyncClient(follow_redirects=False) as web:
            login = await web.get(authorization_url)
            assert login.status_code == 200, login.text
            form = {"csrf": self.field(login.text, "csrf"), "request": self.field(login.text, "request")}
            after = await web.post(urljoin(authorization_url, "login"), data={**form, "username": USER, "password": PASSWORD})
            assert after.status_code == 303, after.text
            consent = await web.get(urljoin(authorization_url, after.headers["location"]))
            assert "Allow access?" in consent.text, consent.text
            form = {"csrf": self.field(consent.text, "csrf"), "request": self.field(consent.text, "request")}
            done = await web.post(urljoin(authorization_url, "consent"), data={**form, "decision": "allow"})
            assert done.status_code == 303, done.text
            location = done.headers["location"]
            assert location.startswith(REDIRECT), location
            q = parse_qs(urlparse(location).query)
            assert q["iss"] == [BASE], f"iss {q.get('iss')} != {BASE}"
            self.result = AuthorizationCodeResult(code=q["code"][0], state=q.get("state", [None])[0], iss=q["iss"][0])

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        result, self.result = self.result, None
        return result


def structured(result):
    assert not result.is_error, result
    return result.structured_content


async def ensure_user() -> None:
    """Creates the signing-in user with the bootstrap admin key (once per server)."""
    async with httpx2.AsyncClient() as admin:
        r = await admin.post(
            f"{BASE}/admin/principals",
            headers={"authorization": f"Bearer {os.environ['FLOW_ADMIN_KEY']}"},
            json={"kind": "user", "name": USER, "roles": ["writer"], "password": PASSWORD},
        )
        assert r.status_code in (201, 409), r.text


async def main() -> None:
    await ensure_user()
    storage, browser = Memory(), Browser()
    provider = OAuthClientProvider(
        server_url=f"{BASE}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="python-sdk-flow",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="none",
            scope="context:read context:inject context:write offline_access",
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with streamable_http_client(f"{BASE}/mcp", http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                if MODE == "discover":
                    found = await session.discover()
                    assert "2026-07-28" in found.supported_versions, found.supported_versions
                    print(f"discovered (stateless, 2026-07-28); server supports {', '.join(found.supported_versions)}")
                else:
                    init = await session.initialize()
                    print(f"connected: protocol {init.protocol_version}, server {init.server_info.name}")
                assert storage.client is not None and storage.client.client_id.startswith("ctxc_"), "registered by DCR"
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                assert tools == ["context_append", "context_create", "context_delete", "context_get", "context_list"], tools

                created = structured(await session.call_tool("context_create", {"metadata": {"by": "python"}, "session": {"history": [{"role": "user", "message": "hi"}]}}))
                cid = created["context_id"]
                appended = structured(await session.call_tool("context_append", {"context_id": cid, "messages": [{"role": "assistant", "message": "hello"}]}))
                assert appended["version"] == 2 and appended["history_length"] == 2, appended
                assert "history" not in appended, "an append answers briefly"
                got = structured(await session.call_tool("context_get", {"context_id": cid}))
                assert [m["message"] for m in got["session"]["history"]] == ["hi", "hello"]
                assert got["session"]["history"][1]["provenance"]["name"], "each message says who appended it"
                window = structured(await session.call_tool("context_get", {"context_id": cid, "last": 1}))
                assert [m["message"] for m in window["session"]["history"]] == ["hello"] and window["history_length"] == 2, window
                listed = structured(await session.call_tool("context_list", {}))
                assert listed["items"][0]["context_id"] == cid
                denied = await session.call_tool("context_delete", {"context_id": cid})
                assert denied.is_error, "a writer may not delete"
                resources = await session.list_resources()
                assert any(str(r.uri) == f"context://{cid}" for r in resources.resources)
                read_back = await session.read_resource(f"context://{cid}")
                assert cid in read_back.contents[0].text

                # Refresh: the access token is treated as expired; the SDK must refresh.
                first = storage.tokens
                assert first.refresh_token, "offline_access was consented"
                provider.context.token_expiry_time = 1.0  # long past
                structured(await session.call_tool("context_list", {}))
                assert storage.tokens.access_token != first.access_token, "refreshed"
                assert storage.tokens.refresh_token != first.refresh_token, "rotated"
                assert browser.logins == 1, "refresh must not need the user"

    # Revocation: the access and refresh tokens are revoked and the user is gone; the
    # server refuses the access token (401), the refresh fails, and the SDK can only
    # try to send the user through the login again.
    revoked_access = storage.tokens.access_token
    async with httpx2.AsyncClient() as plain:
        for tok in (storage.tokens.access_token, storage.tokens.refresh_token):
            r = await plain.post(f"{BASE}/oauth/revoke", data={"token": tok, "client_id": storage.client.client_id})
            assert r.status_code == 200, r.text
        probe = await plain.post(
            f"{BASE}/mcp",
            headers={"authorization": f"Bearer {revoked_access}", "accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        )
        assert probe.status_code == 401, probe.status_code
        assert 'error="invalid_token"' in probe.headers["www-authenticate"]
    browser.allowed = False
    provider.context.token_expiry_time = 1.0  # long past: the SDK must refresh first
    try:
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
            async with streamable_http_client(f"{BASE}/mcp", http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await (session.discover() if MODE == "discover" else session.initialize())
                    await session.call_tool("context_list", {})
    except BaseException as e:  # noqa: BLE001 - the SDK reports through exception groups
        assert "not available to sign in again" in repr(e) or browser.logins == 2, repr(e)
        print("refused after revocation: the refresh failed and a new sign-in was required")
    else:
        raise AssertionError("a revoked grant was accepted")
    print("python mcp client flow: ok")


if __name__ == "__main__":
    # The SDK logs the expected post-revocation failure with a traceback; keep CI quiet.
    logging.disable(logging.CRITICAL)
    asyncio.run(main())
