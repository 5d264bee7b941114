//! The steering decision in plain Rust, written to follow the eBPF program
//! ([`super::program`]) step by step: same cursor, same byte budget, same byte classes,
//! same order of checks. It is what the tests and the fuzzer compare with the registrar's
//! own routing ([`crate::registrar::support::route`], the decision `Registrar::prepare` makes), and what the kernel test compares with the
//! socket the kernel really picked.
//!
//! The program recognises only the common shapes of the partition key's URI (see
//! [`crate::placement`]) and says "no choice" (`None`) for everything else: an escape
//! (`%`), a password, no user part, a folded or empty To, a quoted display name with a
//! backslash, a non-SIP scheme, a lower-case or unknown method byte, a datagram shorter
//! than [`STEER_CHUNK_BYTES`] or longer than `DATAGRAM_BYTES_MAX`, a phase (method,
//! headers, To value, user, host) that starts within the datagram's last 64 bytes or
//! runs past its own budget (all of them together: [`STEER_SCAN_BYTES_MAX`]). The
//! registrar keeps answering correctly whatever this says: it is the speed that
//! depends on it. "No choice" lets the kernel use its 4-tuple hash; the
//! receiving core then forwards over the mesh as it does without steering.
//!
//! The contract (tested): whenever the registrar's parser accepts a request and this
//! returns `Some(i)`, `i` is the owner shard. A request the parser refuses is keyed by
//! its Call-ID (or dropped); the program cannot validate a whole request, so it may steer
//! such a request to another core, which forwards it once: a cost, never a wrong answer.
#![forbid(unsafe_code)]

use crate::placement::{Fnv, fmix64};

/// Bytes the program copies from the datagram per refill of its stack buffer. Every
/// phase budget below is a multiple of it.
pub const STEER_CHUNK_BYTES: usize = 64;
/// Bytes read while reading the method (a method is a few letters).
pub const STEER_METHOD_BYTES_MAX: usize = 64;
/// Bytes read while looking for the To header (a REGISTER's To header is normally
/// within its first 600 bytes).
pub const STEER_HEADERS_BYTES_MAX: usize = 1024;
/// Bytes read while reading the To header's value up to its URI (display name).
pub const STEER_VALUE_BYTES_MAX: usize = 128;
/// Bytes read while reading a URI's scheme and user part, up to its `@` (the
/// Request-URI's scheme too).
pub const STEER_USER_BYTES_MAX: usize = 128;
/// Bytes read while reading a URI's host and what ends it.
pub const STEER_HOST_BYTES_MAX: usize = 128;
/// Bytes of one datagram the program reads, at most: every phase's budget together
/// (each phase has its own, so that the verifier sees every way into a phase as one
/// state; see `program`).
pub const STEER_SCAN_BYTES_MAX: usize = STEER_METHOD_BYTES_MAX
    + STEER_HEADERS_BYTES_MAX
    + STEER_VALUE_BYTES_MAX
    + STEER_USER_BYTES_MAX
    + STEER_HOST_BYTES_MAX;

/// One inclusive byte range of a character class.
pub type ByteRange = (u8, u8);

/// User-part bytes the program hashes: RFC 3261 `unreserved` and `user-unreserved`
/// without `%` (an escape needs decoding), `;` and `?` (they also end a user-less
/// Request-URI's host, so only the full parser can tell). A subset of the parser's
/// plain user alphabet, without `@`.
pub const USER_BYTES: &[ByteRange] = &[
    (b'0', b'9'),
    (b'A', b'Z'),
    (b'a', b'z'),
    (b'-', b'.'),
    (b'_', b'_'),
    (b'!', b'!'),
    (b'~', b'~'),
    (b'\'', b'+'), // ' ( ) * +
    (b'&', b'&'),
    (b'=', b'='),
    (b'$', b'$'),
    (b',', b','),
    (b'/', b'/'),
];

/// Host-name bytes: the parser's host alphabet exactly (`alphanum`, `-`, `.`).
pub const HOST_BYTES: &[ByteRange] = &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z'), (b'-', b'.')];

/// Bytes inside an IPv6 reference's brackets: `HEXDIG`, `:`, `.`.
pub const IPV6_BYTES: &[ByteRange] = &[(b'0', b':'), (b'A', b'F'), (b'a', b'f'), (b'.', b'.')];

