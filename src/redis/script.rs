//! The location commit as one atomic Redis script: RFC 3261 §10.3 steps 6–8 on one
//! hash per AOR, with Redis's clock (SCALE-OUT-NOTES.md §4).
//!
//! Why a script: every REGISTER of an AOR, from any sipreg node or core, is then
//! serialised on the slot's master, and the CSeq rule, `*`, max contacts and
//! all-or-nothing hold across nodes in one round trip. The reply is the post-commit
//! binding list the 200 OK needs, so REGISTER needs no separate read.
//!
//! # Key
//! `sipreg:loc:{<aor key>}` ([`write_location_key`]); the hash tag keeps every later
//! per-AOR key in the same slot. An AOR key containing `}` still maps each AOR to one
//! fixed slot (its tag is then a prefix of the AOR), which is all routing needs.
//!
//! # Invocation ([`encode_commit`] on the hot path, [`commit_command`] as an argument list)
//! `EVALSHA <sha1> 1 <key> ARGV…`; after `NOSCRIPT`, `SCRIPT LOAD` on that node and
//! again, or `EVAL <script> 1 <key> ARGV…` ([`Invoke`]):
//!
//! | ARGV | value |
//! |---|---|
//! | 1 | op: `F` fetch, `*` remove all, `U` update; for the management API, `A` update and `D` remove (below) |
//! | 2 | Call-ID |
//! | 3 | CSeq number (decimal) |
//! | 4 | 32-bit hash of the top Via branch (decimal) |
//! | 5 | max contacts (decimal, 0 = no limit) |
//! | 6 | max-contacts policy: `R` reject, `E` evict the oldest |
//! | 7 | n, the number of contacts (0 unless op is `U`) |
//! | 8… | n × 5: match key ([`crate::sip::uri_match_key`]), instance (`""` none, else `=` + the `+sip.instance` value), reg-id (`""` none, else decimal), expires seconds (0 = remove), binding blob |
//!
//! A contact matches a stored binding by instance + reg-id when both have an instance,
//! else by match key (as `binding_matches` in the registrar).
//!
//! The management API's ops are not REGISTERs, so the CSeq rule (and with it the
//! retransmission answer) does not apply to them: `A` is `U` without it (an operator's
//! add or refresh always lands), and `D` removes every live binding (n = 0) or those
//! whose match key is one of the n contacts' (their other four values are not read),
//! whatever Call-ID and CSeq wrote them. Both stay atomic with concurrent REGISTERs.
//!
//! # Stored value (one hash field per binding)
//! Field names are small decimal numbers the script allocates (opaque ids). Value:
//! `"<expires at ms> <registered ms> <cseq> <branch hash> <len call-id> <len match key>
//! <len instance> <len reg-id>|" call-id match-key instance reg-id blob`, all numbers
//! decimal, lengths in bytes, instance and reg-id in their ARGV form; cseq, branch and
//! Call-ID are the request's that last wrote the binding, registered ms the time it
//! was first inserted (kept by refreshes, used by evict-oldest). The blob ([`encode_blob`]) is sipreg's own and opaque to
//! the script: `"<q or -> <transport> <listen index> <len contact> <len path> <len
//! source> <len user agent>|" contact path source user-agent`, source as `ip:port`.
//! A field the script cannot parse is purged like an expired one, so corrupt data
//! cannot wedge an AOR.
//!
//! # Reply ([`decode_commit_reply`])
//! `[status, now ms, evicted, changed, (expires left s, stored value)×bindings]` (for
//! `D`, the third element is the number of live bindings removed), status one of `OK`,
//! `RETRANSMISSION` (same Call-ID, CSeq and branch: nothing changed, the list is the
//! current one), `INVALID_CSEQ`, `TOO_MANY` (both with no bindings and nothing
//! changed). `changed` is the number of bindings the request added or removed
//! (evictions and `*` included, lazy purges of expired bindings not; 0 for a refresh,
//! a fetch and every status but `OK`): what `--redis-wait` makes a replica acknowledge
//! before the 200 ([`super::wait`]). Bad ARGV is the error reply `SIPREG_BADARGS`.

use std::net::SocketAddr;
use std::sync::OnceLock;

