//! Record framing and the binding-set encoding (pure: no I/O, no clock).
//!
//! One record per AOR change, carrying the AOR's whole binding set after the commit
//! (or "AOR gone"). The last record of an AOR wins at load, so replay is idempotent
//! and only the order within a shard matters; a lost tail costs whole AOR states,
//! never half of one.
//!
//! ```text
//! frame   = len u32 | crc32(len bytes ++ payload) u32 | payload (len bytes)
//! payload = kind u8 (3 set, 2 gone; 1 set v1) | key_len u16 | key | [count u16 | binding*]
//! binding = expires_s u32 | registered_s u32 | cseq u32 | flags u32 | reg_id u32
//!           | q u16 (0xffff: none) | transport u8 | meta u8 | local u16 | port u16
//!           | branch u32 (kind 3 only)
//!           | ip (4 or 16, meta bit 1) | lens u16 ×5 | contact call-id path ua instance
//! ```
//! Kind 1 is the "set" of store format version 1, before bindings kept the hash of the
//! branch that wrote them (issue 14); it is still read, its bindings get
//! [`BranchHash::UNKNOWN`], and is never written. A new kind rather than a new field in
//! kind 1: a record says by itself how to read it, whatever segment it sits in (the
//! load re-frames old records unchanged into new segments).
//! Little-endian throughout. A zero length (no payload is empty) followed only by
//! zeros is the end of a pre-zeroed segment, not a record.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::location::{AorRef, BindingRef, BranchHash, NewBinding, Transport};

/// Bytes of a frame header (length and CRC).
pub const FRAME_HEADER_BYTES: usize = 8;
/// Largest payload accepted at load, in bytes (256 bindings of 64 KiB fields would be
/// more, but the table refuses bindings past 8 KiB; anything larger is corruption).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 4 << 20;

/// "Set" of format version 1: bindings without a branch hash (read, never written).
const KIND_SET_V1: u8 = 1;
const KIND_GONE: u8 = 2;
/// "Set" with each binding's branch hash.
const KIND_SET: u8 = 3;
/// Fixed bytes of a binding before its address: expires registered cseq flags reg_id
/// (4 each), q (2), transport meta (1 each), local port (2 each).
const BINDING_FIXED_V1_BYTES: usize = 28;
/// The same in a [`KIND_SET`] record: the branch hash (4) follows.
const BINDING_FIXED_BYTES: usize = BINDING_FIXED_V1_BYTES + 4;
const META_V6: u8 = 1;
const META_REG_ID: u8 = 2;
const META_INSTANCE: u8 = 4;
const Q_NONE: u16 = u16::MAX;

/// One binding as stored: every field the table keeps, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredBinding<'a> {
    /// Contact URI.
    pub contact: &'a [u8],
    /// Call-ID of the REGISTER that last wrote it.
    pub call_id: &'a [u8],
    /// Path header values.
    pub path: &'a [u8],
    /// User-Agent.
    pub user_agent: &'a [u8],
    /// `+sip.instance`.
    pub instance: Option<&'a [u8]>,
    /// `reg-id`.
    pub reg_id: Option<u32>,
    /// q in thousandths.
    pub q: Option<u16>,
    /// CSeq number.
    pub cseq: u32,
    /// Hash of the top Via branch of the REGISTER that last wrote it
    /// ([`BranchHash::UNKNOWN`] when read from a version 1 record).
    pub branch: BranchHash,
    /// Caller-defined flags.
    pub flags: u32,
    /// Absolute expiry, seconds since the Unix epoch.
    pub expires_s: u32,
    /// First registration, seconds since the Unix epoch.
    pub registered_s: u32,
    /// Source of the REGISTER.
    pub source: SocketAddr,
    /// Transport it came over.
    pub transport: Transport,
    /// Local socket index.
    pub local_socket: u16,
}

impl<'a> From<BindingRef<'a>> for StoredBinding<'a> {
    fn from(b: BindingRef<'a>) -> Self {
        Self {
            contact: b.contact(),
            call_id: b.call_id(),
            path: b.path(),
            user_agent: b.user_agent(),
            instance: b.instance(),
            reg_id: b.reg_id(),
            q: b.q(),
            cseq: b.cseq(),
            branch: b.branch(),
            flags: b.flags(),
            expires_s: u32::try_from(b.expires_ms() / 1000).unwrap_or(u32::MAX),
            registered_s: u32::try_from(b.registered_ms() / 1000).unwrap_or(u32::MAX),
            source: b.source(),
            transport: b.transport(),
            local_socket: b.local_socket(),
        }
    }
}

