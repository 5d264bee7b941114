//! The header-name table: canonical names, compact forms, one place.
//!
//! RFC 3261 §7.3.1 makes header names case-insensitive and §7.3.3 gives some of them a
//! one-letter compact form (`v i m f t l k s c e`, plus later RFCs' `o u r b x`). Keeping
//! both in a single table ([`HEADER_NAMES`]) means the parser and the writer can never
//! disagree about a spelling. Lookup is bucketed by length and first letter at compile
//! time, so a name of up to 16 bytes costs two dependent table reads and one or two word
//! compares.

/// A header name the parser knows, or [`HeaderName::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderName {
    /// `Via` / `v` (RFC 3261 §20.42).
    Via,
    /// `From` / `f` (§20.20).
    From,
    /// `To` / `t` (§20.39).
    To,
    /// `Call-ID` / `i` (§20.8).
    CallId,
    /// `CSeq` (§20.16).
    CSeq,
    /// `Max-Forwards` (§20.22).
    MaxForwards,
    /// `Contact` / `m` (§20.10).
    Contact,
    /// `Expires` (§20.19).
    Expires,
    /// `Content-Length` / `l` (§20.14).
    ContentLength,
    /// `Content-Type` / `c` (§20.15).
    ContentType,
    /// `Content-Encoding` / `e` (§20.12).
    ContentEncoding,
    /// `Require` (§20.32).
    Require,
    /// `Proxy-Require` (§20.29).
    ProxyRequire,
    /// `Supported` / `k` (§20.37).
    Supported,
    /// `Unsupported` (§20.40).
    Unsupported,
    /// `Path` (RFC 3327).
    Path,
    /// `User-Agent` (§20.41).
    UserAgent,
    /// `Authorization` (§20.7).
    Authorization,
    /// `Proxy-Authorization` (§20.28).
    ProxyAuthorization,
    /// `Allow` (§20.5).
    Allow,
    /// `Accept` (§20.1).
    Accept,
    /// `Route` (§20.34).
    Route,
    /// `Record-Route` (§20.30).
    RecordRoute,
    /// `Date` (§20.17).
    Date,
    /// `Subject` / `s` (§20.36).
    Subject,
    /// `Event` / `o` (RFC 6665).
    Event,
    /// `Allow-Events` / `u` (RFC 6665).
    AllowEvents,
    /// `Refer-To` / `r` (RFC 3515).
    ReferTo,
    /// `Referred-By` / `b` (RFC 3892).
    ReferredBy,
    /// `Session-Expires` / `x` (RFC 4028).
    SessionExpires,
    /// `Timestamp` (§20.38).
    Timestamp,
    /// Any other name; the raw bytes are in [`RawHeader::name`](super::RawHeader::name).
    Other,
}

/// Every known header: canonical spelling (as the writer prints it) and compact form.
pub static HEADER_NAMES: [(HeaderName, &str, Option<u8>); 31] = [
    (HeaderName::Via, "Via", Some(b'v')),
    (HeaderName::From, "From", Some(b'f')),
    (HeaderName::To, "To", Some(b't')),
    (HeaderName::CallId, "Call-ID", Some(b'i')),
    (HeaderName::CSeq, "CSeq", None),
    (HeaderName::MaxForwards, "Max-Forwards", None),
    (HeaderName::Contact, "Contact", Some(b'm')),
    (HeaderName::Expires, "Expires", None),
    (HeaderName::ContentLength, "Content-Length", Some(b'l')),
    (HeaderName::ContentType, "Content-Type", Some(b'c')),
    (HeaderName::ContentEncoding, "Content-Encoding", Some(b'e')),
    (HeaderName::Require, "Require", None),
    (HeaderName::ProxyRequire, "Proxy-Require", None),
    (HeaderName::Supported, "Supported", Some(b'k')),
    (HeaderName::Unsupported, "Unsupported", None),
    (HeaderName::Path, "Path", None),
    (HeaderName::UserAgent, "User-Agent", None),
    (HeaderName::Authorization, "Authorization", None),
    (HeaderName::ProxyAuthorization, "Proxy-Authorization", None),
    (HeaderName::Allow, "Allow", None),
    (HeaderName::Accept, "Accept", None),
    (HeaderName::Route, "Route", None),
    (HeaderName::RecordRoute, "Record-Route", None),
    (HeaderName::Date, "Date", None),
    (HeaderName::Subject, "Subject", Some(b's')),
    (HeaderName::Event, "Event", Some(b'o')),
    (HeaderName::AllowEvents, "Allow-Events", Some(b'u')),
    (HeaderName::ReferTo, "Refer-To", Some(b'r')),
    (HeaderName::ReferredBy, "Referred-By", Some(b'b')),
    (HeaderName::SessionExpires, "Session-Expires", Some(b'x')),
    (HeaderName::Timestamp, "Timestamp", None),
];

