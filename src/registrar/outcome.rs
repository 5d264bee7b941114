//! Every way a request can end, as one exhaustive enum, mapped to a status code by a
//! single `match` (STYLE §8 item 7; Kamailio keeps the same table in `rerrno.h` plus a
//! parallel array in `reply.c`, which is what we avoid).

use crate::sip::ParseError;

/// How the registrar answered (or did not answer) one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// REGISTER applied (bindings added, refreshed or removed): 200.
    Registered,
    /// REGISTER without Contact: the bindings are listed, nothing changed (§10.3 step 6).
    Fetched,
    /// OPTIONS answered by the registrar itself: 200 with Allow/Accept/Supported.
    OptionsOk,
    /// A request for a registered AOR: 302 with its contacts, q-ordered (§8.3).
    Redirected,
    /// ACK to one of our final responses: absorbed, nothing sent (§17.2.1).
    AckAbsorbed,
    /// A retransmission answered from the transaction cache (§17.2.2).
    Retransmission,
    /// The request could not be parsed; the reason names the fault.
    Malformed(ParseError),
    /// Request-URI domain is not one we serve (§10.3 step 1).
    DomainNotServed,
    /// `Require` names an option we do not support (§8.2.2.3): 420 + Unsupported.
    BadExtension,
    /// The To URI is not a SIP or SIPS URI (§10.3 step 5; RFC 4475 unksm2).
    ToNotSip,
    /// The To URI has no user part, so there is no AOR.
    ToNoUser,
    /// The AOR is longer than `AOR_KEY_BYTES_MAX`.
    AorTooLong,
    /// The To domain is not served (§10.3 step 5): 404.
    AorNotServed,
    /// `Contact: *` without `Expires: 0`, or with other contacts (§10.3 step 6).
    StarMisuse,
    /// A Contact URI whose scheme is neither sip nor sips.
    ContactNotSip,
    /// The same contact twice in one REGISTER.
    DuplicateContact,
    /// An expiry above zero but below the minimum: 423 + Min-Expires (§10.3 step 7).
    IntervalTooBrief,
    /// Same Call-ID with a CSeq not above the stored one (§10.3 step 7).
    InvalidCSeq,
    /// Past `max_contacts` with the reject policy: 503 + Retry-After.
    TooManyContacts,
    /// The shard holds `max_bindings`: 503 + Retry-After.
    RegistrarFull,
    /// The location store cannot write (disk full, I/O error), or the shared backend
    /// cannot be reached: a change that would not be kept is refused with 503 +
    /// Retry-After, never answered 200.
    StoreFailed,
    /// Shared location: `SHARED_COMMITS_PENDING_MAX` commits already wait for the
    /// backend: 503 + Retry-After.
    CommitsBusy,
    /// The AOR is unknown here: 404 (§21.4.4).
    NotFound,
    /// The AOR is known but has no live binding: 480 (§21.4.18).
    TemporarilyUnavailable,
    /// A request inside a dialog we never took part in (CANCEL, BYE, To-tag): 481.
    NoTransaction,
    /// A method we know but do not serve: 405 + Allow.
    MethodNotAllowed,
    /// A method we do not know: 501 + Allow.
    NotImplemented,
    /// A binding past the table's per-binding size limit (a huge Path, say): 400.
    BindingTooLarge,
    /// The commit was refused for a reason that is our bug: 500, nothing changed
    /// (§10.3 step 7).
    ServerError,
    /// No valid credentials (§22.1): 401 with a challenge per algorithm; `stale` when
    /// the credentials were right but the nonce too old (RFC 7616 §3.3).
    Unauthorized {
        /// Whether to add `stale=true`.
        stale: bool,
    },
    /// Authenticated, but not as the To user (§10.3 step 4): 403.
    Forbidden,
    /// Malformed Authorization header: 400 with a reason that never names the user.
    BadCredentials(&'static str),
    /// An Outbound REGISTER (RFC 5626 §6: `Supported: outbound`, a `reg-id`) that came
    /// through a proxy whose Path does not carry `ob`: 439.
    FirstHopLacksOutbound,
    /// A `reg-id` outside 1..=2^31-1 (RFC 5626 §4.2.1 grammar): 400.
    RegIdInvalid,
    /// More than one Contact with a `reg-id` and a non-zero expiry in an Outbound
    /// REGISTER (RFC 5626 §6): 400.
    RegIdMultiple,
}

