//! One binding's storage: every variable-length field packed into a single allocation.
//!
//! Why packed: at a million bindings per shard, one `Vec`/`String` per field costs 24 bytes
//! of header plus a malloc chunk each (Kamailio spends 1168 B per contact). One `Box<[u8]>`
//! with a 36-byte header of fixed fields and `u16` lengths holds a typical binding (80-byte
//! contact, 40-byte Call-ID, 30-byte User-Agent, 25-byte AOR key) in one 224-byte malloc
//! chunk. (The branch hash lives in the table's slot, not here: four more bytes would
//! take that binding to a 240-byte chunk.) Layout (little-endian):
//!
//! ```text
//! 0  cseq u32        4  flags u32       8  reg-id u32       12 registered s u32
//! 16 source port u16 18 local socket u16 20 q u16 (Q_NONE)  22 transport u8  23 meta u8
//! 24 lengths u16 ×6: AOR key, contact, Call-ID, Path, User-Agent, +sip.instance
//! 36 source address: 4 bytes (IPv4) or 16 bytes (IPv6, meta bit)
//! .. flow (meta bit; stream transports only): core u16, slot u32, generation u32
//! .. AOR key, contact, Call-ID, Path, User-Agent, +sip.instance (bytes as received)
//! ```
//!
//! The blob may be longer than its contents (a refresh reuses a slightly larger blob);
//! readers use the stored lengths only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::branch::BranchHash;

/// The transport a REGISTER arrived on (stored as one byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Transport {
    /// UDP (RFC 3261 §18).
    Udp = 0,
    /// TCP (RFC 3261 §18).
    Tcp = 1,
    /// TLS over TCP (RFC 3261 §26).
    Tls = 2,
    /// WebSocket (RFC 7118).
    Ws = 3,
    /// Secure WebSocket (RFC 7118).
    Wss = 4,
}

impl Transport {
    /// The stored byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The transport for a stored byte, if it names one.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Udp),
            1 => Some(Self::Tcp),
            2 => Some(Self::Tls),
            3 => Some(Self::Ws),
            4 => Some(Self::Wss),
            _ => None,
        }
    }
}

/// The connection a binding was registered over (a flow, RFC 5626 §3): the core
/// holding it, its slot there and the slot's generation, as the runtime named it. Kept
/// in memory only: a connection does not outlive the process, so the store and the
/// shared backend do not carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The core holding the connection.
    pub core: u16,
    /// The connection's slot on that core.
    pub slot: u32,
    /// The slot's generation when the REGISTER arrived.
    pub generation: u32,
}

/// Bytes a stored [`Flow`] takes (only in bindings that have one).
const FLOW_BYTES: usize = 10;

/// Largest q value in thousandths (`q=1.0`, RFC 3261 §20.10).
pub const Q_MAX: u16 = 1000;
/// Stored q when the Contact had none.
const Q_NONE: u16 = u16::MAX;

/// Largest variable-length field, in bytes (lengths are stored as `u16`).
pub const BINDING_FIELD_BYTES_MAX: usize = u16::MAX as usize;

/// Everything the registrar stores for one binding, borrowed from the request being handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewBinding<'a> {
    /// The Contact URI, exactly as received (without the `<>` and header params is the
    /// registrar's choice; stored verbatim).
    pub contact: &'a [u8],
    /// Absolute expiry, ms since the Unix epoch. Stored with 1-second resolution, rounded
    /// up, so a binding never expires early.
    pub expires_ms: u64,
    /// q in thousandths (0..=1000), `None` when the Contact had no `q` parameter.
    pub q: Option<u16>,
    /// The REGISTER's Call-ID.
    pub call_id: &'a [u8],
    /// The REGISTER's CSeq number.
    pub cseq: u32,
    /// The hash of the REGISTER's top Via branch: an equal CSeq with the same branch is
    /// a retransmission, with another branch a new request (RFC 3261 §10.3 step 7).
    pub branch: BranchHash,
    /// The Path header values (RFC 3327), joined by the caller; empty when none.
    pub path: &'a [u8],
    /// Where the REGISTER came from.
    pub source: SocketAddr,
    /// The transport it came over.
    pub transport: Transport,
    /// Index of the local socket that received it.
    pub local_socket: u16,
    /// The connection it came over (stream transports); `None` for datagrams.
    pub flow: Option<Flow>,
    /// The User-Agent header value; empty when none.
    pub user_agent: &'a [u8],
    /// The `+sip.instance` Contact parameter (RFC 5626), if any.
    pub instance: Option<&'a [u8]>,
    /// The `reg-id` Contact parameter (RFC 5626), if any.
    pub reg_id: Option<u32>,
    /// Caller-defined flags.
    pub flags: u32,
}

const OFF_CSEQ: usize = 0;
const OFF_FLAGS: usize = 4;
const OFF_REG_ID: usize = 8;
const OFF_REGISTERED: usize = 12;
const OFF_PORT: usize = 16;
const OFF_LOCAL: usize = 18;
const OFF_Q: usize = 20;
const OFF_TRANSPORT: usize = 22;
const OFF_META: usize = 23;
const OFF_LENS: usize = 24;
/// Number of variable-length fields (AOR key, contact, Call-ID, Path, UA, instance).
const FIELDS: usize = 6;
const OFF_IP: usize = OFF_LENS + 2 * FIELDS;
const _: () = assert!(OFF_IP == 36);