/// Longest name the word-wise lookup reads (two little-endian words). The one longer
/// name, `Proxy-Authorization`, is compared whole by [`HeaderName::from_bytes`].
const PREFIX_BYTES_MAX: usize = 16;
/// Names sharing a length and first letter (`Call-ID` and `Contact` are the only pair).
const CANDIDATES: usize = 2;
const NONE: u8 = u8::MAX;

/// `length * 26 + first letter` (lower-cased) → indices into [`HEADER_NAMES`] of the
/// names of up to [`PREFIX_BYTES_MAX`] bytes with that length and first letter, built at
/// compile time: one flat index, one bounds check per lookup.
static BY_LEN_AND_FIRST: [[u8; CANDIDATES]; (PREFIX_BYTES_MAX + 1) * 26] = {
    let mut map = [[NONE; CANDIDATES]; (PREFIX_BYTES_MAX + 1) * 26];
    let mut i = 0;
    while i < HEADER_NAMES.len() {
        let name = HEADER_NAMES[i].1.as_bytes();
        if name.len() <= PREFIX_BYTES_MAX {
            let slot = &mut map[name.len() * 26 + (name[0].to_ascii_lowercase() - b'a') as usize];
            let mut j = 0;
            while slot[j] != NONE {
                j += 1; // Overflowing CANDIDATES fails the build.
            }
            slot[j] = i as u8;
        }
        i += 1;
    }
    map
};

/// One entry of [`FOLDED_WORDS`]: the first 16 bytes of a name as little-endian words,
/// lower-cased, with a mask that is `0x20` on letters (bytes past the name are zero in
/// both), and the name itself, so a match needs no further table read. A byte `b`
/// matches its position ignoring ASCII case exactly when `b | mask == lower`: on a letter
/// the mask folds case, elsewhere the byte must be equal.
#[derive(Clone, Copy)]
struct FoldedWords {
    lower: [u64; 2],
    mask: [u64; 2],
    kind: HeaderName,
}

/// [`FoldedWords`] of each entry of [`HEADER_NAMES`], for [`from_prefix_words`].
static FOLDED_WORDS: [FoldedWords; HEADER_NAMES.len()] = {
    let mut words = [FoldedWords {
        lower: [0; 2],
        mask: [0; 2],
        kind: HeaderName::Other,
    }; HEADER_NAMES.len()];
    let mut i = 0;
    while i < HEADER_NAMES.len() {
        let name = HEADER_NAMES[i].1.as_bytes();
        let mut k = 0;
        while k < name.len() && k < PREFIX_BYTES_MAX {
            let shift = 8 * (k % 8);
            let mask: u64 = if name[k].is_ascii_alphabetic() {
                0x20
            } else {
                0
            };
            words[i].lower[k / 8] |= (name[k].to_ascii_lowercase() as u64) << shift;
            words[i].mask[k / 8] |= mask << shift;
            k += 1;
        }
        words[i].kind = HEADER_NAMES[i].0;
        i += 1;
    }
    words
};

/// Per name length (0..=16): the masks keeping the first `len` bytes of a line's two
/// leading words, so [`from_prefix_words`] reads them instead of computing shifts.
static KEEP: [[u64; 2]; PREFIX_BYTES_MAX + 1] = {
    const fn keep(bytes: usize) -> u64 {
        if bytes >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * bytes)) - 1
        }
    }
    let mut masks = [[0u64; 2]; PREFIX_BYTES_MAX + 1];
    let mut len = 0;
    while len <= PREFIX_BYTES_MAX {
        masks[len] = [keep(len), keep(len.saturating_sub(8))];
        len += 1;
    }
    masks
};

/// Looks up a header name of `len` bytes (1..=16) given the first 16 bytes of its line as
/// two little-endian words (whatever follows the name is masked off): two dependent table reads
/// and one or two word compares, no byte loop.
#[inline]
pub(crate) fn from_prefix_words(len: usize, w0: u64, w1: u64) -> HeaderName {
    let letter = usize::from((w0 as u8 | 0x20).wrapping_sub(b'a'));
    if letter >= 26 {
        return HeaderName::Other;
    }
    if len == 1 {
        return BY_COMPACT_KIND
            .get(letter)
            .copied()
            .unwrap_or(HeaderName::Other);
    }
    // Length 0 has no candidates; longer than 16 has no masks.
    let Some(&[k0, k1]) = KEEP.get(len) else {
        return HeaderName::Other;
    };
    let (a, b) = (w0 & k0, w1 & k1);
    let candidates = BY_LEN_AND_FIRST
        .get(len * 26 + letter)
        .copied()
        .unwrap_or([NONE; CANDIDATES]);
    let matching = |i: u8| {
        FOLDED_WORDS
            .get(usize::from(i))
            .filter(|f| a | f.mask[0] == f.lower[0] && b | f.mask[1] == f.lower[1])
            .map(|f| f.kind)
    };
    let [c0, c1] = candidates;
    matching(c0)
        .or_else(|| matching(c1))
        .unwrap_or(HeaderName::Other)
}

