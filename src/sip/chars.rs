//! Byte classes of the RFC 3261 §25 grammar as `static [bool; 256]` tables.
//!
//! A table lookup per byte is both the fastest and the most auditable way to check a
//! grammar class: each table quotes its ABNF, and the parser never hand-rolls a
//! `matches!` that could drift from it (httparse does the same).

/// Builds a 256-entry table that is `true` for every byte matched by the closure-like
/// predicate `|b| expr`.
macro_rules! byte_map {
    (|$b:ident| $e:expr) => {{
        let mut map = [false; 256];
        let mut i = 0usize;
        while i < 256 {
            let $b = i as u8;
            map[i] = $e;
            i += 1;
        }
        map
    }};
}

const fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"`,
/// `unreserved = alphanum / mark`.
const fn is_unreserved(b: u8) -> bool {
    is_alnum(b)
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")`
pub(crate) static TOKEN: [bool; 256] = byte_map!(|b| is_token(b));

const fn is_token(b: u8) -> bool {
    is_alnum(b)
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// `word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
///  "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")`
/// (the Call-ID alphabet, `callid = word [ "@" word ]`).
pub(crate) static WORD: [bool; 256] = byte_map!(|b| is_token(b)
    || matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'{' | b'}'
    ));

/// `user = 1*( unreserved / escaped / user-unreserved )`,
/// `user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"` (`%` starts an escape,
/// checked separately).
pub(crate) static USER: [bool; 256] = byte_map!(|b| is_unreserved(b)
    || matches!(
        b,
        b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
    ));

/// [`USER`] without `%`: a span of these needs no escape check.
pub(crate) static USER_PLAIN: [bool; 256] = byte_map!(|b| b != b'%' && USER[b as usize]);

/// `password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )`
pub(crate) static PASSWORD: [bool; 256] =
    byte_map!(|b| is_unreserved(b) || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b','));

/// `hostname = *( domainlabel "." ) toplabel [ "." ]`, `domainlabel = alphanum /
/// alphanum *( alphanum / "-" ) alphanum`; IPv4 digits and dots are a subset. Label
/// structure is not checked: a DNS lookup is not our business, only the alphabet is.
pub(crate) static HOST: [bool; 256] = byte_map!(|b| is_alnum(b) || b == b'-' || b == b'.');

/// `WSP = SP / HTAB`
pub(crate) static WSP: [bool; 256] = byte_map!(|b| b == b' ' || b == b'\t');

/// `DIGIT`
pub(crate) static DIGIT: [bool; 256] = byte_map!(|b| b.is_ascii_digit());

