//! The subscriber table: who may register, with the HA1 of each digest algorithm.
//!
//! Loaded once from the `--auth-file` text (the caller reads the file: this module does
//! no I/O) and swapped whole on SIGHUP behind an `Arc`, so a reload never blocks a
//! request. Only HA1 values are kept (RFC 7616 §3.4.2 `HA1 = H(user:realm:password)`),
//! never the plain password: a leaked memory image does not give the password away
//! (though an HA1 still authenticates in its realm).
//!
//! Case rules: the user part is case-sensitive (RFC 3261 §19.1.4 compares user parts
//! byte for byte), the realm/domain case-insensitive (stored lower-case; lookups fold
//! case into a stack buffer, so they never allocate).

use std::fmt;
use std::hash::Hash;

use hashbrown::{Equivalent, HashMap};

use super::algorithm::{Algorithm, HASH_HEX_LEN_MAX, hash_hex_joined, hex_digit};

/// Longest user name accepted, in bytes (also the parser bound for `username`).
pub const USERNAME_LEN_MAX: usize = 128;
/// Longest realm (domain) accepted, in bytes (a DNS name is at most 253 characters).
pub const REALM_LEN_MAX: usize = 255;

/// Why a subscriber file did not load: the 1-based line and what is wrong with it.
/// Displays as `line N: reason`; never contains the line's text (it may hold a password).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for LoadError {}

/// One subscriber's stored secrets: HA1 as lower-case hex for each algorithm it can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    md5: Option<[u8; 32]>,
    sha256: Option<[u8; 64]>,
}

impl Credentials {
    /// Computes both HA1 values from a plain password.
    pub fn from_password(user: &[u8], realm: &[u8], password: &[u8]) -> Self {
        fn ha1<const N: usize>(algo: Algorithm, parts: &[&[u8]]) -> [u8; N] {
            let mut buf = [0u8; HASH_HEX_LEN_MAX];
            let mut out = [0u8; N];
            for (o, &h) in out.iter_mut().zip(hash_hex_joined(algo, parts, &mut buf)) {
                *o = h;
            }
            out
        }
        let parts: [&[u8]; 3] = [user, realm, password];
        Self {
            md5: Some(ha1(Algorithm::Md5, &parts)),
            sha256: Some(ha1(Algorithm::Sha256, &parts)),
        }
    }

    /// HA1 of `algo` as lower-case hex, when this subscriber has one.
    pub fn ha1_hex(&self, algo: Algorithm) -> Option<&[u8]> {
        match algo {
            Algorithm::Md5 => self.md5.as_ref().map(|h| &h[..]),
            Algorithm::Sha256 => self.sha256.as_ref().map(|h| &h[..]),
        }
    }
}

/// Stored key: user (case kept) and realm (lower-case).
#[derive(Debug, PartialEq, Eq)]
struct Key {
    user: Box<[u8]>,
    realm: Box<[u8]>,
}

impl Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_key(&self.user, &self.realm, state);
    }
}

/// Borrowed lookup key (realm already lower-case), hashed exactly like [`Key`].
struct Query<'a> {
    user: &'a [u8],
    realm: &'a [u8],
}

impl Hash for Query<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_key(self.user, self.realm, state);
    }
}

impl Equivalent<Key> for Query<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *key.user == *self.user && *key.realm == *self.realm
    }
}

fn hash_key<H: std::hash::Hasher>(user: &[u8], realm: &[u8], state: &mut H) {
    user.hash(state);
    realm.hash(state);
}

/// The subscriber table, keyed by (user, realm).
#[derive(Debug, Default)]
pub struct Subscribers {
    map: HashMap<Key, Credentials>,
}

/// A byte that may appear in a subscriber's user name: printable ASCII or UTF-8, and
/// none of `"` and `\`, which would need quoting in `username="…"`.
fn user_byte_ok(b: u8) -> bool {
    b > 0x20 && b != 0x7f && b != b'"' && b != b'\\'
}

/// A byte that may appear in a realm (a domain name, RFC 3261 `hostname`, or an IP).
fn realm_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':')
}

