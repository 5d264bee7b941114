//! TLS on a TCP connection (RFC 3261 §26.2.1, rustls with the ring provider).
//!
//! One `ServerConfig` serves every core: TLS 1.3 and 1.2, session resumption by
//! tickets (stateless, a key rotated by rustls' ticketer) and by a server session
//! cache of [`SESSION_CACHE_ENTRIES`] (shared, bounded), no client certificate unless
//! `--tls-client-ca` is given (then one that chains to it is required). The
//! certificate comes from a [`CertStore`] the SIGHUP thread swaps: a handshake asks it
//! for the current pair, so new handshakes see a reloaded certificate and established
//! sessions keep theirs. The client CAs are part of the configuration itself, so with
//! `--tls-client-ca` a SIGHUP rebuilds it ([`ServerSource`]), with a new ticket key and
//! session cache: a session verified against the old CAs cannot be resumed past the
//! change. A new connection takes the current configuration.
//!
//! A connection's session is driven without blocking by `conn`: [`read`] moves the
//! socket's bytes through rustls into the connection's read buffer as plaintext (the
//! framing never sees a record), [`write`] moves queued replies out as records. A
//! handshake that fails is classified ([`HandshakeFailure`]) for the counters.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

use crate::config::ConfigError;
use crate::config::tls::{self as flags, TlsConfig};

/// Sessions the shared server cache remembers for resumption by id (TLS 1.2 without
/// tickets), at most; the oldest go first.
pub(crate) const SESSION_CACHE_ENTRIES: usize = 4096;

/// TLS records read from the socket per [`read`] call, at most: a peer that keeps its
/// socket full is read again next turn (epoll is level-triggered) instead of holding
/// the core.
const RECORD_READS_PER_CALL_MAX: usize = 8;

/// Why a handshake failed (the label of `sipreg_tls_handshake_failures`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// The peer sent something that is not a handshake rustls can complete with us:
    /// not TLS, a bad ClientHello, no version or cipher suite in common, an alert.
    BadHello,
    /// Mutual TLS: the client presented no certificate.
    NoCert,
    /// Mutual TLS: the client's certificate does not chain to `--tls-client-ca`, or
    /// is expired or otherwise invalid.
    CertRejected,
    /// Not done within `--tls-handshake-timeout-ms`.
    Timeout,
    /// The peer closed or reset the connection before the handshake was done.
    Closed,
}

impl HandshakeFailure {
    /// Every reason, in counter order.
    pub(crate) const ALL: [Self; crate::runtime::stats::TLS_FAILURE_REASONS] = [
        Self::BadHello,
        Self::NoCert,
        Self::CertRejected,
        Self::Timeout,
        Self::Closed,
    ];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::BadHello => "bad_client_hello",
            Self::NoCert => "no_cert",
            Self::CertRejected => "cert_rejected",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    fn of(error: &rustls::Error) -> Self {
        match error {
            rustls::Error::NoCertificatesPresented => Self::NoCert,
            rustls::Error::InvalidCertificate(_) => Self::CertRejected,
            _ => Self::BadHello,
        }
    }
}

/// The server's certificate and key, swapped by SIGHUP; asked by every handshake.
#[derive(Debug)]
pub(crate) struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    fn load(config: &TlsConfig) -> Result<Self, ConfigError> {
        let pair = flags::load_certified_key(&config.cert, &config.key)?;
        Ok(Self {
            cert: config.cert.clone(),
            key: config.key.clone(),
            current: RwLock::new(Arc::new(pair)),
        })
    }

    /// Read `--tls-cert` and `--tls-key` again; on success new handshakes use the new
    /// pair, on failure the current one stays and the reason is returned.
    pub(crate) fn reload(&self) -> Result<(), ConfigError> {
        let pair = flags::load_certified_key(&self.cert, &self.key)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(pair);
        }
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

/// What every core's TLS listeners share: the rustls configuration and the limits.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) server: Arc<ServerSource>,
    pub(crate) handshakes_max: usize,
    pub(crate) handshake_timeout_ms: u64,
}

/// The parts of the configuration that stay across reloads.
#[derive(Debug)]
struct Fixed {
    store: Arc<CertStore>,
    client_ca: Option<PathBuf>,
}

impl Fixed {
    /// A configuration with the client CAs as `--tls-client-ca` holds them now, a new
    /// ticket key and an empty session cache.
    fn build(&self) -> Result<ServerConfig, ConfigError> {
        let provider = flags::provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError {
                flag: "--listen",
                reason: format!("TLS setup: {e}"),
            })?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(flags::load_roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| ConfigError {
                        flag: "--tls-client-ca",
                        reason: format!("{}: {e}", ca.display()),
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server =
            builder.with_cert_resolver(Arc::clone(&self.store) as Arc<dyn ResolvesServerCert>);
        server.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        server.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| ConfigError {
            flag: "--listen",
            reason: format!("TLS session tickets: {e}"),
        })?;
        Ok(server)
    }
}