impl<'a> StoredBinding<'a> {
    /// The table's insert form of this binding.
    pub fn to_new(&self) -> NewBinding<'a> {
        NewBinding {
            contact: self.contact,
            expires_ms: u64::from(self.expires_s) * 1000,
            q: self.q,
            call_id: self.call_id,
            cseq: self.cseq,
            branch: self.branch,
            path: self.path,
            source: self.source,
            transport: self.transport,
            local_socket: self.local_socket,
            // A connection does not outlive the process: a restored binding has none.
            flow: None,
            user_agent: self.user_agent,
            instance: self.instance,
            reg_id: self.reg_id,
            flags: self.flags,
        }
    }

    /// True when the binding has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        u64::from(self.expires_s) * 1000 <= now_ms
    }
}

/// Why a payload could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Ends before its fields do.
    Short,
    /// An unknown record kind or transport.
    Invalid,
}

impl DecodeError {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Short => "record shorter than its fields",
            Self::Invalid => "record with an unknown kind or value",
        }
    }
}

/// A decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// The AOR's bindings after a commit.
    Set {
        /// AOR key.
        key: &'a [u8],
        /// Its bindings, in table order.
        bindings: Vec<StoredBinding<'a>>,
    },
    /// The AOR has no binding left.
    Gone {
        /// AOR key.
        key: &'a [u8],
    },
}

impl<'a> Record<'a> {
    /// The AOR key.
    pub fn key(&self) -> &'a [u8] {
        match self {
            Self::Set { key, .. } | Self::Gone { key } => key,
        }
    }
}

/// Append one framed record for `aor_key` in its state `aor` (None: gone) to `out`.
pub fn encode_aor(out: &mut Vec<u8>, aor_key: &[u8], aor: Option<AorRef<'_>>) {
    let start = begin_frame(out);
    match aor {
        Some(aor) if !aor.is_empty() => {
            put_set_header(out, aor_key, aor.len());
            for b in aor.iter() {
                put_binding(out, &StoredBinding::from(b));
            }
        }
        _ => put_gone(out, aor_key),
    }
    end_frame(out, start);
}

/// Append one framed "set" record of `bindings` (at most 65535) to `out`.
pub fn encode_set(out: &mut Vec<u8>, aor_key: &[u8], bindings: &[StoredBinding<'_>]) {
    let start = begin_frame(out);
    if bindings.is_empty() {
        put_gone(out, aor_key);
    } else {
        put_set_header(out, aor_key, bindings.len());
        for b in bindings {
            put_binding(out, b);
        }
    }
    end_frame(out, start);
}

/// Frame an already encoded payload (compaction re-frames what it loaded).
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let start = begin_frame(out);
    out.extend_from_slice(payload);
    end_frame(out, start);
}

fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    start
}

fn end_frame(out: &mut [u8], start: usize) {
    let len = out.len() - start - FRAME_HEADER_BYTES;
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(out.get(start + FRAME_HEADER_BYTES..).unwrap_or(&[]));
    let crc = crc.finalize().to_le_bytes();
    if let Some(h) = out.get_mut(start..start + FRAME_HEADER_BYTES) {
        h[..4].copy_from_slice(&len);
        h[4..].copy_from_slice(&crc);
    }
}

fn put_u16(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&u16::try_from(v).unwrap_or(u16::MAX).to_le_bytes());
}

fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    put_u16(out, key.len());
    out.extend_from_slice(key);
}

fn put_gone(out: &mut Vec<u8>, key: &[u8]) {
    out.push(KIND_GONE);
    put_key(out, key);
}

fn put_set_header(out: &mut Vec<u8>, key: &[u8], count: usize) {
    out.push(KIND_SET);
    put_key(out, key);
    put_u16(out, count);
}

fn put_binding(out: &mut Vec<u8>, b: &StoredBinding<'_>) {
    out.extend_from_slice(&b.expires_s.to_le_bytes());
    out.extend_from_slice(&b.registered_s.to_le_bytes());
    out.extend_from_slice(&b.cseq.to_le_bytes());
    out.extend_from_slice(&b.flags.to_le_bytes());
    out.extend_from_slice(&b.reg_id.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&b.q.unwrap_or(Q_NONE).to_le_bytes());
    out.push(b.transport.as_u8());
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
    out.push(meta);
    out.extend_from_slice(&b.local_socket.to_le_bytes());
    out.extend_from_slice(&b.source.port().to_le_bytes());
    out.extend_from_slice(&b.branch.to_u32().to_le_bytes());
    match b.source.ip() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
    let instance = b.instance.unwrap_or(&[]);
    let fields: [&[u8]; 5] = [b.contact, b.call_id, b.path, b.user_agent, instance];
    for f in fields {
        put_u16(out, f.len());
    }
    for f in fields {
        out.extend_from_slice(f);
    }
}

