//! E2B's control plane: create, list, get, kill, timeout, pause, connect/resume.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{api_user, new_meta, ApiErr, BoxMeta, E2bState, ENVD_VERSION};
use crate::service::sandboxes as svc;
use crate::store::sandboxes::SandboxRow;
use crate::store::users::UserRow;

/// Default sandbox timeout when the request has none (E2B's is 15 s server-side, the SDKs send
/// 300).
const DEFAULT_TIMEOUT_SECS: u64 = 300;

pub(super) fn routes() -> Router<E2bState> {
    Router::new()
        .route("/sandboxes", post(create).get(list_v1))
        .route("/v2/sandboxes", post(create).get(list_v2))
        .route("/sandboxes/{id}", get(info).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/refreshes", post(refresh))
        .route("/sandboxes/{id}/pause", post(pause))
        .route("/sandboxes/{id}/resume", post(resume))
        .route("/sandboxes/{id}/connect", post(connect))
        .route("/v2/sandboxes/{id}/connect", post(connect))
        .route("/health", get(|| async { StatusCode::OK }))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn bad(msg: impl Into<String>) -> ApiErr {
    ApiErr(StatusCode::BAD_REQUEST, msg.into())
}

fn body_json(body: &[u8]) -> Result<Value, ApiErr> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid json: {e}")))
}

fn string_map(v: Option<&Value>, what: &str) -> Result<BTreeMap<String, String>, ApiErr> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(bad(format!("{what}.{k} must be a string"))),
            })
            .collect(),
        Some(_) => Err(bad(format!("{what} must be an object"))),
    }
}

fn timeout_of(st: &E2bState, v: Option<&Value>) -> Result<u64, ApiErr> {
    match v {
        None | Some(Value::Null) => Ok(DEFAULT_TIMEOUT_SECS),
        Some(v) => match v.as_u64() {
            Some(t) if t <= st.cfg.max_timeout_secs => Ok(t),
            Some(_) => Err(bad(format!(
                "timeout must be at most {} seconds",
                st.cfg.max_timeout_secs
            ))),
            None => Err(bad("timeout must be a non-negative integer (seconds)")),
        },
    }
}

/// The E2B view of a sandbox (detail / listed shape; the create shape is a subset).
fn view(st: &E2bState, row: &SandboxRow, meta: &BoxMeta, with_token: bool) -> Value {
    let started = chrono::DateTime::parse_from_rfc3339(&row.created_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|_| now_ms());
    let end = match meta.end_at_ms.load(Ordering::SeqCst) {
        0 => started + 100 * 365 * 24 * 3600 * 1000,
        e => e,
    };
    let mut v = json!({
        "templateID": meta.template,
        "alias": meta.template,
        "sandboxID": row.id,
        "clientID": "bhatti",
        "startedAt": rfc3339_ms(started),
        "endAt": rfc3339_ms(end),
        "envdVersion": ENVD_VERSION,
        "cpuCount": row.cpus.ceil().max(1.0) as u64,
        "memoryMB": row.memory_mb,
        "diskSizeMB": row.disk_size_mb,
        "metadata": meta.metadata,
        "state": if meta.paused.load(Ordering::SeqCst) { "paused" } else { "running" },
        "domain": st.cfg.domain,
    });
    if with_token {
        v["envdAccessToken"] = json!(super::access_token(row));
    }
    v
}

fn created_body(st: &E2bState, row: &SandboxRow, meta: &BoxMeta) -> Value {
    json!({
        "templateID": meta.template,
        "alias": meta.template,
        "sandboxID": row.id,
        "clientID": "bhatti",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": super::access_token(row),
        "trafficAccessToken": super::traffic_token(row),
        "domain": st.cfg.domain,
    })
}

async fn row_of(st: &E2bState, user: &UserRow, id: &str) -> Result<SandboxRow, ApiErr> {
    let (uid, id2) = (user.id.clone(), id.to_string());
    let row = st
        .app
        .store
        .call(move |c| crate::store::sandboxes::by_ref(c, &uid, &id2))
        .await
        .map_err(|e| ApiErr::from(crate::service::ServiceError::from(e)))?;
    match row {
        // E2B addresses sandboxes by id only; a name match is not the sandbox asked for.
        Some(r) if r.id == id && r.status == "running" => Ok(r),
        _ => Err(ApiErr(
            StatusCode::NOT_FOUND,
            format!("sandbox \"{id}\" doesn't exist or you don't have access to it"),
        )),
    }
}