/// Bytes of an unquoted display name (RFC 3261 `token` and the white space between
/// tokens), and of a To value's scheme before its `:`.
pub const DISPLAY_BYTES: &[ByteRange] = &[
    (b'0', b'9'),
    (b'A', b'Z'),
    (b'a', b'z'),
    (b'-', b'.'),
    (b'!', b'!'),
    (b'%', b'%'),
    (b'*', b'+'),
    (b'_', b'`'), // _ `
    (b'\'', b'\''),
    (b'~', b'~'),
    (b' ', b' '),
    (b'\t', b'\t'),
];

/// Method bytes: upper-case letters (a method in another case is not `REGISTER`, and the
/// parser's method table is case-sensitive).
pub const METHOD_BYTES: &[ByteRange] = &[(b'A', b'Z')];

/// `REGISTER` as the program accumulates a method: each byte shifted in from the right.
pub const REGISTER_WORD: u64 = u64::from_be_bytes(*b"REGISTER");
/// `sip` and `sips` as a To value's scheme accumulates (lower-cased bytes, from the right).
pub const SIP_WORD: u64 = 0x0073_6970;
/// See [`SIP_WORD`].
pub const SIPS_WORD: u64 = 0x7369_7073;

/// What ends the host of the URI being read, by where the URI is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriEnd {
    /// The Request-URI: `SP`, or a port, parameters or headers.
    RequestLine,
    /// `<...>` in the To header: `>`, or a port, parameters or headers.
    Bracketed,
    /// A bare To URI (`addr-spec`): a port, parameters, white space, or the line end
    /// when the next line is not a continuation.
    Bare,
}

/// Bytes ending a host, by [`UriEnd`] (the line end of a bare URI is checked apart).
pub fn host_ends(end: UriEnd) -> &'static [u8] {
    match end {
        UriEnd::RequestLine => b" ;:?",
        UriEnd::Bracketed => b">;:?",
        UriEnd::Bare => b" \t;:",
    }
}

/// Bit of [`CLASS_TABLE`]: in [`USER_BYTES`].
pub const CLASS_USER: u8 = 0x01;
/// Bit of [`CLASS_TABLE`]: in [`HOST_BYTES`].
pub const CLASS_HOST: u8 = 0x02;
/// Bit of [`CLASS_TABLE`]: in [`IPV6_BYTES`].
pub const CLASS_IPV6: u8 = 0x04;
/// Bit of [`CLASS_TABLE`]: in [`DISPLAY_BYTES`].
pub const CLASS_DISPLAY: u8 = 0x08;
/// Bit of [`CLASS_TABLE`]: in [`METHOD_BYTES`].
pub const CLASS_METHOD: u8 = 0x10;
/// Bit of [`CLASS_TABLE`]: SP or HTAB.
pub const CLASS_WS: u8 = 0x40;
/// Bit of [`CLASS_TABLE`]: `A..=Z`. It is the ASCII case bit, so `b | (class & CLASS_UPPER)`
/// lower-cases without a branch.
pub const CLASS_UPPER: u8 = 0x20;

/// Every byte's classes, one bit each. The program keeps this table on its stack and
/// looks bytes up in it: one load and one branch per class test, where comparing ranges
/// would branch once per range, and the verifier walks every branch of every byte.
pub const CLASS_TABLE: [u8; 256] = {
    const fn set(table: &mut [u8; 256], class: &[ByteRange], bit: u8) {
        let mut r = 0;
        while r < class.len() {
            let (lo, hi) = class[r];
            let mut b = lo as usize;
            while b <= hi as usize {
                table[b] |= bit;
                b += 1;
            }
            r += 1;
        }
    }
    let mut table = [0u8; 256];
    set(&mut table, USER_BYTES, CLASS_USER);
    set(&mut table, HOST_BYTES, CLASS_HOST);
    set(&mut table, IPV6_BYTES, CLASS_IPV6);
    set(&mut table, DISPLAY_BYTES, CLASS_DISPLAY);
    set(&mut table, METHOD_BYTES, CLASS_METHOD);
    set(&mut table, &[(b'A', b'Z')], CLASS_UPPER);
    set(&mut table, &[(b' ', b' '), (b'\t', b'\t')], CLASS_WS);
    table
};

/// True when `b` has `class` in [`CLASS_TABLE`].
pub fn in_class(b: u8, class: u8) -> bool {
    CLASS_TABLE[usize::from(b)] & class != 0
}

