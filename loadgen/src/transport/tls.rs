//! The TLS client configuration: rustls with the ring provider.
//!
//! Why rustls: the registrar's TLS listener is rustls too, it needs no OpenSSL headers or
//! system library, and its client keeps a session cache, so a reconnect resumes (RFC 8446
//! §2.2 tickets, RFC 5077 for 1.2) the way a phone's TLS stack does. Why ring: it builds
//! with the C compiler alone (aws-lc-rs wants cmake).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// Which TLS versions to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Versions {
    /// 1.3 preferred, 1.2 accepted.
    Any,
    V12,
    V13,
}

impl Versions {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "any" => Self::Any,
            "1.2" => Self::V12,
            "1.3" => Self::V13,
            _ => return None,
        })
    }
}

/// Everything a TLS connection of the run is made from.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

/// Why a TLS client cannot be set up; each names the flag at fault.
#[derive(Debug)]
pub(crate) enum SetupError {
    /// `--tls-ca`: unreadable, not PEM, or no certificate in it.
    Ca(String),
    /// `--tls-server-name`: not a DNS name or IP address.
    ServerName(String),
    /// The provider refused the versions (cannot happen with ring's defaults).
    Versions(String),
}

/// A client trusting the certificates in `ca`, offering `versions`, resuming sessions unless
/// `resume` is false, and checking the server's certificate against `server_name`
/// (default: the target address, so the certificate needs that IP in its SAN).
pub(crate) fn client(
    ca: &Path,
    server_name: Option<&str>,
    target: IpAddr,
    versions: Versions,
    resume: bool,
) -> Result<Client, SetupError> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| SetupError::Ca(format!("{}: {e}", ca.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| SetupError::Ca(format!("{}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| SetupError::Ca(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(SetupError::Ca(format!(
            "{}: no certificate in it",
            ca.display()
        )));
    }
    let offered: &[&rustls::SupportedProtocolVersion] = match versions {
        Versions::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Versions::V12 => &[&rustls::version::TLS12],
        Versions::V13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(offered)
        .map_err(|e| SetupError::Versions(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    let server_name = match server_name {
        Some(name) => ServerName::try_from(name.to_string())
            .map_err(|e| SetupError::ServerName(format!("'{name}': {e}")))?,
        None => ServerName::IpAddress(target.into()),
    };
    Ok(Client {
        config: Arc::new(config),
        server_name,
    })
}
