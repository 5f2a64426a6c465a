//! `/sandboxes`: list, get, create, destroy. Every `id_or_name` argument may be a sandbox ID
//! or its name; the server resolves either.

use bhatti_api::{CreateSandboxRequest, Sandbox, StatusResponse, X_BHATTI_EXISTING};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /sandboxes[?label=k=v…]`: the caller's sandboxes, newest first, filtered by every
    /// given label (AND).
    pub async fn list_sandboxes(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<Sandbox>, ClientError> {
        let mut url = self.url(&["sandboxes"]);
        if !labels.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in labels {
                q.append_pair("label", &format!("{k}={v}"));
            }
        }
        let resp = self.send(self.request(Method::GET, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `GET /sandboxes/:id`.
    pub async fn get_sandbox(&self, id_or_name: &str) -> Result<Sandbox, ClientError> {
        let url = self.url(&["sandboxes", id_or_name]);
        let resp = self.send(self.request(Method::GET, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `POST /sandboxes`. Returns the sandbox and whether it already existed (a live sandbox of
    /// that name was returned unchanged: `200` + `X-Bhatti-Existing: true`).
    pub async fn create_sandbox(
        &self,
        req: &CreateSandboxRequest,
    ) -> Result<(Sandbox, bool), ClientError> {
        let url = self.url(&["sandboxes"]);
        let resp = self
            .send(self.request(Method::POST, url.clone()).json(req))
            .await?;
        let existing = resp
            .headers()
            .get(X_BHATTI_EXISTING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok((self.decode(resp, &url).await?, existing))
    }

    /// `DELETE /sandboxes/:id`.
    pub async fn destroy_sandbox(&self, id_or_name: &str) -> Result<StatusResponse, ClientError> {
        let url = self.url(&["sandboxes", id_or_name]);
        let resp = self.send(self.request(Method::DELETE, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `PATCH /sandboxes/:id`.
    pub async fn update_sandbox(
        &self,
        id_or_name: &str,
        req: &bhatti_api::sandbox::UpdateSandboxRequest,
    ) -> Result<Sandbox, ClientError> {
        let url = self.url(&["sandboxes", id_or_name]);
        let resp = self
            .send(self.request(Method::PATCH, url.clone()).json(req))
            .await?;
        self.decode(resp, &url).await
    }

    /// `POST /sandboxes/:id/stop`: processes end, the filesystem is kept.
    pub async fn stop_sandbox(&self, id_or_name: &str) -> Result<Sandbox, ClientError> {
        let url = self.url(&["sandboxes", id_or_name, "stop"]);
        let resp = self.send(self.request(Method::POST, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `POST /sandboxes/:id/start`: a stopped sandbox runs again over its kept filesystem.
    pub async fn start_sandbox(&self, id_or_name: &str) -> Result<Sandbox, ClientError> {
        let url = self.url(&["sandboxes", id_or_name, "start"]);
        let resp = self.send(self.request(Method::POST, url.clone())).await?;
        self.decode(resp, &url).await
    }
}
