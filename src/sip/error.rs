//! Why a request was rejected, as a `Copy` enum whose reason phrase names the fault.
//!
//! A 400 that says *which* header is wrong ("Malformed Contact header") saves an operator
//! a packet capture; the phrase is a `&'static str`, so rejecting costs no allocation.

use std::fmt;

/// Why [`parse_request`](super::parse_request) rejected a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseError {
    /// The datagram is a response (`SIP/2.0 ...` status line): drop it silently.
    IsResponse,
    /// Larger than [`DATAGRAM_BYTES_MAX`](super::limits::DATAGRAM_BYTES_MAX).
    TooLarge,
    /// Empty, or nothing but CRLFs.
    Empty,
    /// The request line is not `Method SP Request-URI SP SIP-Version`.
    BadRequestLine,
    /// The Request-URI does not parse.
    BadRequestUri,
    /// A version other than `SIP/2.0` (answered with 505).
    UnsupportedVersion,
    /// A header line has no `name:` (or a non-token name).
    BadHeaderLine,
    /// No empty line ends the header section.
    Truncated,
    /// One header is longer than [`HEADER_LINE_BYTES_MAX`](super::limits::HEADER_LINE_BYTES_MAX).
    HeaderTooLong,
    /// More than [`HEADERS_PER_MESSAGE_MAX`](super::limits::HEADERS_PER_MESSAGE_MAX) headers.
    TooManyHeaders,
    /// More than [`VIAS_PER_MESSAGE_MAX`](super::limits::VIAS_PER_MESSAGE_MAX) Via headers.
    TooManyVias,
    /// More than [`CONTACTS_PER_MESSAGE_MAX`](super::limits::CONTACTS_PER_MESSAGE_MAX) contacts.
    TooManyContacts,
    /// More than [`PATH_VALUES_MAX`](super::limits::PATH_VALUES_MAX) Path values.
    TooManyPathValues,
    /// More than [`OPTION_TAGS_MAX`](super::limits::OPTION_TAGS_MAX) option tags in one list.
    TooManyOptionTags,
    /// No Via header.
    MissingVia,
    /// No From header.
    MissingFrom,
    /// No To header.
    MissingTo,
    /// No Call-ID header.
    MissingCallId,
    /// No CSeq header.
    MissingCSeq,
    /// Two From headers.
    DuplicateFrom,
    /// Two To headers.
    DuplicateTo,
    /// Two Call-ID headers.
    DuplicateCallId,
    /// Two CSeq headers.
    DuplicateCSeq,
    /// Two Max-Forwards headers.
    DuplicateMaxForwards,
    /// Two Expires headers.
    DuplicateExpires,
    /// Two Content-Length headers (RFC 4475 `mcl01`).
    DuplicateContentLength,
    /// The top Via does not parse.
    BadVia,
    /// The From header does not parse.
    BadFrom,
    /// The To header does not parse.
    BadTo,
    /// The Call-ID is not `word [ "@" word ]`.
    BadCallId,
    /// The Call-ID is longer than [`CALL_ID_BYTES_MAX`](super::limits::CALL_ID_BYTES_MAX).
    CallIdTooLong,
    /// The CSeq is not `1*DIGIT LWS Method` with a 32-bit number.
    BadCSeq,
    /// The CSeq method differs from the request method (RFC 4475 `mismatch01`).
    CSeqMethodMismatch,
    /// Max-Forwards is not a number in 0..=255.
    BadMaxForwards,
    /// Expires is not delta-seconds.
    BadExpires,
    /// Content-Length is not a number.
    BadContentLength,
    /// Fewer body bytes than Content-Length announces (RFC 4475 `clerr`).
    ContentLengthMismatch,
    /// A Contact value does not parse.
    BadContact,
    /// A Contact URI is longer than [`CONTACT_URI_BYTES_MAX`](super::limits::CONTACT_URI_BYTES_MAX).
    ContactUriTooLong,
    /// A contact `q` is not a qvalue (`0` to `1` with at most three decimals).
    BadContactQ,
    /// A contact `expires` is not delta-seconds.
    BadContactExpires,
    /// A contact `reg-id` is not a 32-bit number.
    BadContactRegId,
    /// `Contact: *` together with other contacts (RFC 3261 §10.3 step 6).
    BadStarContact,
    /// A Require, Proxy-Require or Supported list is not comma-separated tokens.
    BadOptionTag,
    /// A Path value is empty or unbalanced.
    BadPath,
}