async fn create(
    State(st): State<E2bState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match create_inner(&st, &headers, &body).await {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn create_inner(st: &E2bState, headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiErr> {
    let user = api_user(st, headers).await?;
    super::limit(st, &user, crate::rate_limit::RequestClass::Create)?;
    let req = body_json(body)?;
    if !req.is_object() {
        return Err(bad("the request body must be a JSON object"));
    }
    let template = match req.get("templateID") {
        None | Some(Value::Null) => "base",
        Some(Value::String(t)) if t.is_empty() => "base",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(bad("templateID must be a string")),
    }
    .to_string();
    let tpl = st.cfg.template(&template);
    let timeout = timeout_of(st, req.get("timeout"))?;
    let metadata = string_map(req.get("metadata"), "metadata")?;
    let envs = string_map(req.get("envVars"), "envVars")?;
    for (key, what) in [
        ("volumeMounts", "volume mounts"),
        ("network", "network configuration"),
        ("mcp", "MCP gateways"),
        ("iam", "IAM settings"),
    ] {
        if req.get(key).is_some_and(|v| !v.is_null()) {
            return Err(ApiErr(
                StatusCode::NOT_IMPLEMENTED,
                format!("{what} ({key}) are not supported by bhatti"),
            ));
        }
    }
    if req.get("allow_internet_access") == Some(&Value::Bool(false)) {
        return Err(ApiErr(
            StatusCode::NOT_IMPLEMENTED,
            "allow_internet_access=false is not supported by bhatti (sandboxes have egress)".into(),
        ));
    }
    let auto_pause = req
        .get("autoPause")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut env = envs.clone();
    env.entry("HOME".into()).or_insert_with(|| tpl.home.clone());
    env.entry("USER".into()).or_insert_with(|| tpl.user.clone());
    let created = svc::create(
        &st.app,
        &user,
        bhatti_api::CreateSandboxRequest {
            image: Some(tpl.image.clone()),
            env: Some(env),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| match e {
        crate::service::ServiceError::Engine(bhatti_engine::EngineError::ImageNotFound(_)) => {
            ApiErr(
                StatusCode::BAD_REQUEST,
                format!("template '{template}' not found (image '{}')", tpl.image),
            )
        }
        e => e.into(),
    })?;
    let sb = match created {
        svc::Created::New(s) | svc::Created::Existing(s) => s,
    };
    let row = row_of(st, &user, &sb.id).await?;
    let end = now_ms() + (timeout as i64) * 1000;
    let meta = st.insert(
        &row.id,
        new_meta(template, tpl.clone(), metadata, envs, end),
    );
    meta.auto_pause.store(auto_pause, Ordering::SeqCst);
    st.save().await;
    // E2B code expects its user's home; it is created owned by the sandbox user.
    if let Ok((_, agent, _busy)) = crate::service::agent::open(&st.app, &user, &row.id).await {
        let req = bhatti_proto::msg::FsRequest {
            op: bhatti_proto::msg::FsOp::Mkdir,
            path: tpl.home.clone(),
            dest: None,
            depth: None,
        };
        if let Err(e) = agent.fs(&req).await {
            tracing::warn!(sandbox = %row.id, error = %e, "e2b: could not create the home directory");
        }
    }
    Ok(created_body(st, &row, &meta))
}

async fn info(State(st): State<E2bState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let user = api_user(&st, &headers).await?;
        let row = row_of(&st, &user, &id).await?;
        let meta = st.meta(&row);
        Ok::<_, ApiErr>(view(&st, &row, &meta, true))
    };
    match r.await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Splits a `metadata` filter (`k=v&k2=v2`, itself URL-encoded) into pairs.
pub(super) fn metadata_filter(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn listed(st: &E2bState, user: &UserRow, query: Option<&str>) -> Result<Vec<Value>, ApiErr> {
    let mut states: Vec<String> = Vec::new();
    let mut filters = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "state" => states.extend(v.split(',').map(|s| s.trim().to_string())),
            "metadata" => filters.extend(metadata_filter(&v)),
            _ => {}
        }
    }
    let uid = user.id.clone();
    let rows = st
        .app
        .store
        .call(move |c| crate::store::sandboxes::list(c, &uid))
        .await
        .map_err(|e| ApiErr::from(crate::service::ServiceError::from(e)))?;
    let mut out = Vec::new();
    for row in rows.into_iter().filter(|r| r.status == "running") {
        let meta = st.meta(&row);
        if !filters
            .iter()
            .all(|(k, v)| meta.metadata.get(k).is_some_and(|x| x == v))
        {
            continue;
        }
        let v = view(st, &row, &meta, false);
        if !states.is_empty() && !states.iter().any(|s| v["state"] == s.as_str()) {
            continue;
        }
        out.push(v);
    }
    Ok(out)
}

async fn list_v1(
    State(st): State<E2bState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        let user = api_user(&st, &headers).await?;
        listed(&st, &user, q.as_deref()).await
    };
    match r.await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Pages are offsets into the (newest first) list; `x-next-token` names the next one.
async fn list_v2(
    State(st): State<E2bState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        let user = api_user(&st, &headers).await?;
        let all = listed(&st, &user, q.as_deref()).await?;
        let mut limit = 100usize;
        let mut offset = 0usize;
        for (k, v) in form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "limit" => limit = v.parse().map_err(|_| bad("limit must be a number"))?,
                "nextToken" => offset = v.parse().map_err(|_| bad("invalid nextToken"))?,
                _ => {}
            }
        }
        let limit = limit.clamp(1, 1000);
        let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
        let next = (offset + limit < all.len()).then(|| (offset + limit).to_string());
        Ok::<_, ApiErr>((page, next))
    };
    match r.await {
        Ok((page, next)) => {
            let mut resp = Json(page).into_response();
            if let Some(n) = next.and_then(|n| n.parse().ok()) {
                resp.headers_mut().insert("x-next-token", n);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn kill(State(st): State<E2bState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let user = api_user(&st, &headers).await?;
        let row = row_of(&st, &user, &id).await?;
        destroy(&st, &user, &row).await
    };
    match r.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn destroy(st: &E2bState, user: &UserRow, row: &SandboxRow) -> Result<(), ApiErr> {
    if let Some(m) = st.map().get(&row.id).cloned() {
        m.procs.abort_all();
    }
    svc::destroy(&st.app, user, &row.id).await?;
    st.forget(&row.id);
    st.save().await;
    Ok(())
}

async fn set_timeout(
    State(st): State<E2bState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let user = api_user(&st, &headers).await?;
        let req = body_json(&body)?;
        let t = req
            .get("timeout")
            .ok_or_else(|| bad("timeout required"))
            .and_then(|v| timeout_of(&st, Some(v)))?;
        let row = row_of(&st, &user, &id).await?;
        st.meta(&row)
            .end_at_ms
            .store(now_ms() + (t as i64) * 1000, Ordering::SeqCst);
        st.save().await;
        Ok::<_, ApiErr>(())
    };
    match r.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn refresh(
    State(st): State<E2bState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let user = api_user(&st, &headers).await?;
        let req = body_json(&body)?;
        let t = match req.get("duration") {
            Some(v) => timeout_of(&st, Some(v))?,
            None => DEFAULT_TIMEOUT_SECS,
        };
        let row = row_of(&st, &user, &id).await?;
        let meta = st.meta(&row);
        let want = now_ms() + (t as i64) * 1000;
        let cur = meta.end_at_ms.load(Ordering::SeqCst);
        if cur != 0 && cur < want {
            meta.end_at_ms.store(want, Ordering::SeqCst);
            st.save().await;
        }
        Ok::<_, ApiErr>(())
    };
    match r.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pause(State(st): State<E2bState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let user = api_user(&st, &headers).await?;
        let row = row_of(&st, &user, &id).await?;
        let meta = st.meta(&row);
        if meta.paused.load(Ordering::SeqCst) {
            return Err(ApiErr(
                StatusCode::CONFLICT,
                format!("sandbox {id} is already paused"),
            ));
        }
        if !st.app.engine.capabilities().pause {
            return Err(ApiErr(
                StatusCode::NOT_IMPLEMENTED,
                format!("the {} engine cannot pause sandboxes", st.app.engine.name()),
            ));
        }
        crate::thermal::pause_now(&st.app, &row).await?;
        meta.paused.store(true, Ordering::SeqCst);
        // A paused sandbox does not time out; connect sets a new timeout.
        meta.end_at_ms.store(0, Ordering::SeqCst);
        st.save().await;
        Ok::<_, ApiErr>(())
    };
    match r.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Wakes a paused sandbox and extends its timeout; 201 when it was paused, else 200.
async fn connect_inner(
    st: &E2bState,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    must_be_paused: bool,
) -> Result<(StatusCode, Value), ApiErr> {
    let user = api_user(st, headers).await?;
    let req = body_json(body)?;
    let t = timeout_of(st, req.get("timeout"))?;
    let row = row_of(st, &user, id).await?;
    let meta = st.meta(&row);
    let was_paused = meta.paused.load(Ordering::SeqCst);
    if must_be_paused && !was_paused {
        return Err(ApiErr(
            StatusCode::CONFLICT,
            format!("sandbox {id} is not paused"),
        ));
    }
    drop(crate::thermal::ensure_hot(&st.app, &row).await?);
    meta.paused.store(false, Ordering::SeqCst);
    let want = now_ms() + (t as i64) * 1000;
    let cur = meta.end_at_ms.load(Ordering::SeqCst);
    if was_paused || (cur != 0 && cur < want) {
        meta.end_at_ms.store(want, Ordering::SeqCst);
    }
    st.save().await;
    let status = if was_paused {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, created_body(st, &row, &meta)))
}

async fn connect(
    State(st): State<E2bState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match connect_inner(&st, &headers, &id, &body, false).await {
        Ok((s, v)) => (s, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn resume(
    State(st): State<E2bState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match connect_inner(&st, &headers, &id, &body, true).await {
        Ok((_, v)) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Kills sandboxes whose E2B timeout passed (checked twice a second).
pub(super) async fn reap_expired(st: E2bState) {
    let mut ticks: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        ticks += 1;
        if ticks.is_multiple_of(120) {
            prune(&st).await;
        }
        let now = now_ms();
        let due: Vec<(String, Arc<BoxMeta>)> = st
            .map()
            .iter()
            .filter(|(_, m)| {
                let e = m.end_at_ms.load(Ordering::SeqCst);
                e != 0 && e <= now
            })
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        for (id, meta) in due {
            let found = super::sandbox_and_owner(&st, &id)
                .await
                .map(|f| f.map(|(_, user)| user));
            match found {
                Ok(Some(user)) if meta.auto_pause.load(Ordering::SeqCst) => {
                    let row = row_of(&st, &user, &id).await;
                    match row {
                        Ok(row) => match crate::thermal::pause_now(&st.app, &row).await {
                            Ok(()) => {
                                tracing::info!(sandbox = %id, "e2b: timeout reached; pausing sandbox (autoPause)");
                                meta.paused.store(true, Ordering::SeqCst);
                                meta.end_at_ms.store(0, Ordering::SeqCst);
                            }
                            Err(e) => {
                                tracing::warn!(sandbox = %id, error = %e, "e2b: pause at timeout failed");
                                meta.end_at_ms.store(now + 10_000, Ordering::SeqCst);
                            }
                        },
                        Err(_) => st.forget(&id),
                    }
                    st.save().await;
                }
                Ok(Some(user)) => {
                    meta.procs.abort_all();
                    tracing::info!(sandbox = %id, "e2b: timeout reached; killing sandbox");
                    match svc::destroy(&st.app, &user, &id).await {
                        Ok(()) | Err(crate::service::ServiceError::NotFound(_)) => {
                            st.forget(&id);
                            st.save().await;
                        }
                        Err(e) => {
                            tracing::warn!(sandbox = %id, error = %e, "e2b: kill at timeout failed");
                            // Try again later rather than every half second.
                            meta.end_at_ms.store(now + 10_000, Ordering::SeqCst);
                        }
                    }
                }
                Ok(None) => {
                    st.forget(&id);
                    st.save().await;
                }
                Err(e) => tracing::warn!(error = %e, "e2b: reaper lookup failed"),
            }
        }
    }
}

/// Forgets the E2B state of sandboxes destroyed by other means (bhatti's API, the CLI).
async fn prune(st: &E2bState) {
    let live = st
        .app
        .store
        .call(|c| {
            let mut stmt = c.prepare("SELECT id FROM sandboxes WHERE status != 'destroyed'")?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<std::collections::HashSet<String>, _>>()?;
            Ok(ids)
        })
        .await;
    let Ok(live) = live else { return };
    let gone: Vec<String> = st
        .map()
        .keys()
        .filter(|id| !live.contains(*id))
        .cloned()
        .collect();
    if gone.is_empty() {
        return;
    }
    for id in &gone {
        if let Some(m) = st.map().remove(id) {
            m.procs.abort_all();
        }
    }
    st.save().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_filters() {
        assert_eq!(
            metadata_filter("a=1&b=x%20y"),
            vec![("a".into(), "1".into()), ("b".into(), "x y".into())]
        );
        assert!(metadata_filter("").is_empty());
    }

    #[test]
    fn maps_and_times() {
        let m = string_map(Some(&json!({"a": "b"})), "metadata").unwrap();
        assert_eq!(m.get("a").map(String::as_str), Some("b"));
        assert!(string_map(Some(&json!({"a": 1})), "metadata").is_err());
        assert!(string_map(Some(&json!([1])), "metadata").is_err());
        assert!(string_map(None, "metadata").unwrap().is_empty());
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert!(body_json(b"  ").unwrap().is_object());
        assert!(body_json(b"{").is_err());
    }
}