/// The configuration a new TLS connection starts from, rebuilt by SIGHUP.
#[derive(Debug)]
pub(crate) struct ServerSource {
    current: RwLock<Arc<ServerConfig>>,
    fixed: Fixed,
}

impl ServerSource {
    /// The configuration new connections use now.
    pub(crate) fn config(&self) -> Option<Arc<ServerConfig>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }

    /// SIGHUP: read the certificate and key again, and the client CAs if any; each
    /// that fails keeps what it had. Returns what was reloaded, or why not, each.
    pub(crate) fn reload(&self) -> Vec<Result<String, ConfigError>> {
        let store = &self.fixed.store;
        let mut outcomes = vec![
            store
                .reload()
                .map(|()| format!("the TLS certificate {}", store.cert.display())),
        ];
        if let Some(ca) = &self.fixed.client_ca {
            outcomes.push(self.fixed.build().map(|config| {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(config);
                }
                format!("the TLS client CAs {}", ca.display())
            }));
        }
        outcomes
    }
}

/// Build the TLS server from the flags (files read again: start-up checked them).
pub(crate) fn server(config: &TlsConfig) -> anyhow::Result<Shared> {
    let fixed = Fixed {
        store: Arc::new(CertStore::load(config)?),
        client_ca: config.client_ca.clone(),
    };
    let current = RwLock::new(Arc::new(fixed.build()?));
    Ok(Shared {
        server: Arc::new(ServerSource { current, fixed }),
        handshakes_max: config.handshakes_max,
        handshake_timeout_ms: config.handshake_timeout_ms,
    })
}

/// A connection's place among its core's handshakes in progress: counted while held
/// (the count is what `--tls-handshakes-max` bounds), given back when dropped, however
/// the connection ends.
#[derive(Debug)]
pub(super) struct Handshaking(Rc<Cell<usize>>);

impl Handshaking {
    pub(super) fn new(count: &Rc<Cell<usize>>) -> Self {
        count.set(count.get() + 1);
        Self(Rc::clone(count))
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// What a [`read`] brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TlsRead {
    /// Plaintext bytes put into the buffer.
    Bytes(usize),
    /// Nothing to hand on now (maybe handshake progress: see `wants_write`).
    Nothing,
    /// The peer ended the session (close_notify or FIN).
    Closed,
    /// The session failed; `Some` while handshaking.
    Failed(Option<HandshakeFailure>),
}

/// Move what the socket holds through the session into `free` (never blocks).
pub(super) fn read(tls: &mut ServerConnection, sock: &mut TcpStream, free: &mut [u8]) -> TlsRead {
    let failed = |tls: &ServerConnection, why| TlsRead::Failed(tls.is_handshaking().then_some(why));
    for _ in 0..RECORD_READS_PER_CALL_MAX {
        match tls.reader().read(free) {
            Ok(0) => return TlsRead::Closed,
            Ok(n) => return TlsRead::Bytes(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // FIN without close_notify: the peer is gone all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return if tls.is_handshaking() {
                    failed(tls, HandshakeFailure::Closed)
                } else {
                    TlsRead::Closed
                };
            }
            Err(_) => return failed(tls, HandshakeFailure::BadHello),
        }
        match tls.read_tls(sock) {
            Ok(0) => {
                if tls.is_handshaking() {
                    return failed(tls, HandshakeFailure::Closed);
                }
                // The end: hand on what the last records held first, if anything.
                if tls.process_new_packets().is_err() {
                    return TlsRead::Failed(None);
                }
                return match tls.reader().read(free) {
                    Ok(n) if n > 0 => TlsRead::Bytes(n),
                    _ => TlsRead::Closed,
                };
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return TlsRead::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return failed(tls, HandshakeFailure::Closed),
        }
        if let Err(e) = tls.process_new_packets() {
            // Tell the peer why (the alert rustls queued), best effort.
            let _ = tls.write_tls(sock);
            return failed(tls, HandshakeFailure::of(&e));
        }
    }
    TlsRead::Nothing
}

/// Whether plaintext waits in the session (decrypted, not yet in the read buffer).
pub(super) fn has_plaintext(tls: &mut ServerConnection) -> bool {
    tls.process_new_packets()
        .is_ok_and(|state| state.plaintext_bytes_to_read() > 0)
}

/// Hand `bytes` to the session and write its records (never blocks): returns how many
/// of `bytes` it took, and whether records still wait for the socket (`Err` when the
/// connection failed).
pub(super) fn write(
    tls: &mut ServerConnection,
    sock: &mut TcpStream,
    bytes: &[u8],
) -> io::Result<(usize, bool)> {
    let taken = if bytes.is_empty() {
        0
    } else {
        tls.writer().write(bytes)?
    };
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((taken, true)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((taken, false))
}