/// `b` lower-cased as the program does it: with the table's case bit.
pub fn lower(b: u8) -> u8 {
    b | (CLASS_TABLE[usize::from(b)] & CLASS_UPPER)
}

/// The program's view of the datagram: a 64-byte window refilled on demand, exactly as
/// the eBPF code keeps it (`base` in r7, `j` in r8, the phase's budget on the stack).
/// A refill copies a whole window or nothing (see `program` for why).
struct Cursor<'a> {
    bytes: &'a [u8],
    /// Datagram offset of the window's first byte (wrapping: it starts at -64).
    base: u64,
    /// Index of the next byte in the window; 64 means "empty".
    j: u64,
    /// Bytes this phase may still copy from the datagram.
    budget: u64,
}

impl<'a> Cursor<'a> {
    const CHUNK: u64 = STEER_CHUNK_BYTES as u64;

    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            base: 0u64.wrapping_sub(Self::CHUNK),
            j: Self::CHUNK,
            budget: STEER_METHOD_BYTES_MAX as u64,
        }
    }

    /// The next byte, refilling the window when it is used up; `None` when a whole
    /// window does not fit the rest of the datagram or of the phase's budget.
    fn next(&mut self) -> Option<u8> {
        if self.j >= Self::CHUNK {
            if self.budget < Self::CHUNK {
                return None;
            }
            self.budget -= Self::CHUNK;
            let pos = self.base.wrapping_add(self.j);
            if pos.checked_add(Self::CHUNK)? > self.bytes.len() as u64 {
                return None;
            }
            self.base = pos;
            self.j = 0;
        }
        let at = usize::try_from(self.base.wrapping_add(self.j)).ok()?;
        let b = *self.bytes.get(at)?;
        self.j += 1;
        Some(b)
    }

    /// Starts a phase that may read `budget` bytes: empties the window so that the next
    /// byte is read afresh. The program does this between phases so that the verifier
    /// sees one state per phase entry.
    fn rebase(&mut self, budget: usize) {
        self.budget = budget as u64;
        self.base = self.base.wrapping_add(self.j).wrapping_sub(Self::CHUNK);
        self.j = Self::CHUNK;
    }
}

/// The owner shard the steering program picks for `datagram` among `shards`, or `None`
/// for "no choice".
pub fn decide(datagram: &[u8], shards: usize) -> Option<usize> {
    let len = datagram.len();
    if !(STEER_CHUNK_BYTES..=crate::sip::limits::DATAGRAM_BYTES_MAX).contains(&len) || shards == 0 {
        return None;
    }
    let mut c = Cursor::new(datagram);
    // The method: upper-case letters up to the first SP, shifted into a word; a ninth
    // letter resets the word to 1, which no method of eight letters or fewer equals.
    let mut method: u64 = 0;
    loop {
        let b = c.next()?;
        if b == b' ' {
            break;
        }
        if !in_class(b, CLASS_METHOD) {
            return None;
        }
        if method >> 56 != 0 {
            method = 1;
        }
        method = (method << 8) | u64::from(b);
    }
    c.rebase(STEER_HEADERS_BYTES_MAX);
    let hash = if method == REGISTER_WORD {
        the_to_uri(&mut c)?
    } else {
        c.rebase(STEER_USER_BYTES_MAX);
        scheme(&mut c)?;
        uri(&mut c, UriEnd::RequestLine)?
    };
    Some((fmix64(hash) % shards as u64) as usize)
}

/// `sip:` or `sips:`, any case, right here.
fn scheme(c: &mut Cursor<'_>) -> Option<()> {
    let s = c.next()? | 0x20;
    let i = c.next()? | 0x20;
    let p = c.next()? | 0x20;
    if (s, i, p) != (b's', b'i', b'p') {
        return None;
    }
    match c.next()? {
        b':' => Some(()),
        b if b | 0x20 == b's' && c.next()? == b':' => Some(()),
        _ => None,
    }
}

