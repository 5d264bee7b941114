//! The message types the parser fills: [`Request`] and what it is made of (method,
//! From/To, Contact, Via, CSeq), the [`Echo`] a response copies and the [`Rejected`]
//! answer to a refused request.
//!
//! Why a file of its own: these are the crate's vocabulary (the registrar, the
//! transaction layer and the response writer read them), while how they are read
//! from bytes is `header_values` (one header value) and `lines` (the line structure).
//! Everything borrows the datagram (`'a`).

use super::error::ParseError;
use super::header_values::HeaderParams;
use super::lines::RawHeaders;
use super::names::HeaderName;
use super::uri::Uri;

/// A request method. Method names are case-sensitive (RFC 3261 §7.1), so `register` and
/// `RE%47IST%45R` (RFC 4475 `esc02`) are [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// `REGISTER`
    Register,
    /// `OPTIONS`
    Options,
    /// `INVITE`
    Invite,
    /// `ACK`
    Ack,
    /// `BYE`
    Bye,
    /// `CANCEL`
    Cancel,
    /// `SUBSCRIBE`
    Subscribe,
    /// `NOTIFY`
    Notify,
    /// `PUBLISH`
    Publish,
    /// `MESSAGE`
    Message,
    /// `INFO`
    Info,
    /// `PRACK`
    Prack,
    /// `UPDATE`
    Update,
    /// `REFER`
    Refer,
    /// Any other token.
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Classifies a method token (exact, case-sensitive match).
    pub fn from_bytes(b: &'a [u8]) -> Self {
        match b {
            b"REGISTER" => Self::Register,
            b"OPTIONS" => Self::Options,
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"SUBSCRIBE" => Self::Subscribe,
            b"NOTIFY" => Self::Notify,
            b"PUBLISH" => Self::Publish,
            b"MESSAGE" => Self::Message,
            b"INFO" => Self::Info,
            b"PRACK" => Self::Prack,
            b"UPDATE" => Self::Update,
            b"REFER" => Self::Refer,
            other => Self::Other(other),
        }
    }

    /// The method token as written.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Self::Register => b"REGISTER",
            Self::Options => b"OPTIONS",
            Self::Invite => b"INVITE",
            Self::Ack => b"ACK",
            Self::Bye => b"BYE",
            Self::Cancel => b"CANCEL",
            Self::Subscribe => b"SUBSCRIBE",
            Self::Notify => b"NOTIFY",
            Self::Publish => b"PUBLISH",
            Self::Message => b"MESSAGE",
            Self::Info => b"INFO",
            Self::Prack => b"PRACK",
            Self::Update => b"UPDATE",
            Self::Refer => b"REFER",
            Self::Other(b) => b,
        }
    }
}

/// `CSeq: 1*DIGIT LWS Method` (RFC 3261 §20.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (a 32-bit unsigned integer; larger is a parse error).
    pub seq: u32,
    /// The method, equal to the request method.
    pub method: Method<'a>,
}

/// The transport named in a Via's sent-protocol (ASCII case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport<'a> {
    /// `UDP`
    Udp,
    /// `TCP`
    Tcp,
    /// `TLS`
    Tls,
    /// `SCTP`
    Sctp,
    /// `WS` (RFC 7118)
    Ws,
    /// `WSS` (RFC 7118)
    Wss,
    /// Any other token, as written.
    Other(&'a [u8]),
}

impl<'a> Transport<'a> {
    pub(super) fn from_bytes(b: &'a [u8]) -> Self {
        const KNOWN: [(&[u8], Transport<'static>); 6] = [
            (b"UDP", Transport::Udp),
            (b"TCP", Transport::Tcp),
            (b"TLS", Transport::Tls),
            (b"SCTP", Transport::Sctp),
            (b"WS", Transport::Ws),
            (b"WSS", Transport::Wss),
        ];
        KNOWN
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(b))
            .map_or(Self::Other(b), |(_, t)| *t)
    }
}

/// The top via-parm (RFC 3261 §20.42): `SIP/2.0/UDP host:port;params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// The exact bytes of this via-parm (a prefix of the first Via header value).
    pub raw: &'a [u8],
    /// The transport.
    pub transport: Transport<'a>,
    /// The sent-by host (IPv6 references keep their brackets).
    pub host: &'a [u8],
    /// The sent-by port.
    pub port: Option<u16>,
    /// The `branch` parameter.
    pub branch: Option<&'a [u8]>,
    /// `rport` (RFC 3581): `Some(None)` when present without a value.
    pub rport: Option<Option<u16>>,
    /// The `received` parameter.
    pub received: Option<&'a [u8]>,
    /// The `maddr` parameter.
    pub maddr: Option<&'a [u8]>,
    /// All via params raw, from the first `;` (may contain LWS).
    pub params: &'a [u8],
    /// Offset in `raw` just after the name of a value-less `rport`, where the writer
    /// inserts `=port` (0 when there is none).
    pub(crate) rport_insert_at: usize,
}

/// A From or To header: `( name-addr / addr-spec ) *( SEMI params )` (RFC 3261 §20.20/39).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written: a quoted-string keeps its quotes and escapes.
    pub display: Option<&'a [u8]>,
    /// The parsed URI; `uri.raw` holds its exact bytes (inside `<>` when bracketed).
    pub uri: Uri<'a>,
    /// The `tag` parameter.
    pub tag: Option<&'a [u8]>,
    /// All header params raw, from the first `;` (may contain LWS).
    pub params: &'a [u8],
}

impl<'a> NameAddr<'a> {
    /// The header params as `(name, value)` pairs; a quoted value keeps its quotes.
    pub fn params(&self) -> HeaderParams<'a> {
        HeaderParams {
            s: self.params,
            i: 0,
        }
    }
}

