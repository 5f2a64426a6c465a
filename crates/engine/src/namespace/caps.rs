//! The capability bounding set of sandbox processes (Docker's default set, no wider).
