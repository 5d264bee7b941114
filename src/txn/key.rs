//! Transaction keys (RFC 3261 §17.2.3) and their flat encoding.
//!
//! The table stores and compares the full key material, not only its hash, so two requests
//! never share a transaction by a hash collision. Encoding into one byte string makes the
//! comparison a single `memcmp` and lets the key live in the same ring as the response.

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
    /// Writes the flat form into `out` (cleared first): a tag byte, then each field as a
    /// `u16` length and its bytes, numbers fixed-width. Fails past [`TXN_KEY_BYTES_MAX`]
    /// (checked before each field, so `out` never grows past it).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), KeyTooLong> {
        out.clear();
        match *self {
            Self::Rfc3261 {
                branch,
                sent_by_host,
                sent_by_port,
                method,
            } => {
                out.push(TAG_3261);
                out.extend_from_slice(&sent_by_port.to_le_bytes());
                for f in [branch, sent_by_host, method] {
                    put_field(out, f)?;
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
                out.push(TAG_2543);
                out.extend_from_slice(&cseq.to_le_bytes());
                for f in [request_uri, from_tag, to_tag, call_id, method, top_via] {
                    put_field(out, f)?;
                }
            }
        }
        Ok(())
    }
}

/// A key longer than [`TXN_KEY_BYTES_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyTooLong;

fn put_field(out: &mut Vec<u8>, f: &[u8]) -> Result<(), KeyTooLong> {
    if out.len() + 2 + f.len() > TXN_KEY_BYTES_MAX {
        return Err(KeyTooLong);
    }
    let len = u16::try_from(f.len()).map_err(|_| KeyTooLong)?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(f);
    Ok(())
}