/// One Contact value (RFC 3261 §20.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact<'a> {
    /// The display name as written: a quoted-string keeps its quotes and escapes.
    pub display: Option<&'a [u8]>,
    /// The parsed URI; `uri.raw` holds its exact bytes (inside `<>` when bracketed),
    /// which are what is stored and echoed.
    pub uri: Uri<'a>,
    /// The `expires` parameter, saturating at `u32::MAX` when overlarge.
    pub expires: Option<u32>,
    /// The `q` parameter in thousandths (0..=1000).
    pub q: Option<u16>,
    /// The `+sip.instance` value (RFC 5626 §4.1) with its surrounding double quotes
    /// stripped, e.g. `<urn:uuid:...>`.
    pub instance: Option<&'a [u8]>,
    /// The `reg-id` parameter (RFC 5626 §4.2).
    pub reg_id: Option<u32>,
    /// All contact (header) params raw, from the first `;` (may contain LWS, including
    /// folded line breaks; use [`Contact::params`] to rebuild them).
    pub params: &'a [u8],
}

impl<'a> Contact<'a> {
    /// The contact params as `(name, value)` pairs; a quoted value keeps its quotes.
    pub fn params(&self) -> HeaderParams<'a> {
        HeaderParams {
            s: self.params,
            i: 0,
        }
    }
}

/// The Contact headers of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contacts<'a> {
    /// No Contact header.
    None,
    /// `Contact: *` (RFC 3261 §10.2.2), alone.
    Star,
    /// One or more contacts, in message order.
    List(&'a [Contact<'a>]),
}

/// One header line as received (continuation lines included in `value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// The name as written.
    pub name: &'a [u8],
    /// The name looked up in the header table.
    pub kind: HeaderName,
    /// The value without surrounding LWS.
    pub value: &'a [u8],
}

/// What a response to this request must copy (RFC 3261 §8.2.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo<'a> {
    /// Every Via header value, raw, in order.
    pub vias: &'a [&'a [u8]],
    /// The top via-parm, parsed (the writer adds `received`/`rport` to it).
    pub top_via: Via<'a>,
    /// The From value, raw.
    pub from: Option<&'a [u8]>,
    /// The To value, raw.
    pub to: Option<&'a [u8]>,
    /// The Call-ID value, raw.
    pub call_id: Option<&'a [u8]>,
    /// The CSeq value, raw.
    pub cseq: Option<&'a [u8]>,
    /// Whether the To header carries a `tag` (the writer adds one when it does not).
    pub to_has_tag: bool,
}

/// A parsed, validated request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The method.
    pub method: Method<'a>,
    /// The Request-URI.
    pub request_uri: Uri<'a>,
    /// The From header.
    pub from: NameAddr<'a>,
    /// The To header.
    pub to: NameAddr<'a>,
    /// The Call-ID (`word [ "@" word ]`).
    pub call_id: &'a [u8],
    /// The CSeq (its method equals [`Request::method`]).
    pub cseq: CSeq<'a>,
    /// Max-Forwards (0..=255) when present.
    pub max_forwards: Option<u32>,
    /// The contacts.
    pub contacts: Contacts<'a>,
    /// The Expires header (delta-seconds, saturating at `u32::MAX`).
    pub expires: Option<u32>,
    /// Option tags of all Require headers.
    pub require: &'a [&'a [u8]],
    /// Option tags of all Proxy-Require headers.
    pub proxy_require: &'a [&'a [u8]],
    /// Option tags of all Supported headers.
    pub supported: &'a [&'a [u8]],
    /// Path values (RFC 3327), raw, in order.
    pub path: &'a [&'a [u8]],
    /// Content-Length when present.
    pub content_length: Option<u32>,
    /// The first User-Agent value, raw.
    pub user_agent: Option<&'a [u8]>,
    /// The first Authorization value, raw (for digest authentication); any further ones
    /// are in [`Request::other_authorizations`].
    pub authorization: Option<&'a [u8]>,
    /// The header section: the header lines and the empty line that ends them (read by
    /// [`Request::headers`]).
    pub head: &'a [u8],
    /// The body: Content-Length bytes (trailing bytes ignored), or the rest of the
    /// datagram when Content-Length is absent (RFC 3261 §18.3).
    pub body: &'a [u8],
    /// What a response must copy.
    pub echo: Echo<'a>,
}

impl<'a> Request<'a> {
    /// The top Via. Kept once, in [`Echo::top_via`], which every response copies: a
    /// second copy would cost a 136-byte move per parse.
    #[inline]
    pub fn via(&self) -> &Via<'a> {
        &self.echo.top_via
    }

    /// The Authorization values after the first ([`Request::authorization`]), in order,
    /// read again from the header section: the credentials a request carries for other
    /// realms (RFC 3261 §22.4). Lazy: nothing is read until the iterator is advanced.
    pub fn other_authorizations(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.headers()
            .filter(|h| h.kind == HeaderName::Authorization)
            .skip(1)
            .map(|h| h.value)
    }

    /// Every header, raw, in order (continuation lines joined into the value). Read
    /// again from [`Request::head`] on each call: no parse pays for a list that is walked
    /// only on demand (tools, tests, and [`Request::other_authorizations`]).
    pub fn headers(&self) -> RawHeaders<'a> {
        RawHeaders::new(self.head)
    }
}

/// A request the parser refused, and what is needed to answer it when possible.
#[derive(Clone, Copy, Debug)]
pub struct Rejected<'a> {
    /// What is wrong.
    pub error: ParseError,
    /// `Some` when a response can be addressed (a usable top Via).
    pub echo: Option<Echo<'a>>,
}