/// Inside `IPv6reference = "[" IPv6address "]"`: `HEXDIG / ":" / "."`.
pub(crate) static IPV6: [bool; 256] =
    byte_map!(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');

/// `uri-parameters = *( ";" uri-parameter)`, `pname/pvalue = 1*paramchar`,
/// `paramchar = param-unreserved / unreserved / escaped`,
/// `param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"`, plus the `;` and `=`
/// separators.
pub(crate) static URI_PARAM: [bool; 256] = byte_map!(|b| is_unreserved(b)
    || matches!(
        b,
        b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b';' | b'='
    ));

/// [`URI_PARAM`] without `%`: a span of these needs no escape check.
pub(crate) static URI_PARAM_PLAIN: [bool; 256] = byte_map!(|b| b != b'%' && URI_PARAM[b as usize]);

/// `headers = "?" header *( "&" header )`, `hname/hvalue = *( hnv-unreserved /
/// unreserved / escaped )`, `hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"`,
/// plus the `&` and `=` separators.
pub(crate) static URI_HEADER: [bool; 256] = byte_map!(|b| is_unreserved(b)
    || matches!(
        b,
        b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'&' | b'='
    ));

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (the first byte is checked as
/// ALPHA separately).
pub(crate) static SCHEME: [bool; 256] =
    byte_map!(|b| is_alnum(b) || matches!(b, b'+' | b'-' | b'.'));

/// Characters of an opaque non-SIP URI (`absoluteURI`, RFC 2396): `uric` and `/`, i.e.
/// every visible ASCII byte except the delimiters `<>"` and `{}|\^[]` that RFC 2396 §2.4.3
/// excludes, apart from `[` `]` for IPv6 literals.
pub(crate) static OPAQUE: [bool; 256] = byte_map!(|b| b > 0x20
    && b < 0x7f
    && !matches!(
        b,
        b'<' | b'>' | b'"' | b'{' | b'}' | b'|' | b'\\' | b'^' | b'`'
    ));

/// Linear white space inside a header value: `SP / HTAB`, plus the CR and LF that a
/// folded line (RFC 3261 §7.3.1, `LWS = [*WSP CRLF] 1*WSP`) leaves in the raw value.
pub(crate) static LWS: [bool; 256] = byte_map!(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));

/// The value of one hex digit, if it is one.
pub(crate) const fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when every byte of `s` is in `class` and every `%` starts a valid
/// `escaped = "%" HEXDIG HEXDIG` (`class` must contain `%` for escapes to be allowed).
pub(crate) fn valid_escaped(s: &[u8], class: &[bool; 256]) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if !class[usize::from(b)] {
            return false;
        }
        if b == b'%' {
            let ok = matches!(
                (s.get(i + 1), s.get(i + 2)),
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit()
            );
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// True when every byte of `s` is in `class`.
#[inline]
pub(crate) fn all_in(s: &[u8], class: &[bool; 256]) -> bool {
    span(s, 0, class) == s.len()
}

/// `0x01` in every byte of a word.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;

/// Flags (with its `0x80` bit) each byte of `w` that equals `needle`. Only the lowest flag
/// is exact: the borrow out of a match can also flag a `needle ^ 1` byte above it, so a
/// caller takes `trailing_zeros` of the result and nothing else.
#[inline(always)]
pub(crate) const fn first_byte_mask(w: u64, needle: u8) -> u64 {
    let x = w ^ (ONES * needle as u64);
    x.wrapping_sub(ONES) & !x & (ONES << 7)
}

/// Position of `needle` in `s`: a word-at-a-time scan for the short fields of a SIP
/// message, where `memchr`'s vector set-up costs more than it saves, `memchr` beyond that.
#[inline]
pub(crate) fn find(needle: u8, s: &[u8]) -> Option<usize> {
    if s.len() >= 64 {
        return memchr::memchr(needle, s);
    }
    let mut i = 0usize;
    while let Some(w) = s.get(i..i.wrapping_add(8)) {
        let m = first_byte_mask(<[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes), needle);
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    s.get(i..)?.iter().position(|&b| b == needle).map(|k| i + k)
}

/// Index of the first byte at or after `i` that is not LWS.
#[inline]
pub(crate) fn skip_lws(s: &[u8], i: usize) -> usize {
    // Usually there is none: one compare (every LWS byte is at most SP), the table and
    // the loop only when there may be some.
    match s.get(i) {
        Some(&b) if b <= b' ' && LWS[usize::from(b)] => skip_lws_loop(s, i + 1),
        _ => i,
    }
}

fn skip_lws_loop(s: &[u8], mut i: usize) -> usize {
    while let Some(&b) = s.get(i) {
        if !LWS[usize::from(b)] {
            break;
        }
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is not in `class`.
#[inline(always)]
pub(crate) fn span(s: &[u8], mut i: usize, class: &[bool; 256]) -> usize {
    // Eight bytes per bounds check: spans are mostly a few to a few dozen bytes, and the
    // eight lookups of a chunk are independent loads the CPU runs in parallel.
    while let Some(chunk) = s.get(i..i.wrapping_add(8)) {
        // Always eight bytes; were it not, the byte loop below would read them.
        let Ok(w) = <&[u8; 8]>::try_from(chunk) else {
            break;
        };
        for (k, &b) in w.iter().enumerate() {
            if !class[usize::from(b)] {
                return i + k;
            }
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        if !class[usize::from(b)] {
            break;
        }
        i += 1;
    }
    i
}

/// `s` without leading and trailing LWS.
#[inline]
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    // Nearly every header value is `": " value`: one space to drop, none at the end.
    let start = usize::from(s.first() == Some(&b' '));
    let lws = |b: Option<&u8>| b.is_some_and(|&b| LWS[usize::from(b)]);
    if !lws(s.get(start)) && !lws(s.last()) {
        return s.get(start..).unwrap_or_default();
    }
    let start = skip_lws(s, 0);
    let mut end = s.len();
    while end > start && s.get(end - 1).is_some_and(|&b| LWS[usize::from(b)]) {
        end -= 1;
    }
    s.get(start..end).unwrap_or_default()
}

/// Where [`digit_run`] stops counting: one past `u32::MAX`, so any larger run reads as
/// "too large for a `u32`".
const DIGIT_RUN_CEILING: u64 = 1 << 32;

/// Digits a `u64` always holds (10^19 - 1 < 2^64).
const DIGITS_IN_U64: usize = 19;

/// The run of `DIGIT`s at `i`: `(value, end of the run)`, the value clamped at
/// [`DIGIT_RUN_CEILING`] (leading zeros are fine). The one digit loop every number of a
/// SIP message goes through.
#[inline(always)]
pub(crate) fn digit_run(s: &[u8], i: usize) -> (u64, usize) {
    let mut v: u64 = 0;
    let mut j = i;
    while let Some(&b) = s.get(j) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        // Exact while the run is at most `DIGITS_IN_U64` long; a longer one is read again.
        v = v.wrapping_mul(10).wrapping_add(u64::from(d));
        j += 1;
    }
    if j - i > DIGITS_IN_U64 {
        // RFC 4475 scalar02 territory, or a long run of leading zeros.
        v = s.get(i..j).unwrap_or_default().iter().fold(0, |v, &b| {
            (v * 10 + u64::from(b - b'0')).min(DIGIT_RUN_CEILING)
        });
    }
    (v.min(DIGIT_RUN_CEILING), j)
}

/// The value of `s` when it is exactly `1*DIGIT`, clamped at [`DIGIT_RUN_CEILING`].
#[inline(always)]
fn digits(s: &[u8]) -> Option<u64> {
    let (v, end) = digit_run(s, 0);
    (end == s.len() && end > 0).then_some(v)
}

/// Parses `1*DIGIT` saturating at `u32::MAX`; `None` when empty or not all digits
/// (RFC 4475 scalar02: an absurd Expires is a large one, not a malformed one).
#[inline]
pub(crate) fn digits_saturating(s: &[u8]) -> Option<u32> {
    digits(s).map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// Parses `1*DIGIT` into a `u32`; `None` when empty, not all digits, or too large.
#[inline(always)]
pub(crate) fn digits_u32(s: &[u8]) -> Option<u32> {
    digits(s).and_then(|v| u32::try_from(v).ok())
}

/// Parses a port (`1*DIGIT` fitting a `u16`).
#[inline]
pub(crate) fn digits_u16(s: &[u8]) -> Option<u16> {
    digits(s).and_then(|v| u16::try_from(v).ok())
}

/// The port (`1*DIGIT` fitting a `u16`) at `i`, and the end of its digit run: what
/// `digits_u16` gives on `span(s, i, &DIGIT)`, in one pass over the digits instead of two.
/// `None` when the run is empty or its value is too large.
#[inline]
pub(crate) fn port_at(s: &[u8], i: usize) -> (Option<u16>, usize) {
    let (v, end) = digit_run(s, i);
    let port = if end > i { u16::try_from(v).ok() } else { None };
    (port, end)
}

/// A searcher for the first of two bytes, for the short runs of a SIP message (a header
/// line, a quoted string: a few dozen bytes), where `memchr::memchr2`'s run-time dispatch
/// and AVX2 set-up cost about as much as the search. On x86_64 the SSE2 searcher (always
/// available there) is built inline instead; `memchr2` elsewhere.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Find2 {
    a: u8,
    b: u8,
    #[cfg(target_arch = "x86_64")]
    sse2: Option<memchr::arch::x86_64::sse2::memchr::Two>,
}

impl Find2 {
    #[inline]
    pub(crate) fn new(a: u8, b: u8) -> Self {
        Self {
            a,
            b,
            #[cfg(target_arch = "x86_64")]
            sse2: memchr::arch::x86_64::sse2::memchr::Two::new(a, b),
        }
    }

    /// Index of the first `a` or `b` in `s`.
    #[inline]
    pub(crate) fn find(&self, s: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(two) = &self.sse2 {
            return two.find(s);
        }
        memchr::memchr2(self.a, self.b, s)
    }
}

/// End (exclusive) of the `quoted-string` whose opening `"` is at `start`:
/// `quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE`,
/// `quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)`. `None` when unterminated or when a
/// quoted-pair escapes CR or LF.
pub(crate) fn quoted_end(s: &[u8], start: usize) -> Option<usize> {
    let quote_or_escape = Find2::new(b'"', b'\\');
    let mut i = start + 1;
    loop {
        let off = quote_or_escape.find(s.get(i..)?)?;
        let at = i + off;
        if s.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
        match s.get(at + 1) {
            Some(b'\r' | b'\n') | None => return None,
            Some(_) => i = at + 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_lws_drops_every_kind_of_lws_on_both_ends() {
        let cases: [(&[u8], &[u8]); 9] = [
            (b"", b""),
            (b" ", b""),
            (b" a", b"a"),
            (b"a", b"a"),
            (b" a ", b"a"),
            (b"  a", b"a"),
            (b" \r\n x", b"x"),
            (b" x\r\n", b"x"),
            (b"\tx y\t", b"x y"),
        ];
        for (s, want) in cases {
            assert_eq!(trim_lws(s), want, "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn token_table_matches_abnf() {
        for b in b"aZ09-.!%*_+`'~" {
            assert!(TOKEN[usize::from(*b)], "{}", *b as char);
        }
        for b in b" \t:;,<>\"@/()=?" {
            assert!(!TOKEN[usize::from(*b)], "{}", *b as char);
        }
        assert!(WORD[usize::from(b'/')] && WORD[usize::from(b'"')] && !WORD[usize::from(b'@')]);
    }

    #[test]
    fn escapes() {
        assert!(valid_escaped(b"a%00b%7e", &USER));
        assert!(!valid_escaped(b"%Z1", &USER));
        assert!(!valid_escaped(b"ab%4", &USER));
        assert!(!valid_escaped(b"a b", &USER));
        assert!(!valid_escaped(b"a%20", &HOST));
    }

    #[test]
    fn find_short_and_long() {
        assert_eq!(find(b'@', b"a@b"), Some(1));
        let long = [b"x".repeat(100), b"@".to_vec()].concat();
        assert_eq!(find(b'@', &long), Some(100));
        assert_eq!(find(b'@', b"ab"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(digits_saturating(b"0068"), Some(68));
        assert_eq!(digits_saturating(b"99999999999999"), Some(u32::MAX));
        assert_eq!(digits_saturating(b"-1"), None);
        assert_eq!(digits_u32(b"4294967296"), None);
        assert_eq!(digits_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(digits_u16(b"65536"), None);
        // Runs longer than a u64 holds: read again, clamped, leading zeros still fine.
        assert_eq!(digits_u32(b"0000000000000000000004096"), Some(4096));
        assert_eq!(
            digits_saturating(b"184467440737095516161234"),
            Some(u32::MAX)
        );
        assert_eq!(digits_u32(b"184467440737095516161234"), None);
        assert_eq!(digits_u32(b""), None);
        assert_eq!(digits_u32(b"12 "), None);
        assert_eq!(digit_run(b"x5060;", 1), (5060, 5));
        assert_eq!(
            digit_run(b"99999999999999999999", 0),
            (DIGIT_RUN_CEILING, 20)
        );
    }

    #[test]
    fn port_at_agrees_with_span_and_digits_u16() {
        let inputs = [
            "",
            "x",
            "0",
            "5060",
            "5060>",
            "65535;",
            "65536",
            "99999999999999999999",
            "007",
            "12a",
            ":1",
            "6553",
            "0000000000000065535",
            "000000000000000000065535",
        ];
        for s in inputs {
            let s = s.as_bytes();
            for i in 0..=s.len() {
                let end = span(s, i, &DIGIT);
                let slow = digits_u16(&s[i..end]);
                assert_eq!(port_at(s, i), (slow, end), "{:?} at {i}", s);
            }
        }
    }

    #[test]
    fn quoted() {
        assert_eq!(quoted_end(br#""a\"b" x"#, 0), Some(6));
        assert_eq!(quoted_end(br#""a\\" x"#, 0), Some(5));
        assert_eq!(quoted_end(br#""abc"#, 0), None);
    }
}