impl Outcome {
    /// The status code and reason phrase sent for this outcome; `None` when nothing is
    /// sent (or, for a retransmission, when the cached bytes are sent as they are).
    pub fn status(self) -> Option<(u16, &'static str)> {
        Some(match self {
            Self::Registered | Self::Fetched | Self::OptionsOk => (200, "OK"),
            Self::Redirected => (302, "Moved Temporarily"),
            Self::AckAbsorbed | Self::Retransmission => return None,
            Self::Malformed(e) => (e.status(), e.reason()),
            Self::DomainNotServed => (404, "Domain Not Served"),
            Self::BadExtension => (420, "Bad Extension"),
            Self::ToNotSip => (400, "To Is Not A SIP Or SIPS URI"),
            Self::ToNoUser => (400, "No User In To URI"),
            Self::AorTooLong => (400, "Address Of Record Too Long"),
            Self::AorNotServed => (404, "Domain Of To Not Served"),
            Self::StarMisuse => (
                400,
                "Invalid Contact *: Needs Expires 0 And No Other Contact",
            ),
            Self::ContactNotSip => (400, "Contact Is Not A SIP Or SIPS URI"),
            Self::DuplicateContact => (400, "Duplicate Contact"),
            Self::IntervalTooBrief => (423, "Interval Too Brief"),
            Self::InvalidCSeq => (400, "Invalid CSeq"),
            Self::TooManyContacts => (503, "Too Many Registered Contacts"),
            Self::RegistrarFull => (503, "Registrar Full"),
            Self::StoreFailed => (503, "Location Store Unavailable"),
            Self::CommitsBusy => (503, "Too Many Pending Commits"),
            Self::NotFound => (404, "Not Found"),
            Self::TemporarilyUnavailable => (480, "Temporarily Unavailable"),
            Self::NoTransaction => (481, "Call/Transaction Does Not Exist"),
            Self::MethodNotAllowed => (405, "Method Not Allowed"),
            Self::NotImplemented => (501, "Not Implemented"),
            Self::BindingTooLarge => (400, "Binding Too Large"),
            Self::ServerError => (500, "Server Internal Error"),
            Self::Unauthorized { .. } => (401, "Unauthorized"),
            Self::Forbidden => (403, "Forbidden"),
            Self::BadCredentials(reason) => (400, reason),
            Self::FirstHopLacksOutbound => (439, "First Hop Lacks Outbound Support"),
            Self::RegIdInvalid => (400, "Invalid reg-id"),
            Self::RegIdMultiple => (400, "More Than One Contact With reg-id"),
        })
    }

    /// A small stable index for per-outcome counters.
    pub fn index(self) -> usize {
        match self {
            Self::Registered => 0,
            Self::Fetched => 1,
            Self::OptionsOk => 2,
            Self::Redirected => 3,
            Self::AckAbsorbed => 4,
            Self::Retransmission => 5,
            Self::Malformed(_) => 6,
            Self::DomainNotServed => 7,
            Self::BadExtension => 8,
            Self::ToNotSip => 9,
            Self::ToNoUser => 10,
            Self::AorTooLong => 11,
            Self::AorNotServed => 12,
            Self::StarMisuse => 13,
            Self::ContactNotSip => 14,
            Self::DuplicateContact => 15,
            Self::IntervalTooBrief => 16,
            Self::InvalidCSeq => 17,
            Self::TooManyContacts => 18,
            Self::RegistrarFull => 19,
            Self::NotFound => 20,
            Self::TemporarilyUnavailable => 21,
            Self::NoTransaction => 22,
            Self::MethodNotAllowed => 23,
            Self::NotImplemented => 24,
            Self::BindingTooLarge => 25,
            Self::ServerError => 26,
            Self::Unauthorized { .. } => 27,
            Self::Forbidden => 28,
            Self::BadCredentials(_) => 29,
            Self::StoreFailed => 30,
            Self::CommitsBusy => 31,
            Self::FirstHopLacksOutbound => 32,
            Self::RegIdInvalid => 33,
            Self::RegIdMultiple => 34,
        }
    }

    /// The counter name of each index, for statistics output (`OUTCOME_NAMES[o.index()]`).
    pub const NAMES: [&'static str; OUTCOMES] = [
        "registered",
        "fetched",
        "options_ok",
        "redirected",
        "ack_absorbed",
        "retransmission",
        "malformed",
        "domain_not_served",
        "bad_extension",
        "to_not_sip",
        "to_no_user",
        "aor_too_long",
        "aor_not_served",
        "star_misuse",
        "contact_not_sip",
        "duplicate_contact",
        "interval_too_brief",
        "invalid_cseq",
        "too_many_contacts",
        "registrar_full",
        "not_found",
        "temporarily_unavailable",
        "no_transaction",
        "method_not_allowed",
        "not_implemented",
        "binding_too_large",
        "server_error",
        "unauthorized",
        "forbidden",
        "bad_credentials",
        "store_failed",
        "commits_busy",
        "first_hop_lacks_outbound",
        "reg_id_invalid",
        "reg_id_multiple",
    ];
}

/// How many distinct outcomes `Outcome::index` returns.
pub const OUTCOMES: usize = 35;