use super::cluster::ClusterError;
use super::resp::Reply;
use crate::location::{FlowId, Transport};
use crate::registrar::MaxContactsPolicy;

/// The commit script's Lua source.
pub const COMMIT_SCRIPT: &str = include_str!("commit.lua");

/// Elements of a reply before its bindings: status, now, evicted, changed.
const REPLY_HEADER_LEN: usize = 4;

/// Most bindings one reply may carry (a reply is 4 + 2 per binding elements).
pub const REPLY_BINDINGS_MAX: usize = (super::resp::ARRAY_LEN_MAX - REPLY_HEADER_LEN) / 2;

/// The key prefix of an AOR's binding hash.
pub const LOCATION_KEY_PREFIX: &[u8] = b"sipreg:loc:{";

/// The lower-case hex SHA1 of [`COMMIT_SCRIPT`] (what `EVALSHA` names and `SCRIPT LOAD`
/// returns).
pub fn commit_script_sha1() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| sha1_smol::Sha1::from(COMMIT_SCRIPT).digest().to_string())
}

/// Appends `sipreg:loc:{<aor_key>}` to `out`.
pub fn write_location_key(aor_key: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(LOCATION_KEY_PREFIX);
    out.extend_from_slice(aor_key);
    out.push(b'}');
}

/// One Contact of a REGISTER, as decided by the registrar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContactIntent<'a> {
    /// [`crate::sip::uri_match_key`] of the Contact URI.
    pub match_key: &'a [u8],
    /// Granted expiry in seconds; 0 removes the binding.
    pub expires_s: u32,
    /// q in thousandths, `None` when absent.
    pub q: Option<u16>,
    /// The Contact URI as received.
    pub contact: &'a [u8],
    /// The joined Path header values; empty when none.
    pub path: &'a [u8],
    /// Where the REGISTER came from.
    pub source: SocketAddr,
    /// Its transport.
    pub transport: Transport,
    /// Index of the local socket that received it.
    pub listen: u16,
    /// The User-Agent value; empty when none.
    pub user_agent: &'a [u8],
    /// `+sip.instance` (RFC 5626), if any.
    pub instance: Option<&'a [u8]>,
    /// `reg-id` (RFC 5626), if any.
    pub reg_id: Option<u32>,
    /// The connection the binding is reachable through, on which node.
    pub flow: Option<FlowToken<'a>>,
}

/// A flow (RFC 5626 §3.2) in the shared location: the connection that reaches a binding
/// and the sipreg node holding it (`--node-id`), since only that node can use it.
/// Stored as text, `node/core/slot/generation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowToken<'a> {
    /// The node's `--node-id`.
    pub node: &'a [u8],
    /// The connection on that node.
    pub flow: FlowId,
}

impl<'a> FlowToken<'a> {
    /// Bytes of the stored text (never 0: a node id is never empty).
    pub fn text_len(&self) -> usize {
        let digits = |n: u64| n.checked_ilog10().map_or(1, |l| l as usize + 1);
        self.node.len()
            + 3
            + digits(u64::from(self.flow.core))
            + digits(u64::from(self.flow.slot))
            + digits(u64::from(self.flow.generation))
    }

    /// Append the stored text.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.node);
        for n in [
            u64::from(self.flow.core),
            u64::from(self.flow.slot),
            u64::from(self.flow.generation),
        ] {
            out.push(b'/');
            push_u64(out, n);
        }
    }

    /// Read the stored text; `None` unless it is well formed.
    pub fn parse(text: &'a [u8]) -> Option<Self> {
        let mut parts = text.rsplitn(4, |&b| b == b'/');
        let generation = num(parts.next()?)?;
        let slot = num(parts.next()?)?;
        let core = num(parts.next()?)?;
        let node = parts.next()?;
        (!node.is_empty()).then_some(Self {
            node,
            flow: FlowId {
                core,
                slot,
                generation,
            },
        })
    }
}

/// What the commit does to the AOR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOp<'a> {
    /// No Contact: read (and purge expired bindings).
    Fetch,
    /// `Contact: *` with `Expires: 0`.
    RemoveAll,
    /// Add, refresh or remove these contacts.
    Update(&'a [ContactIntent<'a>]),
    /// Management API (`A`): [`Self::Update`] without the CSeq rule.
    AdminUpdate(&'a [ContactIntent<'a>]),
    /// Management API (`D`): remove every binding (empty list) or those with one of
    /// these contacts' match keys (their other fields are not read), without the CSeq
    /// rule. The reply's `evicted` is the number removed.
    AdminRemove(&'a [ContactIntent<'a>]),
}

