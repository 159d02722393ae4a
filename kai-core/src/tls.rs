//! TLS for kAI's own HTTP clients: rustls on ring with the webpki roots, leaving the process's default
//! crypto provider alone (an application may install another, or none).

use std::sync::Arc;

use crate::error::Error;

/// A client configuration for `what` (named in the error if it cannot be made), for
/// `reqwest::ClientBuilder::tls_backend_preconfigured`.
pub fn client_config(what: &str) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Config {
            message: format!("TLS for {what}: {error}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
