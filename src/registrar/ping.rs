//! Keep-alive pings of UDP bindings (issue 17; nathelper's `natping`/`sipping`): the
//! shard that owns an AOR pings its UDP bindings itself, from the socket their REGISTER
//! reached, so the NAT pinhole the phone opened stays open, and (OPTIONS) a phone that
//! stopped answering is removed.
//!
//! **Spreading.** The pinger walks the location table by slot once per interval,
//! `slots × elapsed / interval` slots in, so at any time the pings sent are in
//! proportion to the time gone: a steady rate, never a burst at the start of an
//! interval. A binding's phase is its slot (it keeps it for its life, refreshes
//! included), so each binding is pinged once per interval, at the same point of it, and
//! the walk needs no per-binding timer: no memory and no work beyond the ping itself.
//! A round walks the slots the table had when it began (so a table that grows during
//! a round does not make the walk jump ahead in a burst): a new binding is first
//! pinged when the next round reaches its slot, within two intervals (its REGISTER
//! has just refreshed the pinhole anyway).
//! The runtime asks for due pings with [`Registrar::poll_ping`]; [`PING_TICK_MS`]
//! bounds how often that is worth waking for.
//!
//! **Matching replies.** An OPTIONS ping's Via branch says all the owner needs to
//! match the reply: [`BRANCH_PREFIX`], the AOR's owner hash (a reply the kernel gives
//! to another core is forwarded to the owner by it alone, like a request), the
//! binding's slot and a token (a keyed hash of the binding's AOR, Contact and
//! registration time: a slot reused by another binding does not match). The
//! binding's ping state is in its flags: one bit for "a ping is unanswered" and a count
//! of pings lost in a row. A matching reply from the binding's own source clears both;
//! a ping sent while the last is still unanswered counts that one lost, and the
//! binding is removed after `ping_max_lost` through the same commit as a REGISTER
//! (journaled, counted, logged at debug). A REGISTER refresh writes fresh flags.
//! Anything else (a response without our branch, junk, a stale or unknown binding, a
//! reply from another address) is dropped and counted, and never touches a binding.
//!
//! CRLF pings (RFC 5626 §3.5.1's CRLFCRLF) keep the pinhole open but are never
//! answered, so they are only counted as sent.

use std::net::SocketAddr;

use super::nat::PingMethod;
use super::{Destination, Registrar};
use crate::location::{Change, HashedAorKey, Transport};
use crate::placement::{Fnv, aor_hash};

/// How often the pinger is worth waking for, in ms: due pings go out in steps of this
/// at most (at 1M bindings every 30 s, about 330 per step).
pub const PING_TICK_MS: u64 = 10;

/// Slots [`Registrar::poll_ping`] looks at per call at most before it gives up (when
/// they hold no UDP binding); the runtime asks again on its next turn.
pub const PING_SCAN_SLOTS_MAX: usize = 4096;

/// The Via branch of an OPTIONS ping starts with this (RFC 3261 §8.1.1.7 magic cookie
/// first), then `<owner hash: 16 hex>.<slot: 8 hex>.<token: 8 hex>`.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bK.sipreg-ping.";

/// Bytes of a ping branch.
const BRANCH_BYTES: usize = BRANCH_PREFIX.len() + 16 + 1 + 8 + 1 + 8;

/// Flag bit: an OPTIONS ping to this binding is unanswered.
pub const FLAG_PING_UNANSWERED: u32 = 1 << 24;
/// Where the count of pings lost in a row sits in the flags (8 bits).
const LOST_SHIFT: u32 = 16;
const LOST_MASK: u32 = 0xff << LOST_SHIFT;
/// Every flag bit of the ping state.
pub(super) const PING_FLAGS: u32 = FLAG_PING_UNANSWERED | LOST_MASK;

/// What an unexpected reply was, for the counters ([`UNEXPECTED_NAMES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unexpected {
    /// A response without a ping branch, or one that does not parse.
    Branch = 0,
    /// A ping branch for a binding that is gone, another binding, or no ping
    /// outstanding.
    Binding = 1,
    /// From another address (or transport) than the binding's source.
    Address = 2,
}