impl<'a> CommitOp<'a> {
    /// The op letter (ARGV 1) and the contacts that follow ARGV 7.
    fn code(self) -> (&'static [u8], &'a [ContactIntent<'a>]) {
        match self {
            Self::Fetch => (b"F", &[]),
            Self::RemoveAll => (b"*", &[]),
            Self::Update(c) => (b"U", c),
            Self::AdminUpdate(c) => (b"A", c),
            Self::AdminRemove(c) => (b"D", c),
        }
    }
}

/// A REGISTER's change intent, the script's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitIntent<'a> {
    /// The AOR key (`write_aor_key`).
    pub aor_key: &'a [u8],
    /// The REGISTER's Call-ID.
    pub call_id: &'a [u8],
    /// Its CSeq number.
    pub cseq: u32,
    /// 32-bit hash of its top Via branch (issue 14).
    pub branch_hash: u32,
    /// Limit on live bindings; 0 = none.
    pub max_contacts: u32,
    /// What to do past the limit.
    pub policy: MaxContactsPolicy,
    /// The change.
    pub op: CommitOp<'a>,
}

/// How the script is named in the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invoke {
    /// `EVALSHA <sha1>` (normal path).
    EvalSha,
    /// `EVAL <source>` (after `NOSCRIPT`; it also caches the script on that node).
    Eval,
}

/// The full command for `intent`: `EVALSHA sha 1 key ARGV…` or `EVAL src 1 key ARGV…`.
pub fn commit_command(intent: &CommitIntent<'_>, invoke: Invoke) -> Vec<Vec<u8>> {
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(11);
    match invoke {
        Invoke::EvalSha => {
            args.push(b"EVALSHA".to_vec());
            args.push(commit_script_sha1().as_bytes().to_vec());
        }
        Invoke::Eval => {
            args.push(b"EVAL".to_vec());
            args.push(COMMIT_SCRIPT.as_bytes().to_vec());
        }
    }
    args.push(b"1".to_vec());
    let mut key = Vec::with_capacity(LOCATION_KEY_PREFIX.len() + intent.aor_key.len() + 1);
    write_location_key(intent.aor_key, &mut key);
    args.push(key);
    let (op, contacts) = intent.op.code();
    args.push(op.to_vec());
    args.push(intent.call_id.to_vec());
    args.push(intent.cseq.to_string().into_bytes());
    args.push(intent.branch_hash.to_string().into_bytes());
    args.push(intent.max_contacts.to_string().into_bytes());
    args.push(match intent.policy {
        MaxContactsPolicy::Reject => b"R".to_vec(),
        MaxContactsPolicy::EvictOldest => b"E".to_vec(),
    });
    args.push(contacts.len().to_string().into_bytes());
    for c in contacts {
        args.push(c.match_key.to_vec());
        args.push(match c.instance {
            Some(i) => [&b"="[..], i].concat(),
            None => Vec::new(),
        });
        args.push(
            c.reg_id
                .map(|r| r.to_string().into_bytes())
                .unwrap_or_default(),
        );
        args.push(c.expires_s.to_string().into_bytes());
        let mut blob = Vec::new();
        encode_blob(c, &mut blob);
        args.push(blob);
    }
    args
}

/// Appends the binding blob of `c` (the format is in the module docs).
pub fn encode_blob(c: &ContactIntent<'_>, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // `ip:port` is at most 47 bytes (`[v6%scope]:port` is not produced by SocketAddr V6
    // without a scope id; with one it still fits 64).
    let mut source = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut source[..]);
    // Cannot fail: the buffer holds any SocketAddr's text.
    let _ = write!(cursor, "{}", c.source);
    let source_len = usize::try_from(cursor.position()).unwrap_or(0);
    match c.q {
        Some(q) => push_u64(out, u64::from(q)),
        None => out.push(b'-'),
    }
    for n in [
        u64::from(c.transport.as_u8()),
        u64::from(c.listen),
        c.contact.len() as u64,
        c.path.len() as u64,
        source_len as u64,
        c.user_agent.len() as u64,
    ] {
        out.push(b' ');
        push_u64(out, n);
    }
    // The flow, when there is one, as an eighth length and a last field (a blob
    // without it keeps the seven-field form, so older values still read).
    if let Some(token) = c.flow {
        out.push(b' ');
        push_u64(out, token.text_len() as u64);
    }
    out.push(b'|');
    out.extend_from_slice(c.contact);
    out.extend_from_slice(c.path);
    out.extend_from_slice(&source[..source_len]);
    out.extend_from_slice(c.user_agent);
    if let Some(token) = c.flow {
        token.write(out);
    }
}

