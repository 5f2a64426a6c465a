//! `/sandboxes/:id/publish`: public URLs for sandbox ports.

use bhatti_api::{PublishRequest, PublishRule, ShellToken};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `POST /sandboxes/:id/publish`: publishes `port` (optionally under `alias`). Re-publishing
    /// the same port returns the existing rule.
    pub async fn publish(
        &self,
        sandbox: &str,
        port: u16,
        alias: Option<&str>,
    ) -> Result<PublishRule, ClientError> {
        let url = self.url(&["sandboxes", sandbox, "publish"]);
        let body = PublishRequest {
            port: i64::from(port),
            alias: alias.map(str::to_string),
        };
        let resp = self
            .send(self.request(Method::POST, url.clone()).json(&body))
            .await?;
        self.decode(resp, &url).await
    }

    /// `GET /sandboxes/:id/publish`.
    pub async fn list_published(&self, sandbox: &str) -> Result<Vec<PublishRule>, ClientError> {
        let url = self.url(&["sandboxes", sandbox, "publish"]);
        let resp = self.send(self.request(Method::GET, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `DELETE /sandboxes/:id/publish/:port` (204).
    pub async fn unpublish(&self, sandbox: &str, port: u16) -> Result<(), ClientError> {
        let url = self.url(&["sandboxes", sandbox, "publish", &port.to_string()]);
        self.send(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    /// The authenticated proxy URL of a sandbox port: `<api>/sandboxes/<id>/proxy/<port>/`.
    pub fn proxy_url(&self, sandbox: &str, port: u16) -> String {
        let mut u = self.url(&["sandboxes", sandbox, "proxy", &port.to_string(), ""]);
        u.set_query(None);
        u.to_string()
    }

    /// Creates a web shell share link (the previous one stops working).
    pub async fn share_shell(&self, sandbox: &str) -> Result<ShellToken, ClientError> {
        let url = self.url(&["sandboxes", sandbox, "shell-token"]);
        let resp = self.send(self.request(Method::POST, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// Turns web shell sharing off; live web shells are disconnected.
    pub async fn revoke_shell(&self, sandbox: &str) -> Result<(), ClientError> {
        let url = self.url(&["sandboxes", sandbox, "shell-token"]);
        self.send(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    /// A usable link from a share answer: servers without an API host configured (the
    /// original's quirk) answer `…:///_shell/…`; the link is then rebuilt on this client's
    /// endpoint.
    pub fn shell_link(&self, sandbox_id: &str, t: &ShellToken) -> String {
        if !t.url.contains(":///_shell") {
            return t.url.clone();
        }
        let mut u = self.url(&["_shell", sandbox_id]);
        u.set_query(None);
        u.set_fragment(Some(&format!("token={}", t.token)));
        u.to_string()
    }
}