/// What the next frame in a buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole record with a good CRC; `next` is the offset after it.
    Record {
        /// The payload.
        payload: &'a [u8],
        /// Offset of the next frame.
        next: usize,
    },
    /// No byte left, or only zeros (the pre-zeroed room of a segment): a clean end.
    End,
    /// A frame that is cut short, oversized or fails its CRC: a torn or corrupt tail.
    Bad(&'static str),
}

/// Read the frame at `offset` of `buf`.
pub fn next_frame(buf: &[u8], offset: usize) -> Frame<'_> {
    let Some(rest) = buf.get(offset..) else {
        return Frame::Bad("offset past the end");
    };
    let Some(header) = rest.get(..FRAME_HEADER_BYTES) else {
        return end_or_bad(rest, "frame header cut short");
    };
    let len_bytes: [u8; 4] = [header[0], header[1], header[2], header[3]];
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len == 0 {
        // No record is empty (a payload starts with its kind): this is the
        // pre-zeroed room of the segment, the end of the log if zeros run to the end.
        return end_or_bad(rest, "zero-length record followed by data");
    }
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Frame::Bad("record length out of range");
    }
    let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
        return Frame::Bad("record cut short");
    };
    let mut h = crc32fast::Hasher::new();
    h.update(&len_bytes);
    h.update(payload);
    if h.finalize() != crc {
        return Frame::Bad("checksum mismatch");
    }
    Frame::Record {
        payload,
        next: offset + FRAME_HEADER_BYTES + len,
    }
}

/// The clean end when `rest` is all zeros (nothing, or the unwritten pre-zeroed room
/// of a segment), else a bad frame: non-zero bytes where no record starts are garbage.
fn end_or_bad(rest: &[u8], reason: &'static str) -> Frame<'static> {
    if rest.iter().all(|&b| b == 0) {
        Frame::End
    } else {
        Frame::Bad(reason)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or(DecodeError::Short)?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Decode one payload.
pub fn decode(payload: &[u8]) -> Result<Record<'_>, DecodeError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let kind = r.u8()?;
    let key_len = usize::from(r.u16()?);
    let key = r.take(key_len)?;
    match kind {
        KIND_GONE => Ok(Record::Gone { key }),
        KIND_SET | KIND_SET_V1 => {
            let count = usize::from(r.u16()?);
            let mut bindings = Vec::with_capacity(count.min(256));
            for _ in 0..count {
                bindings.push(decode_binding(&mut r, kind == KIND_SET)?);
            }
            Ok(Record::Set { key, bindings })
        }
        _ => Err(DecodeError::Invalid),
    }
}

/// Kind and key of a payload without decoding its bindings: (true for "set", key).
/// The start-up load needs only these to keep the last record per AOR.
pub fn peek(payload: &[u8]) -> Result<(bool, &[u8]), DecodeError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let kind = r.u8()?;
    let key_len = usize::from(r.u16()?);
    let key = r.take(key_len)?;
    match kind {
        KIND_SET | KIND_SET_V1 => Ok((true, key)),
        KIND_GONE => Ok((false, key)),
        _ => Err(DecodeError::Invalid),
    }
}

/// (bindings, live bindings at `now_ms`) of a payload, walked without allocating: the
/// load re-frames a record whose bindings are all live as it is, unchanged.
pub fn live_count(payload: &[u8], now_ms: u64) -> Result<(usize, usize), DecodeError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let kind = r.u8()?;
    let key_len = usize::from(r.u16()?);
    r.take(key_len)?;
    let fixed_bytes = match kind {
        KIND_SET => BINDING_FIXED_BYTES,
        KIND_SET_V1 => BINDING_FIXED_V1_BYTES,
        KIND_GONE => return Ok((0, 0)),
        _ => return Err(DecodeError::Invalid),
    };
    let count = usize::from(r.u16()?);
    let mut live = 0;
    for _ in 0..count {
        // The fixed part (expires first, meta at 23), then the address.
        let fixed = r.take(fixed_bytes)?;
        let expires_s = u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
        let meta = fixed[23];
        r.take(if meta & META_V6 != 0 { 16 } else { 4 })?;
        let mut fields = 0;
        for _ in 0..5 {
            fields += usize::from(r.u16()?);
        }
        r.take(fields)?;
        if u64::from(expires_s) * 1000 > now_ms {
            live += 1;
        }
    }
    Ok((count, live))
}