fn parse_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if hex.len() != N {
        return None;
    }
    for (o, &c) in out.iter_mut().zip(hex) {
        hex_digit(c)?;
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

impl Subscribers {
    /// Parses the subscriber file text. One subscriber per line:
    ///
    /// - `user@domain password` (plain text; HA1 is computed for both algorithms, the
    ///   password is then dropped). The password is one whitespace-free word and must not
    ///   start with `md5=` or `sha256=`;
    /// - `user@domain md5=<32 hex> sha256=<64 hex>` (either or both, any order): stored
    ///   HA1 values, `H(user:domain:password)`. A subscriber without the HA1 of some
    ///   algorithm cannot authenticate with that algorithm.
    ///
    /// The user is everything before the last `@`. `#` starts a comment line; blank lines
    /// are skipped. A repeated `user@domain` (domain compared case-insensitively) is an
    /// error, as is any malformed line; the error names the 1-based line number and never
    /// quotes the line.
    pub fn parse(text: &str) -> Result<Self, LoadError> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |reason| LoadError {
                line: line_no,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let aor = words.next().unwrap_or_default().as_bytes();
            let at = aor
                .iter()
                .rposition(|&b| b == b'@')
                .ok_or(err("expected user@domain"))?;
            let (user, domain) = (
                aor.get(..at).unwrap_or_default(),
                aor.get(at + 1..).unwrap_or_default(),
            );
            if user.is_empty() || domain.is_empty() {
                return Err(err("expected user@domain"));
            }
            if user.len() > USERNAME_LEN_MAX {
                return Err(err("user name too long"));
            }
            if !user.iter().all(|&b| user_byte_ok(b)) {
                return Err(err("user name has a character that is not allowed"));
            }
            if domain.len() > REALM_LEN_MAX || !domain.iter().all(|&b| realm_byte_ok(b)) {
                return Err(err("bad domain"));
            }
            let realm = domain.to_ascii_lowercase();
            let rest: Vec<&str> = words.collect();
            let creds = match rest.as_slice() {
                [] => return Err(err("missing password or HA1 values")),
                [pw] if !pw.starts_with("md5=") && !pw.starts_with("sha256=") => {
                    Credentials::from_password(user, &realm, pw.as_bytes())
                }
                fields => {
                    let mut c = Credentials {
                        md5: None,
                        sha256: None,
                    };
                    for f in fields {
                        if let Some(h) = f.strip_prefix("md5=") {
                            if c.md5.is_some() {
                                return Err(err("md5= given twice"));
                            }
                            c.md5 = Some(
                                parse_hex(h.as_bytes()).ok_or(err("md5= needs 32 hex digits"))?,
                            );
                        } else if let Some(h) = f.strip_prefix("sha256=") {
                            if c.sha256.is_some() {
                                return Err(err("sha256= given twice"));
                            }
                            c.sha256 = Some(
                                parse_hex(h.as_bytes())
                                    .ok_or(err("sha256= needs 64 hex digits"))?,
                            );
                        } else {
                            return Err(err("expected one password or md5=/sha256= HA1 values"));
                        }
                    }
                    c
                }
            };
            let key = Key {
                user: user.into(),
                realm: realm.into(),
            };
            if map.contains_key(&key) {
                return Err(err("duplicate subscriber"));
            }
            map.insert(key, creds);
        }
        Ok(Self { map })
    }

    /// Credentials of `user` in `realm` (realm compared case-insensitively). Never
    /// allocates: the realm is folded to lower case in a stack buffer.
    pub fn get(&self, user: &[u8], realm: &[u8]) -> Option<&Credentials> {
        let mut buf = [0u8; REALM_LEN_MAX];
        let lower = buf.get_mut(..realm.len())?;
        lower.copy_from_slice(realm);
        lower.make_ascii_lowercase();
        self.map.get(&Query { user, realm: lower })
    }

    /// Whether `user` is a subscriber of `realm`.
    pub fn is_known_user(&self, user: &[u8], realm: &[u8]) -> bool {
        self.get(user, realm).is_some()
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is no subscriber.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUFASA_MD5: &str = "939e7578ed9e3c518a452acee763bce9"; // RFC 2617 §3.5 HA1

    #[test]
    fn both_line_forms_comments_and_blank_lines() {
        let text = format!(
            "# subscribers\n\n  alice@Example.COM  secret \nMufasa@testrealm@host.com md5={MUFASA_MD5}\n\
             bob@example.com sha256={} md5={}\n",
            "a".repeat(64),
            "B".repeat(32)
        );
        let s = Subscribers::parse(&text).unwrap();
        assert_eq!(s.len(), 3);
        let alice = s.get(b"alice", b"example.com").unwrap();
        assert_eq!(
            *alice,
            Credentials::from_password(b"alice", b"example.com", b"secret")
        );
        assert!(s.is_known_user(b"alice", b"EXAMPLE.com"));
        assert!(
            !s.is_known_user(b"Alice", b"example.com"),
            "user is case-sensitive"
        );
        let m = s.get(b"Mufasa", b"testrealm@host.com");
        assert!(m.is_none(), "user is what precedes the last @");
        let m = s.get(b"Mufasa@testrealm", b"host.com").unwrap();
        assert_eq!(m.ha1_hex(Algorithm::Md5), Some(MUFASA_MD5.as_bytes()));
        assert_eq!(m.ha1_hex(Algorithm::Sha256), None);
        let bob = s.get(b"bob", b"example.com").unwrap();
        assert_eq!(bob.ha1_hex(Algorithm::Md5), Some("b".repeat(32).as_bytes()));
        assert_eq!(
            bob.ha1_hex(Algorithm::Sha256),
            Some("a".repeat(64).as_bytes())
        );
    }

    #[test]
    fn plain_password_gives_rfc_2617_ha1() {
        let c = Credentials::from_password(b"Mufasa", b"testrealm@host.com", b"Circle Of Life");
        assert_eq!(c.ha1_hex(Algorithm::Md5), Some(MUFASA_MD5.as_bytes()));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("ok@a.b pw\nnope pw\n", 2, "expected user@domain"),
            ("\n# c\n@a.b pw\n", 3, "expected user@domain"),
            ("u@ pw\n", 1, "expected user@domain"),
            ("u@a.b\n", 1, "missing password or HA1 values"),
            ("u@a.b md5=abc\n", 1, "md5= needs 32 hex digits"),
            ("u@a.b sha256=zz\n", 1, "sha256= needs 64 hex digits"),
            (
                "u@a.b pw extra\n",
                1,
                "expected one password or md5=/sha256= HA1 values",
            ),
            ("u@a.b pw\n\nu@A.B other\n", 3, "duplicate subscriber"),
            (
                "u\"x@a.b pw\n",
                1,
                "user name has a character that is not allowed",
            ),
            ("u@a_b pw\n", 1, "bad domain"),
        ];
        for &(text, line, reason) in cases {
            assert_eq!(
                Subscribers::parse(text).unwrap_err(),
                LoadError { line, reason },
                "{text:?}"
            );
        }
        let e = Subscribers::parse("a@b.c secretpw\nbad secretpw").unwrap_err();
        assert_eq!(e.to_string(), "line 2: expected user@domain");
        let md5 = format!("u@a.b md5={MUFASA_MD5} md5={MUFASA_MD5}");
        assert_eq!(
            Subscribers::parse(&md5).unwrap_err().reason,
            "md5= given twice"
        );
        let long = format!("{}@a.b pw", "u".repeat(USERNAME_LEN_MAX + 1));
        assert_eq!(
            Subscribers::parse(&long).unwrap_err().reason,
            "user name too long"
        );
    }

    #[test]
    fn over_long_realm_lookup_is_none() {
        let s = Subscribers::parse("u@a.b pw").unwrap();
        assert!(s.get(b"u", &[b'a'; REALM_LEN_MAX + 1]).is_none());
    }
}
