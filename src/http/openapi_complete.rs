//! What every operation can answer, added to the generated document in one pass so that
//! the contract says exactly what the server does (checked by schemathesis in CI):
//! the statuses that come from the shared edge rather than from one handler — bad
//! credentials, refused roles or scopes, malformed or oversized bodies, malformed ids,
//! timeouts, an unavailable database — each with the error body schema, and the
//! formats of path parameters (UUIDs are parsed before anything else happens).

use serde_json::{Map, Value, json};

/// The error body every 4xx/5xx carries (`http::error::ErrorBody`).
fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// Path parameters that are UUIDs, by path prefix and name.
fn uuid_param(path: &str, name: &str) -> bool {
    match name {
        "grant_id" => true,
        "id" => !path.starts_with("/admin/clients/"),
        _ => false,
    }
}

fn add(responses: &mut Map<String, Value>, status: &str, description: &str) {
    responses.entry(status.to_string()).or_insert_with(|| error(description));
}

/// Constraints the server enforces that the derived schemas do not state, by
/// component and property: the same rules as the validation code they mirror.
fn constraints() -> Vec<(&'static str, &'static str, Value)> {
    // Control characters (what `char::is_control` refuses): C0, DEL and C1.
    let printable = r"^[^\u0000-\u001F\u007F-\u009F]+$";
    vec![
        // domain::Tenant::validate_name
        ("NewTenant", "name", json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"})),
        // domain::Principal::validate_name, authn::password::validate
        ("NewPrincipal", "name", json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": printable})),
        (
            "NewPrincipal",
            "password",
            json!({"type": ["string", "null"], "minLength": 12, "maxLength": 256,
            "description": "Users only (kind user; other kinds have none): 12 to 256 characters."}),
        ),
        // oauth::clients::register
        (
            "NewClient",
            "name",
            json!({"type": "string", "minLength": 1, "maxLength": 200,
            "pattern": r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"}),
        ),
        // jwt::KeyAlg
        (
            "Rotate",
            "alg",
            json!({"type": ["string", "null"], "enum": ["EdDSA", "ES256", null], "description": "EdDSA (default) or ES256."}),
        ),
        (
            "NewClient",
            "grant_types",
            json!({"type": ["array", "null"], "minItems": 1, "uniqueItems": true,
            "items": {"$ref": "#/components/schemas/GrantType"}}),
        ),
        // service::grants, domain::Grantee
        (
            "NewGrant",
            "grantee",
            json!({"oneOf": [
            {"type": "object", "properties": {"principal": {"type": "string", "format": "uuid"}},
             "required": ["principal"], "additionalProperties": false},
            {"type": "object", "properties": {"role": {"type": "string", "enum": ["reader", "injector", "writer", "maintainer", "admin"]}},
             "required": ["role"], "additionalProperties": false}
        ], "description": "One principal of the tenant, or everyone holding a role (or a stronger one)."}),
        ),
        ("NewGrant", "role", json!({"type": "string", "enum": ["reader", "injector", "writer", "maintainer"]})),
        // domain::context::append_messages
        (
            "AppendInput",
            "messages",
            json!({"type": "array", "items": {"$ref": "#/components/schemas/Message"}, "minItems": 1}),
        ),
    ]
}

/// The body of `PATCH /context/{id}` (RFC 7396 merge patch of the two patchable fields).
fn merge_patch() -> Value {
    json!({
        "type": "object",
        "properties": {
            "metadata": {"type": ["object", "null"], "description": "Merged into the metadata; null removes all of it."},
            "expires": {"type": ["string", "null"], "format": "date-time", "description": "A new expiry, or null for none."}
        },
        "additionalProperties": false
    })
}

/// Completes an OpenAPI document (a JSON value): operations and component constraints.
pub fn complete(doc: &mut Value) {
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (component, property, schema) in constraints() {
            if let Some(props) = schemas.get_mut(component).and_then(|c| c.get_mut("properties")) {
                let description = props.get(property).and_then(|p| p.get("description")).cloned();
                let mut schema = schema;
                if let (Some(d), Some(obj)) = (description, schema.as_object_mut()) {
                    obj.entry("description").or_insert(d);
                }
                props[property] = schema;
            }
        }
    }
    if let Some(body) =
        doc.pointer_mut("/paths/~1context~1{id}/patch/requestBody/content/application~1merge-patch+json")
    {
        body["schema"] = merge_patch();
    }
    complete_operations(doc);
}

fn complete_operations(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for op in item.values_mut() {
            let Some(op) = op.as_object_mut() else { continue };
            complete_operation(path, op);
        }
    }
}

fn complete_operation(path: &str, op: &mut Map<String, Value>) {
    let secured = op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    let has_body = op.contains_key("requestBody");
    let mut path_params = false;
    let mut query_params = false;
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params {
            let name = p["name"].as_str().unwrap_or("").to_string();
            match p["in"].as_str() {
                Some("path") => {
                    path_params = true;
                    if uuid_param(path, &name) {
                        p["schema"] = json!({"type": "string", "format": "uuid"});
                    } else if name == "n" {
                        p["schema"] = json!({"type": "integer", "minimum": 1, "maximum": i64::MAX});
                    }
                }
                Some("query") => query_params = true,
                _ => {}
            }
        }
    }
    let responses = op.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else { return };
    if secured {
        add(responses, "401", "No, malformed, unknown, revoked or expired credentials (WWW-Authenticate says which)");
        add(responses, "403", "The caller's roles, scopes, tenant or the policies do not allow this");
        add(responses, "400", "A credential in the query string, or a malformed header");
    }
    if has_body {
        add(responses, "400", "Malformed JSON, nesting too deep, or a field that is missing, unknown or invalid");
        add(responses, "413", "The body exceeds the size limit");
        add(responses, "415", "The body is not JSON");
    }
    if path_params {
        add(responses, "400", "A malformed id in the path");
        add(responses, "404", "No such object, or one the caller may not see");
    }
    if query_params {
        add(responses, "400", "A malformed or out-of-range query parameter");
    }
    // Every route but the liveness probe answers within the request deadline and may
    // meet an unavailable database.
    // Every route but the probes is rate limited; secured ones also lock out an
    // address that fails to authenticate too often (docs/anomaly.md).
    if path != "/healthz" && path != "/readyz" {
        add(
            responses,
            "429",
            "Over the rate limit (code rate_limited; RateLimit and Retry-After headers), or locked out after \
             failed authentications (code locked_out; Retry-After)",
        );
    }
    if path != "/healthz" {
        add(responses, "408", "The request took longer than the request deadline");
        add(responses, "503", "The database is unavailable; try again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_get_the_edge_statuses() {
        let mut doc = json!({"paths": {
            "/context/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "ok"}}, "security": [{"bearer": []}]}},
            "/admin/clients/{id}": {"delete": {"parameters": [{"name": "id", "in": "path", "schema": {"type": "string"}}],
                "responses": {"204": {"description": "gone"}}, "security": [{"bearer": []}]}},
            "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}}
        }});
        complete(&mut doc);
        let get = &doc["paths"]["/context/{id}"]["get"];
        for status in ["200", "400", "401", "403", "404", "408", "503"] {
            assert!(get["responses"].get(status).is_some(), "GET /context/{{id}} lacks {status}");
        }
        assert_eq!(get["responses"]["200"]["description"], "ok", "a handler's own answer is kept");
        assert_eq!(get["parameters"][0]["schema"]["format"], "uuid");
        let client = &doc["paths"]["/admin/clients/{id}"]["delete"];
        assert!(client["parameters"][0]["schema"].get("format").is_none(), "client ids are not UUIDs");
        let health = &doc["paths"]["/healthz"]["get"]["responses"];
        assert_eq!(health.as_object().unwrap().len(), 1, "the liveness probe answers 200 or not at all");
    }

    /// The served document: a path parameter is in its path, a query parameter is not,
    /// and every secured operation documents the edge statuses.
    #[test]
    fn the_served_document_places_every_parameter() {
        let doc: Value = serde_json::from_str(&crate::http::openapi_json()).unwrap();
        let mut secured = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap();
                    let in_template = path.contains(&format!("{{{name}}}"));
                    match p["in"].as_str().unwrap() {
                        "path" => assert!(in_template, "{method} {path}: path parameter {name} is not in the path"),
                        "query" => assert!(!in_template, "{method} {path}: {name} is a path parameter"),
                        _ => {}
                    }
                }
                if op.get("security").is_some() {
                    secured += 1;
                    for status in ["401", "403", "408", "503"] {
                        assert!(op["responses"].get(status).is_some(), "{method} {path} lacks {status}");
                    }
                }
            }
        }
        assert!(secured > 20, "{secured} secured operations");
    }

    /// Every constraint names a property the document has (a renamed field or component
    /// would otherwise drop its constraint silently).
    #[test]
    fn every_constraint_lands() {
        let doc: Value = serde_json::from_str(&crate::http::openapi_json()).unwrap();
        for (component, property, schema) in constraints() {
            let got = &doc["components"]["schemas"][component]["properties"][property];
            for (key, value) in schema.as_object().unwrap() {
                assert_eq!(&got[key], value, "{component}.{property}.{key}");
            }
        }
    }
}
