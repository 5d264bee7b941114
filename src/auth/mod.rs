//! Digest authentication of REGISTER (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.
//!
//! A carrier registrar never binds an AOR for a device that did not prove it knows the
//! subscriber's password (RFC 3261 §10.3 step 3). This module holds everything that
//! decision needs and nothing that touches the outside world: no clock (time is
//! `now_ms`), no randomness (the nonce secret is handed in), no file reading on the
//! request path: [`subscriber_file::load`] reads the `--auth-file` at start-up and on
//! SIGHUP, and hands its text to the pure [`Subscribers::parse`].
//!
//! - [`Subscribers`]: the subscriber table (`user@domain` → HA1 per algorithm),
//!   swappable on SIGHUP behind an `Arc`.
//! - [`NonceKey`]: stateless HMAC nonces, so any core verifies what another issued.
//! - [`NonceCounts`]: per-shard nonce-count replay table, bounded.
//! - [`parse_authorization`] and [`verify`]: the credentials parser and response check.
//! - [`write_challenges`]: the `WWW-Authenticate` values of a 401.
//! - [`Authenticator`]: the one call the registrar makes per REGISTER, and its counters.
//!
//! Nothing on the verification path allocates: lookups fold case into stack buffers,
//! hashes are streamed, hex goes to stack arrays, and the replay table is preallocated.
//! Failures never say which part failed: unknown user, wrong password and a nonce from
//! elsewhere all look like the same 401 (the counters tell the operator).

#![forbid(unsafe_code)]

mod algorithm;
mod challenge;
mod counts;
mod credentials;
mod nonce;
pub mod subscriber_file;
mod subscribers;
mod verify;

use std::sync::Arc;

pub use algorithm::Algorithm;
pub(crate) use algorithm::hex_into;
pub use challenge::{ALGORITHMS_MAX, CHALLENGE_VALUE_LEN_MAX, Challenges, write_challenges};
pub use counts::{NONCE_COUNTS_DEFAULT_ENTRIES, NcCheck, NonceCounts};
pub use credentials::{
    AUTHORIZATION_LEN_MAX, AuthError, CNONCE_LEN_MAX, DigestResponse, NONCE_PARAM_LEN_MAX,
    NonceCount, PARAM_VALUE_LEN_MAX, URI_LEN_MAX, Value, parse_authorization,
};
pub use nonce::{NONCE_FUTURE_SKEW_MS, NONCE_LEN, NonceCheck, NonceKey, OPAQUE_LEN};
pub use subscribers::{Credentials, LoadError, REALM_LEN_MAX, Subscribers, USERNAME_LEN_MAX};
pub use verify::verify;

/// Default nonce lifetime, in milliseconds (Kamailio's `nonce_expire` is 30 s,
/// OpenSIPS's 300 s; 30 s keeps a captured nonce useful for little time, and a client
/// that refreshes later simply gets `stale=true` and answers without re-prompting).
pub const NONCE_LIFETIME_DEFAULT_MS: u64 = 30_000;

/// Default `--auth-algorithms`: SHA-256 first, as RFC 8760 §2.4 asks (preferred first).
pub const ALGORITHMS_DEFAULT: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

/// Authorization values of one request that [`Authenticator::check_any`] reads at most
/// (the first and up to seven more): a request may carry credentials for several realms
/// (RFC 3261 §22.4), but each value costs a parse, so a datagram of nothing but
/// Authorization headers must not buy more than a few.
pub const AUTHORIZATION_VALUES_MAX: usize = 8;

/// What the registrar does with a REGISTER after [`Authenticator::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthOutcome<'a> {
    /// Authenticated as `user` (the username exactly as sent; it contains no escapes).
    /// The registrar must still check it against the To user (RFC 3261 §10.3 step 4):
    /// [`AuthOutcome::authorize_to`] does that.
    Ok {
        /// The authenticated user name.
        user: &'a [u8],
    },
    /// 401 with [`Authenticator::write_challenges`] (`stale=true` when asked).
    Challenge {
        /// Whether the credentials were right but the nonce too old.
        stale: bool,
    },
    /// 403: authenticated, but as someone who may not register this AOR.
    Forbidden,
    /// 400 with this reason phrase: the credentials are malformed. The phrase never
    /// names the user.
    BadRequest(&'static str),
}

