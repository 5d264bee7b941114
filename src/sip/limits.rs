//! Named limits on what one datagram may carry.
//!
//! Every bound the parser enforces lives here, with its unit last, so that the memory a
//! request can cost is visible in one place (STYLE §8.8). The stack buffers in
//! [`parse`](super::parse) are sized by these constants; exceeding one is a 400 whose
//! reason phrase names the limit, never a truncation.

/// Largest datagram accepted, in bytes. RFC 3261 §18.1.1 lets UDP messages grow to the
/// path MTU and beyond; 16 KiB covers every REGISTER seen in practice with room for Path.
pub const DATAGRAM_BYTES_MAX: usize = 16_384;

/// Header lines (after unfolding) per message. RFC 4475 `longreq` has about 50.
pub const HEADERS_PER_MESSAGE_MAX: usize = 96;

/// Contact values (comma-separated entries across all Contact headers) per message.
pub const CONTACTS_PER_MESSAGE_MAX: usize = 32;

/// Via header lines per message (each line may hold several via-parms; only the first
/// via-parm of the first line is parsed, the rest is echoed raw). `longreq` has 35.
pub const VIAS_PER_MESSAGE_MAX: usize = 64;

/// Path values (RFC 3327) per message, across all Path headers.
pub const PATH_VALUES_MAX: usize = 16;

/// Option tags per list (Require, Proxy-Require and Supported each get this many).
pub const OPTION_TAGS_MAX: usize = 32;

/// Longest Call-ID, in bytes (OpenSIPS uses the same 255).
pub const CALL_ID_BYTES_MAX: usize = 255;

/// Longest Contact URI, in bytes (Kamailio's usrloc column width is 512).
pub const CONTACT_URI_BYTES_MAX: usize = 512;

/// Longest header (name, colon and value, folded lines included), in bytes.
pub const HEADER_LINE_BYTES_MAX: usize = 4_096;

/// Largest SIP message on a stream (TCP, TLS), header section and body, in bytes: a
/// datagram's bound, so that a message framed off a stream (`framing`) is one the
/// parser takes, and a connection buffers at most this much for one message.
pub const STREAM_MESSAGE_BYTES_MAX: usize = DATAGRAM_BYTES_MAX;

/// Largest header section on a stream (start line to the empty line, inclusive), in
/// bytes. Separate from the message bound because it is checked before the
/// Content-Length is known: a peer that never sends the empty line is refused once
/// this many bytes are buffered. As large as a message, since a datagram's headers may
/// fill the datagram.
pub const HEADER_SECTION_BYTES_MAX: usize = STREAM_MESSAGE_BYTES_MAX;

const _: () = assert!(HEADER_LINE_BYTES_MAX <= DATAGRAM_BYTES_MAX);
const _: () = assert!(STREAM_MESSAGE_BYTES_MAX <= DATAGRAM_BYTES_MAX);
const _: () = assert!(HEADER_LINE_BYTES_MAX <= HEADER_SECTION_BYTES_MAX);
const _: () = assert!(HEADER_SECTION_BYTES_MAX <= STREAM_MESSAGE_BYTES_MAX);
// The parser records header positions as `u16` offsets.
const _: () = assert!(DATAGRAM_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(CONTACT_URI_BYTES_MAX < HEADER_LINE_BYTES_MAX);
const _: () = assert!(CALL_ID_BYTES_MAX < HEADER_LINE_BYTES_MAX);
const _: () = assert!(VIAS_PER_MESSAGE_MAX <= HEADERS_PER_MESSAGE_MAX);
