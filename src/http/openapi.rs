//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations
//! and the wire types' derives. This module adds what derives cannot: schemas for the
//! newtypes with hand-written serde, and the document's security scheme.

use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Schema};
use utoipa::{Modify, PartialSchema, ToSchema};

use crate::domain::{ApiKeyId, ContextId, PrincipalId, Role, RoleSet, Scope, ScopeSet, TenantId, Timestamp, Version};

fn string_with(format: KnownFormat, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .description(Some(description))
        .into()
}

macro_rules! uuid_schema {
    ($($t:ty => $d:literal),* $(,)?) => {$(
        impl PartialSchema for $t {
            fn schema() -> RefOr<Schema> {
                string_with(KnownFormat::Uuid, $d)
            }
        }
        impl ToSchema for $t {}
    )*};
}

uuid_schema!(
    ContextId => "Context id (UUID)",
    TenantId => "Tenant id (UUID)",
    PrincipalId => "Principal id (UUID)",
    ApiKeyId => "API key id (UUID)",
);

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        string_with(KnownFormat::DateTime, "RFC 3339 date-time")
    }
}
impl ToSchema for Timestamp {}

impl PartialSchema for Version {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .description(Some("Version number; the ETag is \"v<version>\""))
            .into()
    }
}
impl ToSchema for Version {}

fn string_array(values: Vec<&'static str>, description: &str) -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)))
        .description(Some(description))
        .into()
}

impl PartialSchema for ScopeSet {
    fn schema() -> RefOr<Schema> {
        let mut names: Vec<&'static str> = Scope::EVERY.iter().map(|s| s.as_str()).collect();
        names.extend(["mcp:read", "mcp:write"]);
        string_array(names, "Scopes (mcp:read and mcp:write are accepted as aliases)")
    }
}
impl ToSchema for ScopeSet {}

impl PartialSchema for RoleSet {
    fn schema() -> RefOr<Schema> {
        string_array(Role::ALL.iter().map(|r| r.as_str()).collect(), "Roles held in the tenant")
    }
}
impl ToSchema for RoleSet {}

/// Adds the bearer security scheme referenced by every protected operation.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (ctxg_…) or, later, an OAuth access token"))
                    .build(),
            ),
        );
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "ctxguard", description = "Secure context server for AI agents: OCP context store and admin API."),
    modifiers(&BearerAuth),
    tags(
        (name = "contexts", description = "OCP context store"),
        (name = "sharing", description = "Per-context grants"),
        (name = "admin", description = "Tenants, principals, API keys, clients, signing keys and policies"),
        (name = "operations", description = "Health, readiness, metrics and discovery"),
    )
)]
pub struct ApiDoc;