/// One binding of a "set" record; `with_branch` for [`KIND_SET`], not [`KIND_SET_V1`].
fn decode_binding<'a>(
    r: &mut Reader<'a>,
    with_branch: bool,
) -> Result<StoredBinding<'a>, DecodeError> {
    let expires_s = r.u32()?;
    let registered_s = r.u32()?;
    let cseq = r.u32()?;
    let flags = r.u32()?;
    let reg_id = r.u32()?;
    let q = r.u16()?;
    let transport = Transport::from_u8(r.u8()?).ok_or(DecodeError::Invalid)?;
    let meta = r.u8()?;
    let local_socket = r.u16()?;
    let port = r.u16()?;
    let branch = if with_branch {
        BranchHash::from_u32(r.u32()?)
    } else {
        BranchHash::UNKNOWN
    };
    let ip = if meta & META_V6 != 0 {
        let b: [u8; 16] = r.take(16)?.try_into().map_err(|_| DecodeError::Short)?;
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        let b: [u8; 4] = r.take(4)?.try_into().map_err(|_| DecodeError::Short)?;
        IpAddr::V4(Ipv4Addr::from(b))
    };
    let mut lens = [0usize; 5];
    for l in &mut lens {
        *l = usize::from(r.u16()?);
    }
    let contact = r.take(lens[0])?;
    let call_id = r.take(lens[1])?;
    let path = r.take(lens[2])?;
    let user_agent = r.take(lens[3])?;
    let instance = r.take(lens[4])?;
    Ok(StoredBinding {
        contact,
        call_id,
        path,
        user_agent,
        instance: (meta & META_INSTANCE != 0).then_some(instance),
        reg_id: (meta & META_REG_ID != 0).then_some(reg_id),
        q: (q != Q_NONE).then_some(q),
        cseq,
        branch,
        flags,
        expires_s,
        registered_s,
        source: SocketAddr::new(ip, port),
        transport,
        local_socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>() -> StoredBinding<'a> {
        StoredBinding {
            contact: b"sip:alice@192.0.2.1:5060",
            call_id: b"abc@host",
            path: b"<sip:p1.example.com;lr>",
            user_agent: b"phone/1.0",
            instance: Some(b"<urn:uuid:1>"),
            reg_id: Some(1),
            q: Some(500),
            cseq: 7,
            branch: BranchHash::of(Some(b"z9hG4bK7")),
            flags: 3,
            expires_s: 2_000_000_000,
            registered_s: 1_900_000_000,
            source: "[2001:db8::1]:5070".parse().unwrap(),
            transport: Transport::Tcp,
            local_socket: 1,
        }
    }

    #[test]
    fn set_and_gone_round_trip() {
        let mut buf = Vec::new();
        let other = StoredBinding {
            instance: None,
            reg_id: None,
            q: None,
            source: "192.0.2.9:5060".parse().unwrap(),
            ..sample()
        };
        encode_set(&mut buf, b"alice@example.com", &[sample(), other]);
        encode_set(&mut buf, b"bob@example.com", &[]);
        let Frame::Record { payload, next } = next_frame(&buf, 0) else {
            panic!("first frame")
        };
        assert_eq!(
            decode(payload).unwrap(),
            Record::Set {
                key: b"alice@example.com",
                bindings: vec![sample(), other]
            }
        );
        let Frame::Record { payload, next } = next_frame(&buf, next) else {
            panic!("second frame")
        };
        assert_eq!(
            decode(payload).unwrap(),
            Record::Gone {
                key: b"bob@example.com"
            }
        );
        assert_eq!(next_frame(&buf, next), Frame::End);
    }

    #[test]
    fn torn_and_corrupt_frames_are_bad() {
        let mut buf = Vec::new();
        encode_set(&mut buf, b"alice@example.com", &[sample()]);
        for cut in 1..buf.len() {
            assert!(matches!(next_frame(&buf[..cut], 0), Frame::Bad(_)), "{cut}");
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(matches!(next_frame(&bad, 0), Frame::Bad(_)), "byte {i}");
        }
    }

    #[test]
    fn zeros_end_the_log_but_garbage_after_them_is_bad() {
        let mut buf = Vec::new();
        encode_set(&mut buf, b"alice@example.com", &[sample()]);
        let end = buf.len();
        buf.resize(end + 4096, 0);
        let Frame::Record { next, .. } = next_frame(&buf, 0) else {
            panic!("first frame")
        };
        assert_eq!(next, end);
        assert_eq!(next_frame(&buf, next), Frame::End);
        assert_eq!(next_frame(&buf[..end + 5], next), Frame::End);
        let mut garbage = buf.clone();
        garbage[end + 3000] = 1;
        assert!(matches!(next_frame(&garbage, next), Frame::Bad(_)));
        let mut short = buf[..end + 5].to_vec();
        short[end + 4] = 7;
        assert!(matches!(next_frame(&short, next), Frame::Bad(_)));
        // A record torn inside the zeroed room (its tail still zeros) is bad, not an end.
        let mut torn = buf.clone();
        encode_set(&mut torn, b"bob@example.com", &[sample()]);
        let torn_len = torn.len() - buf.len();
        let copy = torn[buf.len()..].to_vec();
        let mut torn = buf.clone();
        torn[end..end + torn_len / 2].copy_from_slice(&copy[..torn_len / 2]);
        assert!(matches!(next_frame(&torn, end), Frame::Bad(_)));
    }

    #[test]
    fn peek_and_live_count_agree_with_decode() {
        let mut buf = Vec::new();
        let old = StoredBinding {
            expires_s: 100,
            source: "192.0.2.9:5060".parse().unwrap(),
            instance: None,
            ..sample()
        };
        encode_set(&mut buf, b"alice@example.com", &[sample(), old, sample()]);
        encode_set(&mut buf, b"bob@example.com", &[]);
        let Frame::Record { payload, next } = next_frame(&buf, 0) else {
            panic!("first frame")
        };
        assert_eq!(peek(payload), Ok((true, &b"alice@example.com"[..])));
        assert_eq!(live_count(payload, 100_000), Ok((3, 2)));
        assert_eq!(live_count(payload, 99_999), Ok((3, 3)));
        for cut in 0..payload.len() {
            assert!(live_count(&payload[..cut], 0).is_err(), "{cut}");
        }
        let Frame::Record { payload, .. } = next_frame(&buf, next) else {
            panic!("second frame")
        };
        assert_eq!(peek(payload), Ok((false, &b"bob@example.com"[..])));
        assert_eq!(live_count(payload, 0), Ok((0, 0)));
        assert_eq!(peek(&[9, 0, 0]), Err(DecodeError::Invalid));
    }

    /// A version 1 "set" payload of `bindings`: what sipreg wrote before issue 14.
    fn v1_payload(key: &[u8], bindings: &[StoredBinding<'_>]) -> Vec<u8> {
        let mut p = vec![KIND_SET_V1];
        put_key(&mut p, key);
        put_u16(&mut p, bindings.len());
        for b in bindings {
            let mut one = Vec::new();
            put_binding(&mut one, b);
            // Drop the branch hash that follows the fixed version 1 part.
            one.drain(BINDING_FIXED_V1_BYTES..BINDING_FIXED_BYTES);
            p.extend_from_slice(&one);
        }
        p
    }

    #[test]
    fn version_1_records_load_with_an_unknown_branch() {
        let old = StoredBinding {
            expires_s: 100,
            source: "192.0.2.9:5060".parse().unwrap(),
            ..sample()
        };
        let payload = v1_payload(b"alice@example.com", &[sample(), old]);
        let unknown = |b: StoredBinding<'static>| StoredBinding {
            branch: BranchHash::UNKNOWN,
            ..b
        };
        assert_eq!(
            decode(&payload).unwrap(),
            Record::Set {
                key: b"alice@example.com",
                bindings: vec![unknown(sample()), unknown(old)]
            }
        );
        assert_eq!(peek(&payload), Ok((true, &b"alice@example.com"[..])));
        assert_eq!(live_count(&payload, 100_000), Ok((2, 1)));
        // And the branch survives a version 2 round trip.
        let mut buf = Vec::new();
        encode_set(&mut buf, b"alice@example.com", &[sample()]);
        let Frame::Record { payload, .. } = next_frame(&buf, 0) else {
            panic!("frame")
        };
        let Ok(Record::Set { bindings, .. }) = decode(payload) else {
            panic!("set")
        };
        assert_eq!(bindings[0].branch, BranchHash::of(Some(b"z9hG4bK7")));
    }

    #[test]
    fn garbage_payload_never_panics() {
        for len in 0..64 {
            let payload: Vec<u8> = (0..len).map(|i| (i * 37 + 1) as u8).collect();
            let _ = decode(&payload);
        }
        assert_eq!(decode(&[9, 0, 0]), Err(DecodeError::Invalid));
        assert_eq!(decode(&[1, 5, 0, b'a']), Err(DecodeError::Short));
    }
}