/// Finds the To header (`To` or `t`, any case, at a line start, optional white space
/// before the colon) and hashes its URI's key.
fn the_to_uri(c: &mut Cursor<'_>) -> Option<u64> {
    // Scan to a line feed (a bare LF is a line end too, as in the parser).
    let mut b = c.next()?;
    'scan: loop {
        if b != b'\n' {
            b = c.next()?;
            continue;
        }
        // A line start: an empty line ends the headers without a To.
        b = c.next()?;
        if b == b'\r' || b == b'\n' {
            return None;
        }
        if b | 0x20 != b't' {
            continue 'scan;
        }
        b = c.next()?;
        if b | 0x20 == b'o' {
            b = c.next()?;
        } else if b != b':' && b != b' ' && b != b'\t' {
            continue 'scan;
        }
        loop {
            match b {
                b':' => break 'scan,
                b' ' | b'\t' => b = c.next()?,
                _ => continue 'scan,
            }
        }
    }
    c.rebase(STEER_VALUE_BYTES_MAX);
    // The value: white space, then a quoted display name, `<`, or a token run that is
    // either a display name (ended by `<`) or the scheme of a bare URI (ended by `:`).
    b = c.next()?;
    while b == b' ' || b == b'\t' {
        b = c.next()?;
    }
    if b == b'"' {
        loop {
            match c.next()? {
                b'"' => break,
                b'\\' | b'\r' | b'\n' => return None,
                _ => {}
            }
        }
        b = c.next()?;
        while b == b' ' || b == b'\t' {
            b = c.next()?;
        }
        if b != b'<' {
            return None;
        }
        return bracketed(c);
    }
    let mut word: u64 = 0;
    loop {
        match b {
            b'<' => return bracketed(c),
            b':' if word == SIP_WORD || word == SIPS_WORD => {
                c.rebase(STEER_USER_BYTES_MAX);
                return uri(c, UriEnd::Bare);
            }
            b':' => return None,
            _ => {
                // Shifted in before the class check, as the program does (the verifier
                // then sees an unknown byte, not one narrowed by the check).
                word = (word << 8) | u64::from(b | 0x20);
                if !in_class(b, CLASS_DISPLAY) {
                    return None;
                }
                b = c.next()?;
            }
        }
    }
}

/// A URI right after `<`.
fn bracketed(c: &mut Cursor<'_>) -> Option<u64> {
    c.rebase(STEER_USER_BYTES_MAX);
    scheme(c)?;
    uri(c, UriEnd::Bracketed)
}