impl ParseError {
    /// The reason phrase for the response: it names the fault.
    pub fn reason(self) -> &'static str {
        match self {
            Self::IsResponse => "Not a request",
            Self::TooLarge => "Message too large",
            Self::Empty => "Empty message",
            Self::BadRequestLine => "Bad request line",
            Self::BadRequestUri => "Malformed Request-URI",
            Self::UnsupportedVersion => "Unsupported SIP version",
            Self::BadHeaderLine => "Malformed header line",
            Self::Truncated => "Truncated header section",
            Self::HeaderTooLong => "Header too long",
            Self::TooManyHeaders => "Too many headers",
            Self::TooManyVias => "Too many Via headers",
            Self::TooManyContacts => "Too many Contact values",
            Self::TooManyPathValues => "Too many Path values",
            Self::TooManyOptionTags => "Too many option tags",
            Self::MissingVia => "Missing Via header",
            Self::MissingFrom => "Missing From header",
            Self::MissingTo => "Missing To header",
            Self::MissingCallId => "Missing Call-ID header",
            Self::MissingCSeq => "Missing CSeq header",
            Self::DuplicateFrom => "Duplicate From header",
            Self::DuplicateTo => "Duplicate To header",
            Self::DuplicateCallId => "Duplicate Call-ID header",
            Self::DuplicateCSeq => "Duplicate CSeq header",
            Self::DuplicateMaxForwards => "Duplicate Max-Forwards header",
            Self::DuplicateExpires => "Duplicate Expires header",
            Self::DuplicateContentLength => "Duplicate Content-Length header",
            Self::BadVia => "Malformed Via header",
            Self::BadFrom => "Malformed From header",
            Self::BadTo => "Malformed To header",
            Self::BadCallId => "Malformed Call-ID header",
            Self::CallIdTooLong => "Call-ID too long",
            Self::BadCSeq => "Invalid CSeq",
            Self::CSeqMethodMismatch => "CSeq method does not match request method",
            Self::BadMaxForwards => "Invalid Max-Forwards",
            Self::BadExpires => "Invalid Expires",
            Self::BadContentLength => "Invalid Content-Length",
            Self::ContentLengthMismatch => "Content-Length mismatch",
            Self::BadContact => "Malformed Contact header",
            Self::ContactUriTooLong => "Contact URI too long",
            Self::BadContactQ => "Invalid q value in Contact",
            Self::BadContactExpires => "Invalid expires value in Contact",
            Self::BadContactRegId => "Invalid reg-id in Contact",
            Self::BadStarContact => "Invalid use of * in Contact",
            Self::BadOptionTag => "Malformed option tag list",
            Self::BadPath => "Malformed Path header",
        }
    }

    /// The status code to answer with: 505 for a foreign SIP version (RFC 3261 §21.5.6),
    /// 413 for an oversized datagram (§21.4.13; usually unanswerable anyway,
    /// since a too-large datagram is not parsed for a Via), 400 for everything else.
    /// [`ParseError::IsResponse`] also says 400 but must never be answered.
    pub fn status(self) -> u16 {
        match self {
            Self::UnsupportedVersion => 505,
            Self::TooLarge => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

/// Why [`parse_uri`](super::parse_uri) or [`write_aor_key`](super::write_aor_key) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UriError {
    /// No `scheme:` prefix, or a scheme with bytes outside `ALPHA *(ALPHA/DIGIT/+/-/.)`.
    Scheme,
    /// The user or password part has a forbidden byte or a bad `%` escape.
    UserInfo,
    /// The host is empty or has a forbidden byte.
    Host,
    /// The port is not a number below 65536.
    Port,
    /// The `;params` part has a forbidden byte or a bad escape.
    Params,
    /// The `?headers` part has a forbidden byte or a bad escape.
    Headers,
    /// A byte that no part of the URI allows (space, `<`, `>`, ...).
    Trailing,
    /// An AOR key needs a SIP or SIPS URI.
    NotSip,
    /// An AOR key needs a non-empty user part.
    NoUser,
}

impl UriError {
    /// A short description, fit for a reason phrase suffix or a log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheme => "bad URI scheme",
            Self::UserInfo => "bad URI user part",
            Self::Host => "bad URI host",
            Self::Port => "bad URI port",
            Self::Params => "bad URI parameters",
            Self::Headers => "bad URI headers",
            Self::Trailing => "unexpected bytes in URI",
            Self::NotSip => "not a SIP or SIPS URI",
            Self::NoUser => "URI has no user part",
        }
    }
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for UriError {}