const META_V6: u8 = 1;
const META_REG_ID: u8 = 2;
const META_INSTANCE: u8 = 4;
const META_FLOW: u8 = 8;

const F_KEY: usize = 0;
const F_CONTACT: usize = 1;
const F_CALL_ID: usize = 2;
const F_PATH: usize = 3;
const F_UA: usize = 4;
const F_INSTANCE: usize = 5;

fn ip_len(source: &SocketAddr) -> usize {
    match source.ip() {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

/// Why a binding cannot be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EncodeError {
    /// A field longer than [`BINDING_FIELD_BYTES_MAX`].
    FieldTooLong,
    /// q above [`Q_MAX`].
    QOutOfRange,
}

/// Bytes the packed form of `b` under `aor_key` needs.
pub(crate) fn encoded_len(aor_key: &[u8], b: &NewBinding<'_>) -> Result<usize, EncodeError> {
    if b.q.is_some_and(|q| q > Q_MAX) {
        return Err(EncodeError::QOutOfRange);
    }
    let fields = [
        aor_key.len(),
        b.contact.len(),
        b.call_id.len(),
        b.path.len(),
        b.user_agent.len(),
        b.instance.map_or(0, <[u8]>::len),
    ];
    if fields.iter().any(|&l| l > BINDING_FIELD_BYTES_MAX) {
        return Err(EncodeError::FieldTooLong);
    }
    let flow = b.flow.map_or(0, |_| FLOW_BYTES);
    Ok(OFF_IP + ip_len(&b.source) + flow + fields.iter().sum::<usize>())
}

/// Writes the packed form into `buf` (at least `encoded_len` bytes; checked by the caller).
pub(crate) fn encode(buf: &mut [u8], aor_key: &[u8], b: &NewBinding<'_>, registered_s: u32) {
    let mut w = Writer { buf, pos: 0 };
    w.put(&b.cseq.to_le_bytes());
    w.put(&b.flags.to_le_bytes());
    w.put(&b.reg_id.unwrap_or(0).to_le_bytes());
    w.put(&registered_s.to_le_bytes());
    w.put(&b.source.port().to_le_bytes());
    w.put(&b.local_socket.to_le_bytes());
    w.put(&b.q.unwrap_or(Q_NONE).to_le_bytes());
    w.put(&[b.transport.as_u8()]);
    let mut meta = 0;
    if b.source.is_ipv6() {
        meta |= META_V6;
    }
    if b.reg_id.is_some() {
        meta |= META_REG_ID;
    }
    if b.instance.is_some() {
        meta |= META_INSTANCE;
    }
    if b.flow.is_some() {
        meta |= META_FLOW;
    }
    w.put(&[meta]);
    let instance = b.instance.unwrap_or(&[]);
    let fields: [&[u8]; FIELDS] = [
        aor_key,
        b.contact,
        b.call_id,
        b.path,
        b.user_agent,
        instance,
    ];
    for f in fields {
        // Lengths were checked by `encoded_len`.
        w.put(&u16::try_from(f.len()).unwrap_or(u16::MAX).to_le_bytes());
    }
    match b.source.ip() {
        IpAddr::V4(a) => w.put(&a.octets()),
        IpAddr::V6(a) => w.put(&a.octets()),
    }
    if let Some(flow) = b.flow {
        w.put(&flow.core.to_le_bytes());
        w.put(&flow.slot.to_le_bytes());
        w.put(&flow.generation.to_le_bytes());
    }
    for f in fields {
        w.put(f);
    }
}

struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
}

/// Reads the AOR key of a packed binding (used by the table to find an AOR's entry).
pub(crate) fn blob_aor_key(blob: &[u8]) -> &[u8] {
    View(blob).field(F_KEY)
}

/// Reads the registration time of a packed binding, in seconds.
pub(crate) fn blob_registered_s(blob: &[u8]) -> u32 {
    View(blob).u32_at(OFF_REGISTERED)
}

#[derive(Clone, Copy)]
struct View<'a>(&'a [u8]);

impl<'a> View<'a> {
    fn bytes<const N: usize>(self, off: usize) -> [u8; N] {
        self.0
            .get(off..off + N)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }

    fn u32_at(self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes(off))
    }

    fn u16_at(self, off: usize) -> u16 {
        u16::from_le_bytes(self.bytes(off))
    }

    fn meta(self) -> u8 {
        self.0.get(OFF_META).copied().unwrap_or(0)
    }

    fn flow_start(self) -> usize {
        OFF_IP + if self.meta() & META_V6 != 0 { 16 } else { 4 }
    }

    fn fields_start(self) -> usize {
        self.flow_start()
            + if self.meta() & META_FLOW != 0 {
                FLOW_BYTES
            } else {
                0
            }
    }

    fn field(self, which: usize) -> &'a [u8] {
        let mut start = self.fields_start();
        for i in 0..which {
            start += usize::from(self.u16_at(OFF_LENS + 2 * i));
        }
        let len = usize::from(self.u16_at(OFF_LENS + 2 * which));
        self.0.get(start..start + len).unwrap_or(&[])
    }
}