impl AuthOutcome<'_> {
    /// Turns `Ok` into `Forbidden` unless the authenticated user is `to_user` (compared
    /// byte for byte, RFC 3261 §19.1.4). Other outcomes are unchanged.
    pub fn authorize_to(self, to_user: &[u8]) -> Self {
        match self {
            Self::Ok { user } if user != to_user => Self::Forbidden,
            other => other,
        }
    }

    /// Status code and reason phrase of the answer, `None` for `Ok` (go on with the
    /// registration).
    pub fn status(&self) -> Option<(u16, &'static str)> {
        match self {
            Self::Ok { .. } => None,
            Self::Challenge { .. } => Some((401, "Unauthorized")),
            Self::Forbidden => Some((403, "Forbidden")),
            Self::BadRequest(reason) => Some((400, reason)),
        }
    }
}

/// Why an authentication attempt failed, one counter each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// No such user in this realm.
    pub unknown_user: u64,
    /// Wrong response (wrong password, method or uri), or no HA1 for the algorithm.
    pub bad_response: u64,
    /// A nonce-count not higher than one already accepted.
    pub replayed_nc: u64,
    /// Right credentials, nonce too old (or forgotten by a full replay table).
    pub stale: u64,
    /// Malformed credentials (answered 400).
    pub malformed: u64,
    /// A scheme other than Digest.
    pub unknown_scheme: u64,
    /// Credentials for another realm.
    pub realm_mismatch: u64,
    /// A nonce we did not issue (tampered, another process, another realm).
    pub invalid_nonce: u64,
    /// An algorithm or qop we do not support, or no qop at all.
    pub unsupported: u64,
}

/// Authentication counters, for the stats endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// 401 answers decided (each is one challenge response, with one header per
    /// algorithm).
    pub challenges: u64,
    /// Challenges sent with `stale=true`.
    pub stale: u64,
    /// Successful authentications.
    pub ok: u64,
    /// Failures by reason.
    pub failures: Failures,
}

/// Per-shard authentication state: the one object the registrar calls.
#[derive(Debug)]
pub struct Authenticator {
    /// The subscriber table; replace it to reload (SIGHUP) without dropping traffic.
    pub subscribers: Arc<Subscribers>,
    /// The per-process nonce secret (the same on every shard).
    pub key: NonceKey,
    /// Algorithms offered, in order (at most [`ALGORITHMS_MAX`] are written).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays valid, in milliseconds.
    pub nonce_lifetime_ms: u64,
    /// This shard's nonce-count replay table.
    pub counts: NonceCounts,
    /// This shard's counters.
    pub counters: Counters,
    /// Credentials checked when the user is unknown, so that an unknown user costs the
    /// same time as a wrong password.
    decoy: Credentials,
}

impl Authenticator {
    /// A shard's authenticator with the default replay-table size.
    pub fn new(
        subscribers: Arc<Subscribers>,
        key: NonceKey,
        algorithms: Vec<Algorithm>,
        nonce_lifetime_ms: u64,
    ) -> Self {
        Self::with_counts(
            subscribers,
            key,
            algorithms,
            nonce_lifetime_ms,
            NonceCounts::default(),
        )
    }

    /// As [`Authenticator::new`] with a given replay table.
    pub fn with_counts(
        subscribers: Arc<Subscribers>,
        key: NonceKey,
        algorithms: Vec<Algorithm>,
        nonce_lifetime_ms: u64,
        counts: NonceCounts,
    ) -> Self {
        Self {
            subscribers,
            key,
            algorithms,
            nonce_lifetime_ms,
            counts,
            counters: Counters::default(),
            decoy: Credentials::from_password(b"\0", b"\0", b"\0"),
        }
    }