/// `n` in decimal, in `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends `n` in decimal.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

/// One RESP2 bulk string.
fn push_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    push_u64(out, bytes.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// One RESP2 bulk string holding `n` in decimal.
fn push_bulk_u64(out: &mut Vec<u8>, n: u64) {
    push_bulk(out, decimal(n, &mut [0; 20]));
}

/// Appends the RESP2 bytes of [`commit_command`]`(intent, invoke)` to `out` without
/// building the argument list (the per-REGISTER path: no allocation once `out` and
/// `scratch` have grown). `scratch` holds each blob while its length is taken.
pub fn encode_commit(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    intent: &CommitIntent<'_>,
    invoke: Invoke,
) {
    let (op, contacts) = intent.op.code();
    out.push(b'*');
    push_u64(out, 11 + 5 * contacts.len() as u64);
    out.extend_from_slice(b"\r\n");
    match invoke {
        Invoke::EvalSha => {
            push_bulk(out, b"EVALSHA");
            push_bulk(out, commit_script_sha1().as_bytes());
        }
        Invoke::Eval => {
            push_bulk(out, b"EVAL");
            push_bulk(out, COMMIT_SCRIPT.as_bytes());
        }
    }
    push_bulk(out, b"1");
    out.push(b'$');
    push_u64(
        out,
        (LOCATION_KEY_PREFIX.len() + intent.aor_key.len() + 1) as u64,
    );
    out.extend_from_slice(b"\r\n");
    write_location_key(intent.aor_key, out);
    out.extend_from_slice(b"\r\n");
    push_bulk(out, op);
    push_bulk(out, intent.call_id);
    push_bulk_u64(out, u64::from(intent.cseq));
    push_bulk_u64(out, u64::from(intent.branch_hash));
    push_bulk_u64(out, u64::from(intent.max_contacts));
    push_bulk(
        out,
        match intent.policy {
            MaxContactsPolicy::Reject => b"R",
            MaxContactsPolicy::EvictOldest => b"E",
        },
    );
    push_bulk_u64(out, contacts.len() as u64);
    for c in contacts {
        push_bulk(out, c.match_key);
        match c.instance {
            Some(i) => {
                out.push(b'$');
                push_u64(out, 1 + i.len() as u64);
                out.extend_from_slice(b"\r\n=");
                out.extend_from_slice(i);
                out.extend_from_slice(b"\r\n");
            }
            None => push_bulk(out, b""),
        }
        match c.reg_id {
            Some(r) => push_bulk_u64(out, u64::from(r)),
            None => push_bulk(out, b""),
        }
        push_bulk_u64(out, u64::from(c.expires_s));
        scratch.clear();
        encode_blob(c, scratch);
        push_bulk(out, scratch);
    }
}

/// The script's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitStatus {
    /// Committed; the bindings are the post-commit list.
    Ok,
    /// Same Call-ID, CSeq and branch as the request that last changed a binding: nothing
    /// changed; the bindings are the current list (answer 200 with them).
    Retransmission,
    /// Same Call-ID with a lower CSeq, or an equal CSeq from another branch (400).
    InvalidCSeq,
    /// Over max contacts (reject policy, or nothing left to evict).
    TooManyContacts,
}