/// Label of each [`Unexpected`] kind, in index order.
pub const UNEXPECTED_NAMES: [&str; 3] = ["branch", "binding", "address"];

/// The pinger's counters (in [`super::Stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingStats {
    /// Pings sent (either method).
    pub sent: u64,
    /// OPTIONS pings answered by their binding's source.
    pub answered: u64,
    /// OPTIONS pings found unanswered when the next one was due.
    pub lost: u64,
    /// Bindings removed after `ping_max_lost` lost pings in a row.
    pub removed: u64,
    /// Replies dropped, by [`Unexpected`] kind.
    pub unexpected: [u64; 3],
}

/// Where the walk over the table is.
#[derive(Debug, Default)]
pub(super) struct Pinger {
    /// The current round began at this time, in ms (0: not started).
    round_start_ms: u64,
    /// Slots the round walks (the table's when it began; later slots wait a round).
    round_slots: usize,
    /// The next slot to look at.
    cursor: usize,
    /// CSeq of the next OPTIONS.
    cseq: u32,
    /// The UDP listen addresses as text, in listen order (the Via of an OPTIONS).
    local: Vec<Vec<u8>>,
}

/// A parsed ping reply: what its branch names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingReply {
    /// The owner hash of the binding's AOR.
    pub hash: u64,
    /// The binding's slot.
    pub slot: u32,
    /// The binding's token.
    pub token: u32,
}

impl Registrar {
    /// The UDP addresses this shard's sockets are bound to, in listen order: the Via
    /// sent-by of its OPTIONS pings (a wildcard address is written as is; `rport`
    /// makes the phone answer the source anyway, RFC 3581).
    pub fn set_local_addrs(&mut self, addrs: &[SocketAddr]) {
        self.pinger.local = addrs.iter().map(|a| a.to_string().into_bytes()).collect();
    }

    /// Whether this shard pings (an interval is set and the bindings are its own).
    fn pings(&self) -> bool {
        self.config.nat.ping_interval_ms > 0 && self.shared.is_none()
    }

    /// When the next ping is due, in ms since the epoch (`None`: pings are off).
    pub(super) fn ping_due_ms(&self) -> Option<u64> {
        if !self.pings() {
            return None;
        }
        let p = &self.pinger;
        let interval = self.config.nat.ping_interval_ms;
        if p.round_start_ms == 0 {
            return Some(0);
        }
        if p.cursor >= p.round_slots {
            return Some(p.round_start_ms + interval);
        }
        // The walk reaches slot `cursor` at round_start + (cursor + 1) × interval / slots.
        let at = (p.cursor as u128 + 1) * u128::from(interval) / p.round_slots.max(1) as u128;
        let due = p.round_start_ms + u64::try_from(at).unwrap_or(interval);
        Some(due.div_ceil(PING_TICK_MS) * PING_TICK_MS)
    }

    /// Write the next ping due at `now_ms` into `out` (cleared first) and say where it
    /// goes; `None` when no ping is due now (or none was found in
    /// [`PING_SCAN_SLOTS_MAX`] slots: ask again later, [`Registrar::poll_timeout`]
    /// says when). Lost OPTIONS pings are counted on the way, and bindings past
    /// `ping_max_lost` removed.
    pub fn poll_ping(&mut self, now_ms: u64, out: &mut Vec<u8>) -> Option<Destination> {
        if !self.pings() {
            return None;
        }
        let interval = self.config.nat.ping_interval_ms;
        let p = &mut self.pinger;
        if p.cursor >= p.round_slots || p.round_start_ms == 0 {
            let next = p.round_start_ms.saturating_add(interval);
            if p.round_start_ms != 0 && now_ms < next {
                return None;
            }
            // A round late by more than an interval (a stall) starts afresh from now
            // instead of catching up in a burst.
            p.round_start_ms = if now_ms.saturating_sub(next) < interval {
                next
            } else {
                now_ms
            };
            p.round_slots = self.location.slots_len();
            p.cursor = 0;
        }
        let elapsed = now_ms.saturating_sub(p.round_start_ms).min(interval);
        let target = (p.round_slots as u128 * u128::from(elapsed) / u128::from(interval)) as usize;
        let stop = target.min(p.cursor + PING_SCAN_SLOTS_MAX);
        while self.pinger.cursor < stop {
            let slot = self.pinger.cursor;
            self.pinger.cursor += 1;
            if let Some(to) = self.ping_slot(now_ms, slot, out) {
                return Some(to);
            }
        }
        None
    }