    fn challenge(&mut self, stale: bool) -> AuthOutcome<'static> {
        self.counters.challenges += 1;
        if stale {
            self.counters.stale += 1;
            self.counters.failures.stale += 1;
        }
        AuthOutcome::Challenge { stale }
    }

    /// Decides on a request's `Authorization` value for our `realm` (the domain of the
    /// AOR, lower-case). Only `Digest` credentials for `realm` are considered. Order of
    /// checks: syntax (400), scheme/realm/algorithm/qop (401), nonce MAC (401), user and
    /// response (401, the same answer either way), nonce age (401 `stale=true` only when
    /// the response was right, RFC 7616 §3.3), nonce count (401). Allocates nothing.
    pub fn check<'a>(
        &mut self,
        now_ms: u64,
        method: &[u8],
        authorization: Option<&'a [u8]>,
        realm: &[u8],
    ) -> AuthOutcome<'a> {
        self.check_any(now_ms, method, authorization, std::iter::empty(), realm)
    }

    /// [`Authenticator::check`] for a request with several Authorization values: `first`
    /// and the `others` after it, in order. A request may carry credentials for several
    /// realms, one per challenge it met on its way (RFC 3261 §22.4); the first value
    /// that parses as `Digest` for our `realm` is the one checked. When none is, `first`
    /// decides exactly as in `check` (a malformed one gets its 400). `others` is read
    /// only when `first` is not ours, and at most [`AUTHORIZATION_VALUES_MAX`] values
    /// are parsed in all.
    pub fn check_any<'a>(
        &mut self,
        now_ms: u64,
        method: &[u8],
        first: Option<&'a [u8]>,
        others: impl Iterator<Item = &'a [u8]>,
        realm: &[u8],
    ) -> AuthOutcome<'a> {
        let Some(value) = first else {
            return self.challenge(false);
        };
        let ours = |r: &DigestResponse<'_>| {
            r.realm
                .plain()
                .is_some_and(|x| x.eq_ignore_ascii_case(realm))
        };
        let resp = match parse_authorization(value) {
            Ok(r) if ours(&r) => r,
            first_result => {
                let another = others
                    .take(AUTHORIZATION_VALUES_MAX - 1)
                    .filter_map(|v| parse_authorization(v).ok())
                    .find(|r| ours(r));
                match (another, first_result) {
                    (Some(r), _) => r,
                    (None, Ok(_)) => {
                        self.counters.failures.realm_mismatch += 1;
                        return self.challenge(false);
                    }
                    (None, Err(AuthError::UnknownScheme)) => {
                        self.counters.failures.unknown_scheme += 1;
                        return self.challenge(false);
                    }
                    (None, Err(e)) if e.wants_challenge() => {
                        self.counters.failures.unsupported += 1;
                        return self.challenge(false);
                    }
                    (None, Err(e)) => {
                        self.counters.failures.malformed += 1;
                        return AuthOutcome::BadRequest(bad_request_phrase(e));
                    }
                }
            }
        };
        if resp.qop.is_none() || !self.algorithms.contains(&resp.algorithm) {
            self.counters.failures.unsupported += 1;
            return self.challenge(false);
        }
        let nonce = resp.nonce.plain().unwrap_or_default();
        let nonce_state = self
            .key
            .check_nonce(nonce, realm, now_ms, self.nonce_lifetime_ms);
        if nonce_state == NonceCheck::Invalid {
            self.counters.failures.invalid_nonce += 1;
            return self.challenge(false);
        }
        let creds = resp
            .username
            .plain()
            .and_then(|u| self.subscribers.get(u, realm).map(|c| (u, *c)));
        let Some((user, creds)) = creds else {
            let _ = verify(&resp, method, &self.decoy);
            self.counters.failures.unknown_user += 1;
            return self.challenge(false);
        };
        if !verify(&resp, method, &creds) {
            self.counters.failures.bad_response += 1;
            return self.challenge(false);
        }
        let NonceCheck::Valid { issued_ms } = nonce_state else {
            return self.challenge(true);
        };
        self.counts
            .expire(now_ms.saturating_sub(self.nonce_lifetime_ms));
        let nc = resp.nc.map_or(0, |nc| nc.value);
        match self.counts.check_and_record(nonce, issued_ms, nc) {
            NcCheck::Fresh => {
                self.counters.ok += 1;
                AuthOutcome::Ok { user }
            }
            NcCheck::Forgotten => self.challenge(true),
            NcCheck::Replayed => {
                self.counters.failures.replayed_nc += 1;
                self.challenge(false)
            }
        }
    }

    /// Writes the `WWW-Authenticate` values of a 401 for `realm` into `out` (one per
    /// configured algorithm, in order), with `stale=true` when asked.
    pub fn write_challenges(&self, now_ms: u64, realm: &[u8], stale: bool, out: &mut Challenges) {
        write_challenges(&self.key, &self.algorithms, now_ms, realm, stale, out);
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

/// The reason phrase of a 400 for malformed credentials (RFC 3261 §21.4.1 lets the
/// phrase say what was wrong; it never echoes input).
fn bad_request_phrase(e: AuthError) -> &'static str {
    match e {
        AuthError::TooLong | AuthError::ValueTooLong => "Authorization Too Long",
        _ => "Malformed Authorization",
    }
}

#[cfg(test)]
mod tests;