/// Hashes `user@host` of the URI after its scheme ([`crate::placement`]'s key: the user
/// as is, the host lower-cased) and checks what ends the host.
fn uri(c: &mut Cursor<'_>, end: UriEnd) -> Option<u64> {
    let mut h = Fnv::new();
    let mut b = c.next()?;
    if !in_class(b, CLASS_USER) {
        return None;
    }
    while b != b'@' {
        if !in_class(b, CLASS_USER) {
            return None;
        }
        h.write_u8(b);
        b = c.next()?;
    }
    h.write_u8(b'@');
    c.rebase(STEER_HOST_BYTES_MAX);
    b = c.next()?;
    if b == b'[' {
        h.write_u8(b'[');
        b = c.next()?;
        if b == b']' {
            return None;
        }
        while b != b']' {
            if !in_class(b, CLASS_IPV6) {
                return None;
            }
            h.write_u8(lower(b));
            b = c.next()?;
        }
        h.write_u8(b']');
        b = c.next()?;
    } else {
        if !in_class(b, CLASS_HOST) {
            return None;
        }
        while in_class(b, CLASS_HOST) {
            h.write_u8(lower(b));
            b = c.next()?;
        }
    }
    if host_ends(end).contains(&b) {
        return Some(h.finish());
    }
    if end != UriEnd::Bare {
        return None;
    }
    // A bare URI may end its line, unless the next line continues it (a fold).
    if b == b'\r' {
        b = c.next()?;
        if b != b'\n' {
            return None;
        }
    }
    if b != b'\n' {
        return None;
    }
    match c.next()? {
        b' ' | b'\t' => None,
        _ => Some(h.finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{aor_hash, shard_for};

    fn register(to: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
             Max-Forwards: 70\r\n\
             {to}\r\n\
             From: <sip:alice@example.com>;tag=456248\r\n\
             Call-ID: 843817637684230@998sdasdh09\r\n\
             CSeq: 1826 REGISTER\r\n\
             Contact: <sip:alice@192.0.2.1>\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn owner(key: &str, shards: usize) -> Option<usize> {
        Some(shard_for(aor_hash(key.as_bytes()), shards))
    }

    #[test]
    fn the_class_table_is_the_range_lists() {
        for b in 0..=255u8 {
            let has = |class: &[ByteRange]| class.iter().any(|&(lo, hi)| (lo..=hi).contains(&b));
            assert_eq!(in_class(b, CLASS_USER), has(USER_BYTES), "{b}");
            assert_eq!(in_class(b, CLASS_HOST), has(HOST_BYTES), "{b}");
            assert_eq!(in_class(b, CLASS_IPV6), has(IPV6_BYTES), "{b}");
            assert_eq!(in_class(b, CLASS_DISPLAY), has(DISPLAY_BYTES), "{b}");
            assert_eq!(in_class(b, CLASS_METHOD), has(METHOD_BYTES), "{b}");
            assert_eq!(lower(b), b.to_ascii_lowercase(), "{b}");
        }
        // The user alphabet is within the parser's plain user bytes and has no `@`;
        // the host alphabet ends where the parser's does.
        assert!(!in_class(b'@', CLASS_USER) && !in_class(b'%', CLASS_USER));
        for &b in b" ;:?>\t" {
            assert!(!in_class(b, CLASS_HOST), "{b}");
        }
    }

    #[test]
    fn a_register_is_placed_by_its_to_aor() {
        for shards in [2, 3, 7] {
            for to in [
                "To: <sip:alice@example.com>",
                "To: <sip:alice@EXAMPLE.com:5060;transport=udp>",
                "t: <sip:alice@example.com>;tag=1",
                "TO  :   Alice <sip:alice@Example.COM>",
                "To: \"Al <ice>\" <sips:alice@example.com>",
                "To: sip:alice@example.com",
                "To: SIP:alice@example.com;tag=x",
            ] {
                assert_eq!(
                    decide(&register(to), shards),
                    owner("alice@example.com", shards),
                    "{to}"
                );
            }
        }
        assert_eq!(
            decide(&register("To: <sip:bob@[2001:DB8::1]>"), 5),
            owner("bob@[2001:db8::1]", 5)
        );
    }

    #[test]
    fn unusual_shapes_are_no_choice() {
        for to in [
            "To: <sip:al%69ce@example.com>",
            "To: <sip:example.com>",
            "To: <sip:alice:pw@example.com>",
            "To:\r\n <sip:alice@example.com>",
            "To: sip:alice@example\r\n .com",
            "To: \"a\\\"b\" <sip:alice@example.com>",
            "To: <tel:+15551234>",
            "To: <sip:alice@[]>",
            "X-To: <sip:alice@example.com>",
        ] {
            assert_eq!(decide(&register(to), 4), None, "{to}");
        }
        assert_eq!(decide(b"REGISTER sip:x SIP/2.0\r\n\r\n", 4), None);
        let mut long = b"REGISTER sip:example.com SIP/2.0\r\n".to_vec();
        while long.len() < STEER_SCAN_BYTES_MAX {
            long.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        long.extend_from_slice(&register("To: <sip:alice@example.com>")[34..]);
        assert_eq!(decide(&long, 4), None, "the budget ends the scan");
    }

    #[test]
    fn other_requests_are_placed_by_the_request_uri() {
        let msg = b"INVITE sip:Bob@Biloxi.COM:5060;transport=udp SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nTo: <sip:carol@example.com>\r\n\
            From: <sip:a@b>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\r\n";
        assert_eq!(decide(msg, 3), owner("Bob@biloxi.com", 3));
        let subscribe =
            b"SUBSCRIBE sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            Call-ID: 0123456789abcdef\r\n\r\n";
        assert_eq!(decide(subscribe, 3), owner("bob@biloxi.com", 3));
        let lower =
            b"register sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            Call-ID: 0123456789abcdef\r\n\r\n";
        assert_eq!(decide(lower, 3), None);
    }

    #[test]
    fn a_phase_needs_a_whole_window() {
        // The To URI followed by fewer than 64 bytes: no choice, not a misread.
        let head = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n";
        let mut short = head.to_vec();
        short.extend_from_slice(b"To: <sip:zed@example.org>\r\n\r\n");
        assert_eq!(decide(&short, 7), None);
        // With the usual headers after it, it is steered.
        let mut long = head.to_vec();
        long.extend_from_slice(
            b"To: <sip:zed@example.org>\r\nFrom: <sip:zed@example.org>;tag=1\r\n",
        );
        long.extend_from_slice(b"Call-ID: 1234567890@host\r\nCSeq: 1 REGISTER\r\n\r\n");
        assert_eq!(decide(&long, 7), owner("zed@example.org", 7));
    }
}
