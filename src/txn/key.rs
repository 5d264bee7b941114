//! Transaction keys (RFC 3261 §17.2.3) and their flat encoding.
//!
//! The table stores and compares the full key material, not only its hash, so two requests
//! never share a transaction by a hash collision. Encoding into one byte string makes the
//! comparison a single `memcmp` and lets the key live in the same ring as the response.

use crate::hash::seeded_hash;

/// The RFC 3261 branch prefix ("magic cookie", §8.1.1.7): a branch that starts with it is
/// unique per transaction, so the §17.2.3 short key applies.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Largest encoded key, in bytes; a longer key is neither cached nor looked up.
pub const TXN_KEY_BYTES_MAX: usize = 4096;

/// True when `branch` carries the RFC 3261 magic cookie.
pub fn is_rfc3261_branch(branch: &[u8]) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// What identifies a non-INVITE server transaction (RFC 3261 §17.2.3). All fields are
/// compared byte for byte; a retransmission repeats them exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnKey<'a> {
    /// The top Via branch starts with [`MAGIC_COOKIE`]: (branch, sent-by, method).
    Rfc3261 {
        /// The top Via `branch` parameter, cookie included.
        branch: &'a [u8],
        /// The host of the top Via sent-by.
        sent_by_host: &'a [u8],
        /// The port of the top Via sent-by; 0 when absent.
        sent_by_port: u16,
        /// The CSeq method (the registrar keeps no INVITE transactions, so no ACK rule).
        method: &'a [u8],
    },
    /// RFC 2543 peers (no cookie): the §17.2.3 fallback, matching on the request's
    /// identity instead of the branch.
    Rfc2543 {
        /// The Request-URI.
        request_uri: &'a [u8],
        /// The From tag (empty when none).
        from_tag: &'a [u8],
        /// The To tag (empty when none).
        to_tag: &'a [u8],
        /// The Call-ID.
        call_id: &'a [u8],
        /// The CSeq number.
        cseq: u32,
        /// The CSeq method.
        method: &'a [u8],
        /// The whole top Via header value.
        top_via: &'a [u8],
    },
}

const TAG_3261: u8 = 1;
const TAG_2543: u8 = 2;

impl TxnKey<'_> {
    /// The flat form of the key in `arena`, with its index hash: a tag byte, then each
    /// field as a `u16` length and its bytes, numbers fixed-width. Done once per request
    /// (`Registrar::prepare`), then used by the warm-up, the lookup and the insert
    /// without encoding or hashing again. `None` for a key longer than
    /// [`TXN_KEY_BYTES_MAX`] (never cached; checked first, so nothing is allocated).
    pub fn encode_in<'b>(&self, arena: &'b bumpalo::Bump) -> Option<EncodedKey<'b>> {
        let len = self.encoded_len()?;
        let mut out = bumpalo::collections::Vec::with_capacity_in(len, arena);
        self.write_parts(|part| out.extend_from_slice_copy(part));
        let bytes: &'b [u8] = out.into_bump_slice();
        Some(EncodedKey {
            bytes,
            hash: seeded_hash(bytes),
        })
    }

    /// Bytes of the flat form, or `None` when it is longer than [`TXN_KEY_BYTES_MAX`]:
    /// the parts [`write_parts`](Self::write_parts) would write, counted.
    fn encoded_len(&self) -> Option<usize> {
        // Each field's length is a `u16`; the total bound implies it.
        const _: () = assert!(TXN_KEY_BYTES_MAX <= u16::MAX as usize);
        let mut len = 0;
        self.write_parts(|part| len += part.len());
        (len <= TXN_KEY_BYTES_MAX).then_some(len)
    }

    /// The flat form, part by part (the length was checked by `encoded_len`).
    fn write_parts(&self, mut put: impl FnMut(&[u8])) {
        match *self {
            Self::Rfc3261 {
                branch,
                sent_by_host,
                sent_by_port,
                method,
            } => {
                let [p0, p1] = sent_by_port.to_le_bytes();
                put(&[TAG_3261, p0, p1]);
                for f in [branch, sent_by_host, method] {
                    put_field(&mut put, f);
                }
            }
            Self::Rfc2543 {
                request_uri,
                from_tag,
                to_tag,
                call_id,
                cseq,
                method,
                top_via,
            } => {
                let [c0, c1, c2, c3] = cseq.to_le_bytes();
                put(&[TAG_2543, c0, c1, c2, c3]);
                for f in [request_uri, from_tag, to_tag, call_id, method, top_via] {
                    put_field(&mut put, f);
                }
            }
        }
    }
}

/// A transaction key in its flat form ([`TxnKey::encode_in`]) with its index hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedKey<'a> {
    /// The flat form.
    pub(super) bytes: &'a [u8],
    /// [`seeded_hash`] of `bytes`.
    pub(super) hash: u64,
}

impl EncodedKey<'_> {
    /// The index hash ([`TxnTable::touch`](super::TxnTable::touch) takes it).
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

fn put_field(put: &mut impl FnMut(&[u8]), f: &[u8]) {
    // `encoded_len` bounded the whole key by TXN_KEY_BYTES_MAX ≤ u16::MAX.
    put(&u16::try_from(f.len()).unwrap_or(u16::MAX).to_le_bytes());
    put(f);
}
