//! Secrets: validate, encrypt, store; values never leave except into a sandbox's environment.

use std::collections::BTreeMap;

use bhatti_api::{SecretInfo, SetSecretRequest};

use super::ServiceError;
use crate::state::AppState;
use crate::store::secrets::{self, SecretRow};
use crate::store::users::UserRow;
use crate::validate;

fn info(r: SecretRow) -> SecretInfo {
    SecretInfo {
        name: r.name,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// Creates or replaces a secret.
pub async fn set(
    st: &AppState,
    user: &UserRow,
    req: SetSecretRequest,
) -> Result<SecretInfo, ServiceError> {
    if req.name.is_empty() || req.value.is_empty() {
        return Err(ServiceError::Invalid("name and value required".into()));
    }
    if !validate::is_valid_env_key(&req.name) {
        return Err(ServiceError::Invalid(format!(
            "invalid secret name {:?}: must match ^[A-Za-z_][A-Za-z0-9_]*$",
            req.name
        )));
    }
    // Encrypt off the runtime's workers, then write through the store.
    let secrets_box = st.secrets.clone();
    let value = req.value;
    let ct = tokio::task::spawn_blocking(move || secrets_box.encrypt(value.as_bytes()))
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))??;
    let user_id = user.id.clone();
    let name = req.name;
    let row = st
        .store
        .call(move |c| secrets::upsert(c, &user_id, &name, &ct))
        .await?;
    Ok(info(row))
}

/// The caller's secrets (names and timestamps).
pub async fn list(st: &AppState, user: &UserRow) -> Result<Vec<SecretInfo>, ServiceError> {
    let user_id = user.id.clone();
    let rows = st.store.call(move |c| secrets::list(c, &user_id)).await?;
    Ok(rows.into_iter().map(info).collect())
}

/// Deletes one of the caller's secrets.
pub async fn delete(st: &AppState, user: &UserRow, name: String) -> Result<(), ServiceError> {
    let user_id = user.id.clone();
    let n = name.clone();
    if st
        .store
        .call(move |c| secrets::delete(c, &user_id, &n))
        .await?
    {
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!("secret {name:?} not found")))
    }
}

/// Decrypts the named secrets of a user (for injection into a sandbox's environment).
pub async fn resolve(
    st: &AppState,
    user: &UserRow,
    names: Vec<String>,
) -> Result<BTreeMap<String, String>, ServiceError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let user_id = user.id.clone();
    let secrets_box = st.secrets.clone();
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = BTreeMap::new();
        for name in names {
            let ct = store.with(|c| secrets::ciphertext(c, &user_id, &name))?;
            let Some(ct) = ct else {
                return Err(ServiceError::Invalid(format!("secret {name:?} not found")));
            };
            let plain = secrets_box.decrypt(&ct)?;
            let value = String::from_utf8(plain)
                .map_err(|_| ServiceError::Invalid(format!("secret {name:?} is not UTF-8")))?;
            out.insert(name, value);
        }
        Ok(out)
    })
    .await
    .map_err(|e| ServiceError::Task(e.to_string()))?
}
