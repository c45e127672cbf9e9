//! Images from a registry, to the OCI distribution spec: references,
//! auth, the HTTP client, manifests and blobs checked while they stream,
//! and the two ends a pull has (the cache, or an archive or layout).

pub mod auth;
pub mod cached;
pub mod client;
pub mod export;
pub mod fetch;
pub mod platform;
pub mod pull;
pub mod reference;