/// One binding as stored, with its remaining lifetime; its bytes borrowed from the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBinding<'r> {
    /// Seconds left (rounded up), by Redis's clock.
    pub expires_s: u32,
    /// Absolute expiry, ms since the Unix epoch (Redis's clock).
    pub expires_at_ms: u64,
    /// When first registered, ms since the Unix epoch.
    pub registered_ms: u64,
    /// CSeq of the REGISTER that last changed it.
    pub cseq: u32,
    /// Branch hash of that REGISTER.
    pub branch_hash: u32,
    /// Call-ID of that REGISTER.
    pub call_id: &'r [u8],
    /// The contact's match key.
    pub match_key: &'r [u8],
    /// `+sip.instance`, if any.
    pub instance: Option<&'r [u8]>,
    /// `reg-id`, if any.
    pub reg_id: Option<u32>,
    /// q in thousandths, `None` when absent.
    pub q: Option<u16>,
    /// Transport.
    pub transport: Transport,
    /// Local socket index.
    pub listen: u16,
    /// Contact URI as received.
    pub contact: &'r [u8],
    /// Joined Path values.
    pub path: &'r [u8],
    /// Where the REGISTER came from.
    pub source: SocketAddr,
    /// User-Agent.
    pub user_agent: &'r [u8],
    /// The connection that reaches it, on which node (stream transports, first hop).
    pub flow: Option<FlowToken<'r>>,
}

/// The decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitReply<'r> {
    /// The verdict.
    pub status: CommitStatus,
    /// Redis's clock when the script ran, ms since the Unix epoch (for the Date header).
    pub now_ms: u64,
    /// Bindings removed by the evict-oldest policy (op `D`: bindings removed).
    pub evicted: u32,
    /// Bindings this request added or removed (evictions included; 0 for a refresh, a
    /// fetch, and every status but [`CommitStatus::Ok`]).
    pub changed: u32,
    /// The post-commit (or current) bindings; empty for the rejections.
    pub bindings: Vec<StoredBinding<'r>>,
}

/// Why a reply is not a commit result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// Redis answered an error (route or retry per its kind).
    Server(ClusterError),
    /// Not `[status, now, evicted, changed, (expires, value)…]`.
    Shape,
    /// A status the script does not send.
    UnknownStatus,
    /// More than [`REPLY_BINDINGS_MAX`] bindings.
    TooManyBindings,
    /// A stored value or blob not in the documented format.
    BadBinding,
}

/// Decodes the script's reply.
pub fn decode_commit_reply(reply: &Reply) -> Result<CommitReply<'_>, ReplyError> {
    let items = match reply {
        Reply::Error(msg) => return Err(ReplyError::Server(ClusterError::classify(msg))),
        Reply::Array(Some(items)) => items,
        _ => return Err(ReplyError::Shape),
    };
    let [status, now, evicted, changed, rest @ ..] = items.as_slice() else {
        return Err(ReplyError::Shape);
    };
    let status = match status {
        Reply::Bulk(Some(s)) => match s.as_slice() {
            b"OK" => CommitStatus::Ok,
            b"RETRANSMISSION" => CommitStatus::Retransmission,
            b"INVALID_CSEQ" => CommitStatus::InvalidCSeq,
            b"TOO_MANY" => CommitStatus::TooManyContacts,
            _ => return Err(ReplyError::UnknownStatus),
        },
        _ => return Err(ReplyError::Shape),
    };
    let (&Reply::Int(now), &Reply::Int(evicted), &Reply::Int(changed)) = (now, evicted, changed)
    else {
        return Err(ReplyError::Shape);
    };
    let now_ms = u64::try_from(now).map_err(|_| ReplyError::Shape)?;
    let evicted = u32::try_from(evicted).map_err(|_| ReplyError::Shape)?;
    let changed = u32::try_from(changed).map_err(|_| ReplyError::Shape)?;
    if rest.len() % 2 != 0 {
        return Err(ReplyError::Shape);
    }
    if rest.len() / 2 > REPLY_BINDINGS_MAX {
        return Err(ReplyError::TooManyBindings);
    }
    let mut bindings = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks_exact(2) {
        let [Reply::Int(left), Reply::Bulk(Some(value))] = pair else {
            return Err(ReplyError::Shape);
        };
        let expires_s = u32::try_from(*left).map_err(|_| ReplyError::BadBinding)?;
        bindings.push(decode_stored(expires_s, value).ok_or(ReplyError::BadBinding)?);
    }
    Ok(CommitReply {
        status,
        now_ms,
        evicted,
        changed,
        bindings,
    })
}

