//! `/secrets`: the caller's encrypted secrets. Values go in and never come back out.

use bhatti_api::{SecretInfo, SetSecretRequest, StatusResponse};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /secrets`: names and timestamps.
    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, ClientError> {
        let url = self.url(&["secrets"]);
        let resp = self.send(self.request(Method::GET, url.clone())).await?;
        self.decode(resp, &url).await
    }

    /// `POST /secrets`: creates or replaces a secret.
    pub async fn set_secret(&self, name: &str, value: &str) -> Result<SecretInfo, ClientError> {
        let url = self.url(&["secrets"]);
        let body = SetSecretRequest {
            name: name.to_string(),
            value: value.to_string(),
        };
        let resp = self
            .send(self.request(Method::POST, url.clone()).json(&body))
            .await?;
        self.decode(resp, &url).await
    }

    /// `DELETE /secrets/:name`.
    pub async fn delete_secret(&self, name: &str) -> Result<StatusResponse, ClientError> {
        let url = self.url(&["secrets", name]);
        let resp = self.send(self.request(Method::DELETE, url.clone())).await?;
        self.decode(resp, &url).await
    }
}
