//! `/sandboxes/:id/publish`: public URLs for sandbox ports.

use bhatti_api::{PublishRequest, PublishRule};
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
}
