//! SIP messages for a registrar: a zero-copy request parser, SIP/SIPS URIs, the
//! header-name table and an allocation-free response writer.
//!
//! The module is pure: functions over `&[u8]`, a caller-owned `bumpalo` arena for the few
//! per-message lists, a caller-owned `Vec<u8>` for responses. It reads no clock and opens
//! no socket, which is what lets the registrar above it run on a fake clock, under a
//! fuzzer, and at hundreds of thousands of requests per second per core.
//!
//! - [`parse_request`] turns a datagram into a validated [`Request`] or a [`Rejected`]
//!   that still carries the [`Echo`] needed to answer it (RFC 3261 §8.2.6.2).
//! - [`parse_uri`], [`uri_equivalent`] (§19.1.4) and [`write_aor_key`] (§10.3 step 5).
//! - [`HeaderName`]: one table of names and compact forms (§7.3.3).
//! - [`ResponseWriter`]: status line, echoed headers with `received`/`rport`
//!   (§18.2.1, RFC 3581), Contact, Date (§20.17), Server, Content-Length.
//! - [`frame`]: where a message ends on a stream (TCP/TLS, RFC 3261 §18.3), for the
//!   transports to come; datagrams need none.
//! - [`limits`]: every bound the parser enforces.
#![forbid(unsafe_code)]

mod chars;
mod date;
mod error;
mod framing;
mod header_values;
pub mod limits;
mod lines;
mod message;
mod names;
mod parse;
mod uri;
mod write;

pub use date::{DATE_BYTES, write_date};
pub use error::{ParseError, UriError};
pub use framing::{Framed, FramingError, KEEPALIVE_PING, frame, frame_within, head_for_answer};
pub use header_values::HeaderParams;
pub use lines::{RawHeaders, is_keepalive};
pub use message::{
    CSeq, Contact, Contacts, Echo, Method, NameAddr, RawHeader, Rejected, Request, Transport, Via,
};
pub(crate) use names::word_at;
pub use names::{HEADER_NAMES, HeaderName};
pub use parse::parse_request;
pub use uri::{Scheme, Uri, UriParams, parse_uri, uri_equivalent, uri_match_key, write_aor_key};
pub use write::ResponseWriter;
