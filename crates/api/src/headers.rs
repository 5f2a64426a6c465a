//! Names of the `X-Bhatti-*` headers.

/// Server version; on every response.
pub const X_BHATTI_VERSION: &str = "x-bhatti-version";
/// `true` when `POST /sandboxes` returned an existing sandbox of the same name (status 200).
pub const X_BHATTI_EXISTING: &str = "x-bhatti-existing";
/// Minimum CLI version the server wants; only when configured.
pub const X_BHATTI_MIN_CLI: &str = "x-bhatti-min-cli";