/// Splits `"<n1> <n2> … <nK>|rest"` into K decimal numbers (as text) and `rest`.
fn header<const K: usize>(v: &[u8]) -> Option<([&[u8]; K], &[u8])> {
    let bar = memchr::memchr(b'|', v)?;
    let mut fields = v[..bar].split(|&b| b == b' ');
    let mut out: [&[u8]; K] = [&[]; K];
    for slot in &mut out {
        *slot = fields.next()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some((out, &v[bar + 1..]))
}

fn num<T: std::str::FromStr>(s: &[u8]) -> Option<T> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Cuts `rest` into pieces of the given lengths; `None` unless they use it exactly.
fn cut<const K: usize>(mut rest: &[u8], lens: [usize; K]) -> Option<([&[u8]; K], &[u8])> {
    let mut out: [&[u8]; K] = [&[]; K];
    for (slot, len) in out.iter_mut().zip(lens) {
        if len > rest.len() {
            return None;
        }
        let (piece, after) = rest.split_at(len);
        *slot = piece;
        rest = after;
    }
    Some((out, rest))
}

fn decode_stored(expires_s: u32, value: &[u8]) -> Option<StoredBinding<'_>> {
    let ([exp, reg, cseq, branch, l1, l2, l3, l4], rest) = header::<8>(value)?;
    let lens = [num(l1)?, num(l2)?, num(l3)?, num(l4)?];
    let ([call_id, match_key, instance, reg_id], blob) = cut(rest, lens)?;
    let instance = match instance {
        [] => None,
        [b'=', i @ ..] => Some(i),
        _ => return None,
    };
    let reg_id = match reg_id {
        [] => None,
        r => Some(num(r)?),
    };
    let (q, transport, listen, contact, path, source, user_agent, flow) =
        if let Some(([q, transport, listen, c1, c2, c3, c4, c5], rest)) = header::<8>(blob) {
            let lens = [num(c1)?, num(c2)?, num(c3)?, num(c4)?, num(c5)?];
            let ([contact, path, source, user_agent, flow], end) = cut(rest, lens)?;
            if !end.is_empty() {
                return None;
            }
            let flow = FlowToken::parse(flow)?;
            (
                q,
                transport,
                listen,
                contact,
                path,
                source,
                user_agent,
                Some(flow),
            )
        } else {
            let ([q, transport, listen, c1, c2, c3, c4], rest) = header::<7>(blob)?;
            let lens = [num(c1)?, num(c2)?, num(c3)?, num(c4)?];
            let ([contact, path, source, user_agent], end) = cut(rest, lens)?;
            if !end.is_empty() {
                return None;
            }
            (
                q, transport, listen, contact, path, source, user_agent, None,
            )
        };
    Some(StoredBinding {
        expires_s,
        expires_at_ms: num(exp)?,
        registered_ms: num(reg)?,
        cseq: num(cseq)?,
        branch_hash: num(branch)?,
        call_id,
        match_key,
        instance,
        reg_id,
        q: match q {
            b"-" => None,
            q => Some(num(q)?),
        },
        transport: Transport::from_u8(num(transport)?)?,
        listen: num(listen)?,
        contact,
        path,
        source: std::str::from_utf8(source).ok()?.parse().ok()?,
        user_agent,
        flow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> ContactIntent<'static> {
        ContactIntent {
            match_key: b"mk|1",
            expires_s: 3600,
            q: Some(500),
            contact: b"sip:alice@192.0.2.1:5060;transport=tcp",
            path: b"<sip:edge.example.com;lr>",
            source: "[2001:db8::1]:5070".parse().unwrap(),
            transport: Transport::Tcp,
            listen: 2,
            user_agent: b"phone|1 2",
            instance: Some(b"<urn:uuid:1>"),
            reg_id: Some(7),
            flow: Some(FlowToken {
                node: b"10.0.0.7:5060",
                flow: FlowId {
                    core: 3,
                    slot: 4_000_000_000,
                    generation: 0,
                },
            }),
        }
    }

    #[test]
    fn sha1_is_what_redis_computes() {
        // SHA1("") check value, then the script's: 40 lower-case hex digits.
        assert_eq!(
            sha1_smol::Sha1::from("").digest().to_string(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        let sha = commit_script_sha1();
        assert_eq!(sha.len(), 40);
        assert!(
            sha.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn command_layout() {
        let c = [contact()];
        let intent = CommitIntent {
            aor_key: b"alice@example.com",
            call_id: b"cid",
            cseq: 7,
            branch_hash: 42,
            max_contacts: 3,
            policy: MaxContactsPolicy::EvictOldest,
            op: CommitOp::Update(&c),
        };
        let args = commit_command(&intent, Invoke::EvalSha);
        assert_eq!(args.len(), 4 + 7 + 5);
        assert_eq!(args[0], b"EVALSHA");
        assert_eq!(args[3], b"sipreg:loc:{alice@example.com}");
        assert_eq!(
            &args[4..11],
            [&b"U"[..], b"cid", b"7", b"42", b"3", b"E", b"1"]
        );
        assert_eq!(
            &args[11..15],
            [&b"mk|1"[..], b"=<urn:uuid:1>", b"7", b"3600"]
        );
        assert_eq!(super::super::slot::key_slot(&args[3]), 350);
        let args = commit_command(
            &CommitIntent {
                op: CommitOp::RemoveAll,
                ..intent
            },
            Invoke::Eval,
        );
        assert_eq!(args[1], COMMIT_SCRIPT.as_bytes());
        assert_eq!(args.len(), 11);
        assert_eq!(args[10], b"0");
    }

    #[test]
    fn encode_commit_is_the_command_in_resp() {
        let mut bare = contact();
        bare.instance = None;
        bare.reg_id = None;
        bare.q = None;
        let cs = [contact(), bare];
        for op in [
            CommitOp::Fetch,
            CommitOp::RemoveAll,
            CommitOp::Update(&cs),
            CommitOp::AdminUpdate(&cs),
            CommitOp::AdminRemove(&[]),
        ] {
            for invoke in [Invoke::EvalSha, Invoke::Eval] {
                let intent = CommitIntent {
                    aor_key: b"alice@example.com",
                    call_id: b"cid",
                    cseq: 4_000_000_000,
                    branch_hash: 0,
                    max_contacts: 0,
                    policy: MaxContactsPolicy::Reject,
                    op,
                };
                let mut want = Vec::new();
                super::super::resp::encode_command(&mut want, &commit_command(&intent, invoke));
                let (mut got, mut scratch) = (Vec::new(), Vec::new());
                encode_commit(&mut got, &mut scratch, &intent, invoke);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }

    /// The value the script would store for `c` (mirrors `encode` in commit.lua).
    fn stored_value(c: &ContactIntent<'_>) -> Vec<u8> {
        let inst = c
            .instance
            .map(|i| [&b"="[..], i].concat())
            .unwrap_or_default();
        let rid = c.reg_id.map(|r| r.to_string()).unwrap_or_default();
        let mut v = format!(
            "1764820000000 1764810000000 7 42 3 {} {} {}|cid",
            c.match_key.len(),
            inst.len(),
            rid.len()
        )
        .into_bytes();
        v.extend_from_slice(c.match_key);
        v.extend_from_slice(&inst);
        v.extend_from_slice(rid.as_bytes());
        encode_blob(c, &mut v);
        v
    }

    #[test]
    fn reply_round_trip() {
        let c = contact();
        let bare = ContactIntent {
            q: None,
            instance: None,
            reg_id: None,
            path: b"",
            user_agent: b"",
            source: "192.0.2.9:5060".parse().unwrap(),
            transport: Transport::Udp,
            flow: None,
            ..c
        };
        let reply = Reply::Array(Some(vec![
            Reply::Bulk(Some(b"OK".to_vec())),
            Reply::Int(1_764_810_000_000),
            Reply::Int(1),
            Reply::Int(2),
            Reply::Int(3600),
            Reply::Bulk(Some(stored_value(&c))),
            Reply::Int(5),
            Reply::Bulk(Some(stored_value(&bare))),
        ]));
        let r = decode_commit_reply(&reply).unwrap();
        assert_eq!(r.status, CommitStatus::Ok);
        assert_eq!(
            (r.now_ms, r.evicted, r.changed, r.bindings.len()),
            (1_764_810_000_000, 1, 2, 2)
        );
        let b = &r.bindings[0];
        assert_eq!(b.expires_s, 3600);
        assert_eq!(b.expires_at_ms, 1_764_820_000_000);
        assert_eq!((b.cseq, b.branch_hash), (7, 42));
        assert_eq!(b.call_id, b"cid");
        assert_eq!(b.instance, Some(&b"<urn:uuid:1>"[..]));
        assert_eq!((b.reg_id, b.q, b.listen), (Some(7), Some(500), 2));
        assert_eq!(b.transport, Transport::Tcp);
        assert_eq!(b.contact, c.contact);
        assert_eq!(b.path, c.path);
        assert_eq!(b.source, c.source);
        assert_eq!(b.user_agent, c.user_agent);
        assert_eq!(b.flow, c.flow, "the flow token, node included, reads back");
        let b = &r.bindings[1];
        assert_eq!(
            (b.instance, b.reg_id, b.q, b.flow),
            (None, None, None, None)
        );
        assert_eq!(b.source, bare.source);
    }

    #[test]
    fn flow_tokens_read_back_and_bad_ones_are_refused() {
        let t = FlowToken {
            node: b"node-a:5060",
            flow: FlowId {
                core: 0,
                slot: 9,
                generation: u32::MAX,
            },
        };
        let mut text = Vec::new();
        t.write(&mut text);
        assert_eq!(text, b"node-a:5060/0/9/4294967295");
        assert_eq!(t.text_len(), text.len());
        assert_eq!(FlowToken::parse(&text), Some(t));
        for bad in [
            &b"/0/9/1"[..],
            b"n/0/9",
            b"n/x/9/1",
            b"n/0/9/1/",
            b"n/70000/9/1",
        ] {
            assert_eq!(
                FlowToken::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bad_replies_are_errors() {
        let ok = |rest: Vec<Reply>| {
            let mut v = vec![
                Reply::Bulk(Some(b"OK".to_vec())),
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(0),
            ];
            v.extend(rest);
            Reply::Array(Some(v))
        };
        let good = stored_value(&contact());
        assert!(
            decode_commit_reply(&ok(vec![Reply::Int(1), Reply::Bulk(Some(good.clone()))])).is_ok()
        );
        assert_eq!(
            decode_commit_reply(&Reply::Error(b"NOSCRIPT No matching script".to_vec())),
            Err(ReplyError::Server(ClusterError::NoScript))
        );
        assert_eq!(decode_commit_reply(&Reply::Int(1)), Err(ReplyError::Shape));
        assert_eq!(
            decode_commit_reply(&Reply::Array(Some(vec![
                Reply::Bulk(Some(b"WAT".to_vec())),
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(0)
            ]))),
            Err(ReplyError::UnknownStatus)
        );
        // The three-element header of an older script is not this format, nor is a
        // negative change count.
        assert_eq!(
            decode_commit_reply(&Reply::Array(Some(vec![
                Reply::Bulk(Some(b"OK".to_vec())),
                Reply::Int(1),
                Reply::Int(0)
            ]))),
            Err(ReplyError::Shape)
        );
        assert_eq!(
            decode_commit_reply(&Reply::Array(Some(vec![
                Reply::Bulk(Some(b"OK".to_vec())),
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(-1)
            ]))),
            Err(ReplyError::Shape)
        );
        assert_eq!(
            decode_commit_reply(&ok(vec![Reply::Int(1)])),
            Err(ReplyError::Shape)
        );
        assert_eq!(
            decode_commit_reply(&ok(vec![Reply::Int(-1), Reply::Bulk(Some(good.clone()))])),
            Err(ReplyError::BadBinding)
        );
        // Every truncation and a trailing byte of a stored value are caught.
        for n in 0..good.len() {
            let r = ok(vec![Reply::Int(1), Reply::Bulk(Some(good[..n].to_vec()))]);
            assert_eq!(
                decode_commit_reply(&r),
                Err(ReplyError::BadBinding),
                "cut at {n}"
            );
        }
        let mut long = good.clone();
        long.push(b'x');
        assert_eq!(
            decode_commit_reply(&ok(vec![Reply::Int(1), Reply::Bulk(Some(long))])),
            Err(ReplyError::BadBinding)
        );
    }
}
