//! `/sandboxes/:id/sessions` and `/sandboxes/:id/ports`.

use bhatti_api::{Port, Session, StatusResponse};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET …/sessions`.
    pub async fn list_sessions(&self, id_or_name: &str) -> Result<Vec<Session>, ClientError> {
        let url = self.url(&["sandboxes", id_or_name, "sessions"]);
        let resp = self.send(self.request(Method::GET, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `DELETE …/sessions/:sid`: ends a session.
    pub async fn kill_session(
        &self,
        id_or_name: &str,
        session_id: &str,
    ) -> Result<StatusResponse, ClientError> {
        let url = self.url(&["sandboxes", id_or_name, "sessions", session_id]);
        let resp = self.send(self.request(Method::DELETE, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `GET …/ports`: listening TCP ports inside the sandbox.
    pub async fn list_ports(&self, id_or_name: &str) -> Result<Vec<Port>, ClientError> {
        let url = self.url(&["sandboxes", id_or_name, "ports"]);
        let resp = self.send(self.request(Method::GET, url.clone())).await?;
        self.decode(resp, &url).await
    }
}