    /// The ping for the binding in `slot`, if it is a live UDP binding with a source;
    /// counts a lost OPTIONS and removes the binding past the limit instead.
    fn ping_slot(&mut self, now_ms: u64, slot: usize, out: &mut Vec<u8>) -> Option<Destination> {
        let nat = self.config.nat;
        let b = self.location.binding_at_slot(slot)?;
        let source = b.source();
        if b.is_expired(now_ms)
            || b.transport() != Transport::Udp
            || b.flow().is_some()
            || source.port() == 0
            || source.ip().is_unspecified()
        {
            return None;
        }
        let to = Destination {
            transport: Transport::Udp,
            addr: source,
            listen: b.local_socket(),
            conn: None,
        };
        out.clear();
        if nat.ping_method == PingMethod::Crlf {
            out.extend_from_slice(b"\r\n\r\n");
            self.stats.ping.sent += 1;
            return Some(to);
        }
        let flags = b.flags();
        let mut lost = (flags & LOST_MASK) >> LOST_SHIFT;
        if flags & FLAG_PING_UNANSWERED != 0 {
            lost += 1;
            self.stats.ping.lost += 1;
        }
        if lost >= nat.ping_max_lost {
            self.remove_silent(now_ms, slot, lost);
            return None;
        }
        let token = token(self.config.seed, &b);
        let hash = aor_hash(b.aor_key());
        let slot32 = u32::try_from(slot).unwrap_or(u32::MAX);
        self.pinger.cseq = self.pinger.cseq.wrapping_add(1);
        let local = self
            .pinger
            .local
            .get(usize::from(b.local_socket()))
            .map_or(&b"0.0.0.0:0"[..], Vec::as_slice);
        write_options(
            out,
            b.contact(),
            local,
            hash,
            slot32,
            token,
            self.pinger.cseq,
        );
        let flags = (flags & !LOST_MASK) | (lost.min(0xff) << LOST_SHIFT) | FLAG_PING_UNANSWERED;
        self.location.set_flags_at_slot(slot, flags);
        self.stats.ping.sent += 1;
        Some(to)
    }

    /// Remove the binding in `slot`, silent for `lost` pings, through the normal commit
    /// (journaled, counted). With a failed store nothing changes (as for a REGISTER):
    /// it expires instead.
    fn remove_silent(&mut self, now_ms: u64, slot: usize, lost: u32) {
        if self.store_failed {
            return;
        }
        let (Some(index), Some(b)) = (
            self.location.aor_index_of_slot(slot),
            self.location.binding_at_slot(slot),
        ) else {
            return;
        };
        tracing::debug!(
            aor = %String::from_utf8_lossy(b.aor_key()),
            contact = %String::from_utf8_lossy(b.contact()),
            source = %b.source(),
            lost,
            "NAT ping: binding removed after unanswered OPTIONS pings"
        );
        self.aor_key.set(HashedAorKey::new(b.aor_key()));
        let removal = [Change::Remove { index }];
        if self
            .location
            .apply_hashed(self.aor_key.key(), now_ms, &removal)
            .is_ok()
        {
            self.stats.ping.removed += 1;
            self.journal_aor();
            self.sync_gauges();
        }
    }