/// The little-endian word of `s[k..k + 8]`, zero-padded past the end of `s`.
#[inline]
pub(crate) fn word_at(s: &[u8], k: usize) -> u64 {
    match s.get(k..k.wrapping_add(8)) {
        Some(w) => <[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes),
        // Fewer than eight bytes left: two overlapping loads of the widest size that fits
        // (the overlap holds the same bytes in both, so OR-ing them is exact).
        None => {
            let t = s.get(k..).unwrap_or_default();
            let n = t.len();
            let at = |i: usize| u64::from(t.get(i).copied().unwrap_or(0));
            let le =
                |i: usize, width: usize| (0..width).fold(0u64, |w, j| w | at(i + j) << (8 * j));
            match n {
                4..=7 => le(0, 4) | le(n - 4, 4) << (8 * (n - 4)),
                2..=3 => le(0, 2) | le(n - 2, 2) << (8 * (n - 2)),
                1 => at(0),
                _ => 0,
            }
        }
    }
}

/// For each lower-case letter, the header whose compact form it is.
static BY_COMPACT_KIND: [HeaderName; 26] = {
    let mut map = [HeaderName::Other; 26];
    let mut i = 0;
    while i < HEADER_NAMES.len() {
        if let Some(c) = HEADER_NAMES[i].2 {
            assert!(
                matches!(map[(c - b'a') as usize], HeaderName::Other),
                "compact form used twice"
            );
            map[(c - b'a') as usize] = HEADER_NAMES[i].0;
        }
        i += 1;
    }
    map
};

impl HeaderName {
    /// Looks a header name up, ignoring ASCII case and accepting compact forms.
    pub fn from_bytes(name: &[u8]) -> Self {
        if name.len() <= PREFIX_BYTES_MAX {
            return from_prefix_words(name.len(), word_at(name, 0), word_at(name, 8));
        }
        // Longer names are rare (`Proxy-Authorization` is the only one in the table) and
        // have no compact form: compared with the table's spelling directly.
        HEADER_NAMES
            .iter()
            .find(|e| e.1.as_bytes().eq_ignore_ascii_case(name))
            .map_or(Self::Other, |e| e.0)
    }

    /// The canonical spelling, or `None` for [`HeaderName::Other`].
    pub fn as_str(self) -> Option<&'static str> {
        HEADER_NAMES.iter().find(|e| e.0 == self).map(|e| e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_any_case() {
        assert_eq!(HeaderName::from_bytes(b"ViA"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(
            HeaderName::from_bytes(b"MAX-FORWARDS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"cseq"), HeaderName::CSeq);
        assert_eq!(
            HeaderName::from_bytes(b"Proxy-Require"),
            HeaderName::ProxyRequire
        );
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"Contacts"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"-x"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"Contact"), HeaderName::Contact);
        assert_eq!(HeaderName::from_bytes(b"CALL-ID"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"Call\rID"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"V@a"), HeaderName::Other);
        assert_eq!(
            HeaderName::from_bytes(b"Proxy-Authorization-X"),
            HeaderName::Other
        );
    }

    #[test]
    fn compact_forms() {
        for (c, h) in [
            (b"v", HeaderName::Via),
            (b"I", HeaderName::CallId),
            (b"m", HeaderName::Contact),
            (b"f", HeaderName::From),
            (b"T", HeaderName::To),
            (b"l", HeaderName::ContentLength),
            (b"k", HeaderName::Supported),
            (b"s", HeaderName::Subject),
            (b"c", HeaderName::ContentType),
            (b"e", HeaderName::ContentEncoding),
            (b"q", HeaderName::Other),
        ] {
            assert_eq!(HeaderName::from_bytes(c), h, "{}", c[0] as char);
        }
    }

    #[test]
    fn prefix_words_ignore_what_follows_the_name() {
        for (h, name, _) in &HEADER_NAMES {
            let line = format!("{name}: value and more");
            let b = line.as_bytes();
            if name.len() <= 16 {
                assert_eq!(
                    from_prefix_words(name.len(), word_at(b, 0), word_at(b, 8)),
                    *h
                );
            }
        }
        assert_eq!(
            from_prefix_words(0, word_at(b"v: x", 0), 0),
            HeaderName::Other
        );
        assert_eq!(from_prefix_words(17, u64::from(b'v'), 0), HeaderName::Other);
        assert_eq!(
            from_prefix_words(2, word_at(b"Tx: x", 0), 0),
            HeaderName::Other
        );
    }

    #[test]
    fn word_at_pads_with_zeros() {
        let s = b"abcdefghijk";
        for k in 0..=s.len() + 1 {
            let mut w = [0u8; 8];
            for (d, b) in w.iter_mut().zip(s.get(k..).unwrap_or_default()) {
                *d = *b;
            }
            assert_eq!(word_at(s, k), u64::from_le_bytes(w), "at {k}");
        }
    }

    #[test]
    fn every_entry_round_trips() {
        for (h, name, _) in &HEADER_NAMES {
            assert_eq!(HeaderName::from_bytes(name.as_bytes()), *h);
            assert_eq!(h.as_str(), Some(*name));
        }
    }
}
