//! Outbound HTTP: what every client of the process shares.

/// Chooses rustls with ring as the process's TLS provider. reqwest leaves the choice to the
/// application and refuses to build a client before it is made, so every place that builds
/// one calls this first; a second call finds the provider installed and changes nothing.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