    /// A reply to an OPTIONS ping (its branch parsed by [`read_reply`]) arrived from
    /// `source`: it clears the binding's lost count if it is the binding's, from the
    /// binding's own address; otherwise it is counted and dropped.
    pub(super) fn ping_answered(&mut self, source: super::Source, reply: PingReply) {
        let slot = reply.slot as usize;
        let verdict = match self.location.binding_at_slot(slot) {
            Some(b) if token(self.config.seed, &b) == reply.token => {
                if source.transport != Transport::Udp || source.remote != b.source() {
                    Err(Unexpected::Address)
                } else if b.flags() & FLAG_PING_UNANSWERED == 0 {
                    Err(Unexpected::Binding)
                } else {
                    Ok(b.flags() & !(LOST_MASK | FLAG_PING_UNANSWERED))
                }
            }
            _ => Err(Unexpected::Binding),
        };
        match verdict {
            Ok(flags) => {
                self.location.set_flags_at_slot(slot, flags);
                self.stats.ping.answered += 1;
            }
            Err(kind) => self.count_unexpected(kind),
        }
    }

    /// Count a reply that answers no ping of ours.
    pub(super) fn count_unexpected(&mut self, kind: Unexpected) {
        self.stats.ping.unexpected[kind as usize] += 1;
    }
}

/// A binding's token: a keyed hash of what identifies it for its life (AOR, Contact,
/// registration time), so a reply for a binding whose slot was reused matches nothing.
fn token(seed: u64, b: &crate::location::BindingRef<'_>) -> u32 {
    let mut h = Fnv::with_seed(seed);
    h.write(b.aor_key());
    h.write(b.contact());
    h.write(&b.registered_ms().to_le_bytes());
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// An OPTIONS ping to `contact` (RFC 3261 §11: the Request-URI is the Contact), sent
/// from `local` (the socket's address as text). Written with copies only (no
/// formatting machinery): it is paid once per ping.
fn write_options(
    out: &mut Vec<u8>,
    contact: &[u8],
    local: &[u8],
    hash: u64,
    slot: u32,
    token: u32,
    cseq: u32,
) {
    // `<hash>.<slot>.<token>` in lower-case hex: the branch's fields, reused in the
    // Call-ID and (the token) the From tag.
    let mut ids = [0u8; 34];
    hex_into(&mut ids[..16], hash);
    ids[16] = b'.';
    hex_into(&mut ids[17..25], u64::from(slot));
    ids[25] = b'.';
    hex_into(&mut ids[26..], u64::from(token));
    out.extend_from_slice(b"OPTIONS ");
    out.extend_from_slice(contact);
    out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/UDP ");
    out.extend_from_slice(local);
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(BRANCH_PREFIX);
    out.extend_from_slice(&ids);
    out.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\nTo: <");
    out.extend_from_slice(contact);
    out.extend_from_slice(b">\r\nFrom: <sip:ping@");
    out.extend_from_slice(local);
    out.extend_from_slice(b">;tag=");
    out.extend_from_slice(&ids[26..]);
    // Unique per binding and ping: the branch fields and the CSeq.
    out.extend_from_slice(b"\r\nCall-ID: ping.");
    out.extend_from_slice(&ids);
    out.push(b'.');
    push_decimal(out, cseq);
    out.extend_from_slice(b"\r\nCSeq: ");
    push_decimal(out, cseq);
    out.extend_from_slice(b" OPTIONS\r\nContent-Length: 0\r\n\r\n");
}

/// `v` in lower-case hex, zero-padded to fill `dst` (its low `2 × dst.len()` nibbles).
fn hex_into(dst: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = dst.len();
    for (i, d) in dst.iter_mut().enumerate() {
        let shift = 4 * (n - 1 - i);
        *d = HEX[((v >> shift) & 15) as usize];
    }
}

/// `v` in decimal.
fn push_decimal(out: &mut Vec<u8>, v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// If `bytes` is a response, what its top Via branch says: `Some(Ok(reply))` for a ping
/// branch, `Some(Err(()))` for any other response (or one that does not parse), `None`
/// when it is not a response at all.
pub fn read_reply(bytes: &[u8]) -> Option<Result<PingReply, ()>> {
    if !bytes.starts_with(b"SIP/2.0 ") {
        return None;
    }
    Some(top_via_branch(bytes).and_then(parse_branch).ok_or(()))
}

/// The `branch` of the first Via of a message's header section.
fn top_via_branch(bytes: &[u8]) -> Option<&[u8]> {
    // Header lines only: the section ends at the first empty line.
    let head_end = memchr::memmem::find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = bytes.get(..head_end)?;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon)?.trim_ascii();
        if !(name.eq_ignore_ascii_case(b"via") || name.eq_ignore_ascii_case(b"v")) {
            continue;
        }
        let value = line.get(colon + 1..)?;
        // The first via-parm only.
        let first = value.split(|&b| b == b',').next()?;
        return first.split(|&b| b == b';').skip(1).find_map(|param| {
            let (n, v) = param.split_at(param.iter().position(|&b| b == b'=')?);
            n.trim_ascii()
                .eq_ignore_ascii_case(b"branch")
                .then(|| v.get(1..).unwrap_or_default().trim_ascii())
        });
    }
    None
}

