//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{exec, files, health, proxy, publish, sandboxes, secrets, sessions, shell, webshell};

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

/// The document as a value (version filled in, and the answers every route can give added).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = bhatti_api::VERSION.to_string();
    add_common_responses(&mut doc);
    doc
}

/// Paths served without a key (and outside the per-user rate limits): `auth::PUBLIC_PATHS`.
const UNAUTHENTICATED: &[&str] = &["/health"];

/// Adds what the middleware answers on every authenticated route (401 without a valid key, 429
/// with `Retry-After` past the user's rate limit), and 400 on WebSocket routes for a request that
/// is not an upgrade, unless the handler documents them itself. Found by the API contract test
/// (schemathesis): these answers were real but missing from the document.
fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

    let error = |description: &str| {
        ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
    };
    let unauthorized = error("Missing, malformed or unknown API key").build();
    let retry_after = HeaderBuilder::new()
        .schema(utoipa::openapi::schema::Object::with_type(
            utoipa::openapi::schema::Type::Integer,
        ))
        .description(Some("Seconds until a request may succeed"))
        .build();
    let limited = error("Rate limit reached; retry after `Retry-After` seconds")
        .header("Retry-After", retry_after.clone())
        .build();
    let not_upgrade = error("Bad request, or not a WebSocket upgrade request").build();
    for (path, item) in doc.paths.paths.iter_mut() {
        if UNAUTHENTICATED.contains(&path.as_str()) {
            continue;
        }
        let ws = path.ends_with("/ws");
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            let r = &mut op.responses.responses;
            r.entry("401".into())
                .or_insert_with(|| unauthorized.clone().into());
            match r
                .entry("429".into())
                .or_insert_with(|| limited.clone().into())
            {
                // A handler's own 429 (e.g. the sandbox limit) still carries the header.
                utoipa::openapi::RefOr::T(resp) => {
                    resp.headers
                        .entry("Retry-After".into())
                        .or_insert_with(|| retry_after.clone());
                }
                utoipa::openapi::RefOr::Ref(_) => {}
            }
            if ws {
                r.entry("400".into())
                    .or_insert_with(|| not_upgrade.clone().into());
            }
        }
    }
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
