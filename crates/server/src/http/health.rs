//! `GET /health`.

use axum::extract::State;
use axum::Json;
use bhatti_api::Health;

use crate::state::AppState;

/// Formats a duration like `1h2m3s` (whole seconds).
pub fn format_uptime(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Liveness; the only unauthenticated endpoint.
#[utoipa::path(get, path = "/health", tag = "system", security(()),
    responses((status = 200, description = "Daemon is up", body = Health)))]
pub async fn health(State(st): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        uptime: format_uptime(st.started.elapsed().as_secs()),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn uptime() {
        assert_eq!(super::format_uptime(3), "3s");
        assert_eq!(super::format_uptime(123), "2m3s");
        assert_eq!(super::format_uptime(3723), "1h2m3s");
    }
}
