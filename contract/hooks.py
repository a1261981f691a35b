"""Schemathesis hooks: what the OpenAPI document cannot say, said once here.

JSON Schema cannot state these rules of ctxguard, so generated requests that break
them are not sent (each filter names its rule; everything else is fuzzed):

* an `expires` must lie in the future (a time, not a shape);
* `last` reads the end of a history and `after`/`limit` a window from a position:
  they exclude each other (a rule across query parameters);
* only users have passwords (`kind` user; a rule across fields that JSON Schema can
  state with if/else, but schemathesis 4.32.5's coverage phase fails on it);
* `cursor` is an opaque value the server issued with the previous page; a made-up
  one is refused, so none is made up;
* `PUT /context/{id}`: a `context_id` in the body, if any, is the one in the path (in
  the stateful phase a link may fill the body's id from another context's answer after
  filtering, so `before_call` makes a well-formed body id the path's);
* `POST /context/verify` takes an inline context from the `OCP-Context` header or from
  the body's `context`, exactly one (a rule across header and body). A header value is
  acceptable only when the server itself sealed it, which a generator cannot do, so
  header cases are not generated (tests/it/inline.rs covers the header); generated
  body contexts are well-formed and answered 401 (unsigned, or not signed by us);
* a client's registration follows OAuth 2.1 / RFC 8252 (oauth/clients.rs): redirect
  URIs only, and always, with the code grant (https for web clients, loopback or
  private-use schemes for native ones); client_credentials only for confidential
  clients; roles only for client_credentials clients. Only registrations without the
  code grant are generated, whose rules the filter can check exactly.

And one quirk of generation: a null, an empty list or an empty object as a query value
is sent as nothing at all, which is indistinguishable from leaving the parameter out (a valid
request), so such cases are not counted as "invalid data accepted".
"""

import uuid
from datetime import datetime, timezone

import schemathesis


def _past(value):
    if not isinstance(value, str):
        return False
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return at.tzinfo is not None and at <= datetime.now(timezone.utc)


def _client_ok(body):
    grants = body.get("grant_types")
    if grants is None or not isinstance(grants, list):
        return grants is not None  # the default includes the code grant
    if "authorization_code" in grants or body.get("redirect_uris"):
        return False
    machine = "client_credentials" in grants
    if machine and body.get("public") is True:
        return False
    return machine or not body.get("roles")


@schemathesis.hook
def filter_case(context, case):
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and _past(body.get("expires")):
        return False
    op = case.operation
    if body is not None and op.method.upper() == "POST" and op.path == "/admin/clients" and not _client_ok(body):
        return False
    if body is not None and op.method.upper() == "POST" and op.path == "/admin/principals":
        if body.get("kind") != "user" and body.get("password") is not None:
            return False
    if body is not None and op.method.upper() == "PUT" and op.path == "/context/{id}":
        named = body.get("context_id")
        if isinstance(named, str) and named != (case.path_parameters or {}).get("id"):
            return False
    if op.method.upper() == "POST" and op.path == "/context/verify":
        headers = {k.lower() for k in (case.headers or {})}
        if "ocp-context" in headers or body is None:
            return False
    query = case.query if isinstance(case.query, dict) else {}
    if "last" in query and ("after" in query or "limit" in query):
        return False
    if "cursor" in query:
        return False
    return not any(v is None or v == [] or v == {} for v in query.values())


def _is_uuid(value):
    try:
        uuid.UUID(value)
        return True
    except (TypeError, ValueError, AttributeError):
        return False


@schemathesis.hook
def before_call(context, case, **kwargs):
    op = case.operation
    if op.method.upper() == "PUT" and op.path == "/context/{id}" and isinstance(case.body, dict):
        path_id = (case.path_parameters or {}).get("id")
        named = case.body.get("context_id")
        if _is_uuid(named) and _is_uuid(path_id):
            case.body["context_id"] = path_id
