//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    exec, files, health, proxy, publish, sandboxes, secrets, sessions, shell, webshell,
};

/// The API description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "bhatti", description = "Self-hosted sandbox orchestrator API. Authenticate with `Authorization: Bearer <key>`."),
    paths(
        health::health,
        openapi_json,
        sandboxes::create_sandbox,
        sandboxes::list_sandboxes,
        sandboxes::get_sandbox,
        sandboxes::destroy_sandbox,
        sandboxes::update_sandbox,
        sandboxes::stop_sandbox,
        sandboxes::start_sandbox,
        exec::exec,
        files::get_file,
        files::put_file,
        files::head_file,
        sessions::list_sessions,
        sessions::kill_session,
        sessions::list_ports,
        shell::shell_ws,
        shell::piped_ws,
        proxy::proxy,
        publish::publish,
        publish::list_published,
        publish::unpublish,
        webshell::create_token,
        webshell::revoke_token,
        secrets::set_secret,
        secrets::list_secrets,
        secrets::delete_secret,
    ),
    components(schemas(
        bhatti_api::ErrorBody,
        bhatti_api::Health,
        bhatti_api::StatusResponse,
        bhatti_api::Sandbox,
        bhatti_api::CreateSandboxRequest,
        bhatti_api::sandbox::UpdateSandboxRequest,
        bhatti_api::FileSpec,
        bhatti_api::SecretInfo,
        bhatti_api::SetSecretRequest,
        bhatti_api::User,
        bhatti_api::ExecRequest,
        bhatti_api::ExecResult,
        bhatti_api::ExecEvent,
        bhatti_api::Session,
        bhatti_api::Port,
        bhatti_api::FileEntry,
        bhatti_api::PublishRequest,
        bhatti_api::PublishRule,
        bhatti_api::ShellToken,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as a value (version filled in).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = bhatti_api::VERSION.to_string();
    doc
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