/// The fields of a ping branch, if `branch` is one.
fn parse_branch(branch: &[u8]) -> Option<PingReply> {
    if branch.len() != BRANCH_BYTES {
        return None;
    }
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let hex = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
    };
    let hash = hex(rest.get(..16)?)?;
    if rest.get(16) != Some(&b'.') || rest.get(25) != Some(&b'.') {
        return None;
    }
    let slot = u32::try_from(hex(rest.get(17..25)?)?).ok()?;
    let token = u32::try_from(hex(rest.get(26..34)?)?).ok()?;
    Some(PingReply { hash, slot, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_round_trips_and_junk_is_refused() {
        let mut out = Vec::new();
        let local = b"192.0.2.1:5060";
        write_options(
            &mut out,
            b"sip:u@192.168.1.20:5060",
            local,
            0xabc,
            7,
            0xdead_beef,
            1,
        );
        let text = String::from_utf8(out.clone()).unwrap();
        // A request our own parser accepts (what a phone's parser sees).
        let arena = bumpalo::Bump::new();
        let req = crate::sip::parse_request(&out, &arena).expect("a valid OPTIONS");
        assert_eq!(req.method, crate::sip::Method::Options);
        assert_eq!(req.call_id, b"ping.0000000000000abc.00000007.deadbeef.1");
        assert_eq!(req.cseq.seq, 1);
        assert_eq!(
            req.via().branch,
            Some(&b"z9hG4bK.sipreg-ping.0000000000000abc.00000007.deadbeef"[..])
        );
        assert_eq!(req.from.tag, Some(&b"deadbeef"[..]));
        assert!(
            text.starts_with("OPTIONS sip:u@192.168.1.20:5060 SIP/2.0\r\n"),
            "{text}"
        );
        let via = text.lines().nth(1).unwrap();
        let branch = via
            .split("branch=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        // The answer echoes the Via (RFC 3261 §8.2.6.2), with received/rport added.
        let reply =
            format!("SIP/2.0 200 OK\r\n{via};received=203.0.113.9\r\nCSeq: 1 OPTIONS\r\n\r\n");
        let parsed = read_reply(reply.as_bytes()).unwrap().unwrap();
        assert_eq!(
            parsed,
            PingReply {
                hash: 0xabc,
                slot: 7,
                token: 0xdead_beef
            }
        );
        assert_eq!(branch.len(), BRANCH_BYTES);
        // Compact form, other params first, spaces around `=`.
        let reply =
            format!("SIP/2.0 404 Nope\r\nv: SIP/2.0/UDP x;rport=1; branch = {branch}\r\n\r\n");
        assert!(read_reply(reply.as_bytes()).unwrap().is_ok());
        for junk in [
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKother\r\n\r\n"[..],
            b"SIP/2.0 200 OK\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK.sipreg-ping.000000000000zabc.00000007.deadbeef\r\n\r\n",
            b"SIP/2.0 ",
            b"SIP/2.0 200\r\nVia",
        ] {
            assert_eq!(read_reply(junk), Some(Err(())), "{junk:?}");
        }
        assert_eq!(read_reply(b"REGISTER sip:x SIP/2.0\r\n\r\n"), None);
    }
}