/// A stored binding, borrowed from the table. Every accessor returns what the registrar
/// passed in [`NewBinding`], except times, which are rounded to whole seconds.
#[derive(Clone, Copy)]
pub struct BindingRef<'a> {
    pub(crate) blob: &'a [u8],
    pub(crate) expiry_s: u32,
    pub(crate) branch: BranchHash,
}

impl<'a> BindingRef<'a> {
    fn view(&self) -> View<'a> {
        View(self.blob)
    }

    /// The AOR key this binding belongs to.
    pub fn aor_key(&self) -> &'a [u8] {
        self.view().field(F_KEY)
    }

    /// The Contact URI as received.
    pub fn contact(&self) -> &'a [u8] {
        self.view().field(F_CONTACT)
    }

    /// The Call-ID of the REGISTER that last wrote this binding.
    pub fn call_id(&self) -> &'a [u8] {
        self.view().field(F_CALL_ID)
    }

    /// The CSeq number of the REGISTER that last wrote this binding.
    pub fn cseq(&self) -> u32 {
        self.view().u32_at(OFF_CSEQ)
    }

    /// The hash of the top Via branch of the REGISTER that last wrote this binding.
    pub fn branch(&self) -> BranchHash {
        self.branch
    }

    /// The stored Path bytes (empty when none).
    pub fn path(&self) -> &'a [u8] {
        self.view().field(F_PATH)
    }

    /// The User-Agent bytes (empty when none).
    pub fn user_agent(&self) -> &'a [u8] {
        self.view().field(F_UA)
    }

    /// The `+sip.instance` value, if any.
    pub fn instance(&self) -> Option<&'a [u8]> {
        (self.view().meta() & META_INSTANCE != 0).then(|| self.view().field(F_INSTANCE))
    }

    /// The `reg-id` value, if any.
    pub fn reg_id(&self) -> Option<u32> {
        (self.view().meta() & META_REG_ID != 0).then(|| self.view().u32_at(OFF_REG_ID))
    }

    /// q in thousandths, if the Contact had one.
    pub fn q(&self) -> Option<u16> {
        let q = self.view().u16_at(OFF_Q);
        (q != Q_NONE).then_some(q)
    }

    /// Expiry instant, ms since the Unix epoch (whole seconds, never earlier than asked).
    pub fn expires_ms(&self) -> u64 {
        u64::from(self.expiry_s) * 1000
    }

    /// Whole seconds left at `now_ms` (0 once expired): the `;expires=` of a 200 OK.
    pub fn remaining_s(&self, now_ms: u64) -> u32 {
        let left_ms = self.expires_ms().saturating_sub(now_ms);
        u32::try_from(left_ms / 1000).unwrap_or(u32::MAX)
    }

    /// True once `now_ms` has reached the expiry (the binding must not be returned, RFC
    /// 3261 §10.2.1, even if `expire` has not removed it yet).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms() <= now_ms
    }

    /// When the binding was first inserted (a refresh keeps it), ms since the Unix epoch,
    /// whole seconds.
    pub fn registered_ms(&self) -> u64 {
        u64::from(blob_registered_s(self.blob)) * 1000
    }

    /// Source address and port of the REGISTER.
    pub fn source(&self) -> SocketAddr {
        let v = self.view();
        let ip = if v.meta() & META_V6 != 0 {
            IpAddr::V6(Ipv6Addr::from(v.bytes::<16>(OFF_IP)))
        } else {
            IpAddr::V4(Ipv4Addr::from(v.bytes::<4>(OFF_IP)))
        };
        SocketAddr::new(ip, v.u16_at(OFF_PORT))
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        Transport::from_u8(self.blob.get(OFF_TRANSPORT).copied().unwrap_or(0))
            .unwrap_or(Transport::Udp)
    }

    /// Index of the local socket that received the REGISTER.
    pub fn local_socket(&self) -> u16 {
        self.view().u16_at(OFF_LOCAL)
    }

    /// The connection the REGISTER came over, if it came over one.
    pub fn flow(&self) -> Option<Flow> {
        let v = self.view();
        let at = v.flow_start();
        (v.meta() & META_FLOW != 0).then(|| Flow {
            core: v.u16_at(at),
            slot: v.u32_at(at + 2),
            generation: v.u32_at(at + 6),
        })
    }

    /// Caller-defined flags.
    pub fn flags(&self) -> u32 {
        self.view().u32_at(OFF_FLAGS)
    }
}

impl std::fmt::Debug for BindingRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingRef")
            .field("contact", &String::from_utf8_lossy(self.contact()))
            .field("expires_ms", &self.expires_ms())
            .field("q", &self.q())
            .field("call_id", &String::from_utf8_lossy(self.call_id()))
            .field("cseq", &self.cseq())
            .field("source", &self.source())
            .finish_non_exhaustive()
    }
}
