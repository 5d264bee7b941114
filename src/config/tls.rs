//! The TLS flags (RFC 3261 §26.2.1: SIP over TLS) and the loading of their PEM files.
//!
//! A `--listen tls:ADDR:PORT` needs `--tls-cert` and `--tls-key`; both are read and
//! checked here (they parse, the key is one ring can sign with, and it matches the
//! certificate), so a bad file stops start-up with a message naming its flag. The
//! same loaders read the files again on SIGHUP, where a failure keeps the old pair.
//! `--tls-client-ca` turns mutual TLS on: a client must present a certificate that
//! chains to one of its CAs (also read again on SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::ConfigError;

/// Default `--tls-handshakes-max`, per core: handshakes in progress at once. Past it a
/// new TLS connection is accepted and closed at once (counted).
pub const TLS_HANDSHAKES_MAX_DEFAULT: usize = 256;
/// Largest `--tls-handshakes-max`, per core.
pub const TLS_HANDSHAKES_MAX: usize = 65_536;
/// Default `--tls-handshake-timeout-ms`: a handshake not done by then closes its
/// connection (counted).
pub const TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Smallest `--tls-handshake-timeout-ms`.
pub const TLS_HANDSHAKE_TIMEOUT_MS_MIN: u64 = 50;
/// Largest `--tls-handshake-timeout-ms` (one minute).
pub const TLS_HANDSHAKE_TIMEOUT_MS_MAX: u64 = 60_000;
/// Largest PEM file read, in bytes (a certificate chain or a CA bundle).
pub const PEM_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The validated TLS settings (present when a `tls:` listener is configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CAs a client certificate must chain to; `None`: no client certificate asked.
    pub client_ca: Option<PathBuf>,
    /// Handshakes in progress per core, at most.
    pub handshakes_max: usize,
    /// A handshake not done after this long closes its connection, in ms.
    pub handshake_timeout_ms: u64,
}

/// The crypto provider every TLS object is built with (ring: no cmake needed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Validate the TLS flags: `None` without a TLS listener (the file flags are then
/// refused, as they would do nothing), else the settings with every file checked.
pub fn resolve(
    listeners: usize,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    handshakes_max: usize,
    handshake_timeout_ms: u64,
) -> Result<Option<TlsConfig>, ConfigError> {
    if listeners == 0 {
        for (flag, given) in [
            ("--tls-cert", cert.is_some()),
            ("--tls-key", key.is_some()),
            ("--tls-client-ca", client_ca.is_some()),
        ] {
            if given {
                return Err(ConfigError::new(
                    flag,
                    "needs a TLS listener (--listen tls:ADDR:PORT)",
                ));
            }
        }
        return Ok(None);
    }
    let cert =
        cert.ok_or_else(|| ConfigError::new("--tls-cert", "required with --listen tls:ADDR:PORT"))?;
    let key =
        key.ok_or_else(|| ConfigError::new("--tls-key", "required with --listen tls:ADDR:PORT"))?;
    if handshakes_max == 0 || handshakes_max > TLS_HANDSHAKES_MAX {
        return Err(ConfigError::new(
            "--tls-handshakes-max",
            format!("must be 1..={TLS_HANDSHAKES_MAX} per core, got {handshakes_max}"),
        ));
    }
    if !(TLS_HANDSHAKE_TIMEOUT_MS_MIN..=TLS_HANDSHAKE_TIMEOUT_MS_MAX)
        .contains(&handshake_timeout_ms)
    {
        return Err(ConfigError::new(
            "--tls-handshake-timeout-ms",
            format!(
                "must be {TLS_HANDSHAKE_TIMEOUT_MS_MIN}..={TLS_HANDSHAKE_TIMEOUT_MS_MAX} ms, got \
                 {handshake_timeout_ms}"
            ),
        ));
    }
    load_certified_key(&cert, &key)?;
    if let Some(ca) = &client_ca {
        load_roots(ca)?;
    }
    Ok(Some(TlsConfig {
        cert,
        key,
        client_ca,
        handshakes_max,
        handshake_timeout_ms,
    }))
}

/// Read a PEM file of at most [`PEM_FILE_BYTES_MAX`]; the error names `flag`.
fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let len = std::fs::metadata(path)
        .map_err(|e| ConfigError::new(flag, format!("cannot read {}: {e}", path.display())))?
        .len();
    if len > PEM_FILE_BYTES_MAX {
        return Err(ConfigError::new(
            flag,
            format!(
                "{} is {len} bytes, more than the {PEM_FILE_BYTES_MAX} allowed",
                path.display()
            ),
        ));
    }
    std::fs::read(path)
        .map_err(|e| ConfigError::new(flag, format!("cannot read {}: {e}", path.display())))
}

/// The certificates of a PEM file (at least one); the error names `flag`.
fn load_certs(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read_pem(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(flag, format!("{}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            flag,
            format!("{} holds no CERTIFICATE", path.display()),
        ));
    }
    Ok(certs)
}

/// The server's certificate chain and key, checked to match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, ConfigError> {
    let chain = load_certs("--tls-cert", cert)?;
    let pem = read_pem("--tls-key", key)?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        ConfigError::new(
            "--tls-key",
            format!("{}: no usable private key: {e}", key.display()),
        )
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| {
        ConfigError::new(
            "--tls-key",
            format!(
                "{} does not go with --tls-cert {}: {e}",
                key.display(),
                cert.display()
            ),
        )
    })
}

/// The CAs of `--tls-client-ca`.
pub fn load_roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("--tls-client-ca", path)? {
        roots.add(cert).map_err(|e| {
            ConfigError::new(
                "--tls-client-ca",
                format!("{}: not a CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_flags_need_a_listener_and_a_listener_needs_both_files() {
        let p = || Some(PathBuf::from("x.pem"));
        let flag = |r: Result<Option<TlsConfig>, ConfigError>| r.unwrap_err().flag;
        assert_eq!(resolve(0, None, None, None, 1, 5000).unwrap(), None);
        assert_eq!(flag(resolve(0, p(), None, None, 1, 5000)), "--tls-cert");
        assert_eq!(
            flag(resolve(0, None, None, p(), 1, 5000)),
            "--tls-client-ca"
        );
        assert_eq!(flag(resolve(1, None, p(), None, 1, 5000)), "--tls-cert");
        assert_eq!(flag(resolve(1, p(), None, None, 1, 5000)), "--tls-key");
        assert_eq!(
            flag(resolve(1, p(), p(), None, 0, 5000)),
            "--tls-handshakes-max"
        );
        assert_eq!(
            flag(resolve(1, p(), p(), None, 1, 49)),
            "--tls-handshake-timeout-ms"
        );
        // Limits valid: the missing file is what stops it, named by its flag.
        let e = resolve(1, p(), p(), None, 1, 5000).unwrap_err();
        assert_eq!(e.flag, "--tls-cert");
        assert!(e.reason.contains("x.pem"), "{}", e.reason);
    }
}
