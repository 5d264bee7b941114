//! The registrar's side of SIP Outbound (RFC 5626 §6) and of flows: which REGISTERs
//! get Outbound processing, which bindings are reachable only through the connection
//! they came over, and what happens to them when that connection closes.
//!
//! Outbound applies to a REGISTER that says `Supported: outbound` and has a Contact
//! with `reg-id` (§6). If the request came through a proxy (more than one via-parm)
//! whose Path does not start with a URI carrying `ob`, the proxy does not do Outbound
//! and the request is refused with 439 (§6, §11.6). A `reg-id` without `Supported:
//! outbound` from behind such a proxy is ignored, as §6 says; from a UA directly, it
//! keeps its RFC 5626 matching (instance + reg-id), as before. The 200 of an Outbound
//! REGISTER carries `Require: outbound` (§6).
//!
//! A binding registered directly (one via-parm) over a connection records that
//! connection as its flow ([`FlowId`]). When the runtime reports the connection
//! closed ([`Registrar::flow_closed`]):
//! - an Outbound binding on it is removed, through the normal commit (journaled,
//!   counted in `Stats::flow_removed`): its flow is the only way to the UA, and the UA
//!   registers a new one (§4.4, §5.2);
//! - any other binding on it stays until it expires, as Kamailio and OpenSIPS keep it,
//!   marked flow-down ([`FLAG_FLOW_DOWN`], counted in `Stats::flow_down`).
//!
//! The shard keeps, per live flow, the AOR keys that have a binding on it, so a close
//! touches only those AORs. An AOR stays listed after its binding moved or expired (a
//! close then finds nothing there); the list of one flow is bounded by
//! [`FLOW_AORS_MAX`] and the number of flows by [`FLOWS_MAX`]: past them a binding is
//! not listed (counted in `Stats::flow_untracked`) and simply expires.

use std::collections::HashMap;

use super::Registrar;
use super::outcome::Outcome;
use crate::location::{Change, FlowId, HashedAorKey};
use crate::sip::{self, Contact, Request};

/// Binding flag: registered with Outbound processing (RFC 5626 §6).
pub const FLAG_OUTBOUND: u32 = 1;
/// Binding flag: its flow (connection) has closed; the binding stays until it expires.
pub const FLAG_FLOW_DOWN: u32 = 2;

/// AOR keys listed per flow, at most (a UA's connection carries one or a few AORs).
pub const FLOW_AORS_MAX: usize = 16;
/// Flows a shard tracks at most (bounds the index whatever the connection limits).
pub const FLOWS_MAX: usize = 1 << 20;

/// Largest `reg-id` (RFC 5626 §4.2.1: `1 to (2^31 - 1)`).
pub const REG_ID_MAX: u32 = (1 << 31) - 1;

/// How one REGISTER is treated under RFC 5626 §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outbound {
    /// Outbound processing applies: bindings with a `reg-id` are flagged Outbound and
    /// the 200 carries `Require: outbound`.
    pub(crate) applies: bool,
    /// The request came straight from the UA (one via-parm).
    pub(crate) first_hop: bool,
    /// `reg-id` is to be ignored (§6: through a proxy without Outbound, no
    /// `Supported: outbound`).
    pub(crate) ignore_reg_id: bool,
}

/// Decide how RFC 5626 §6 treats `req`, or the outcome that refuses it. Its Via is
/// read (is the UA the first hop?) only when something depends on it: a `reg-id`, or
/// `want_first_hop` (the request came over a connection, whose flow a first-hop
/// binding records). A plain REGISTER without `reg-id` over UDP costs a loop over its
/// contacts.
pub(crate) fn outbound(
    req: &Request<'_>,
    contacts: &[Contact<'_>],
    want_first_hop: bool,
) -> Result<Outbound, Outcome> {
    let mut with_reg_id = false;
    for c in contacts {
        if let Some(r) = c.reg_id {
            if r == 0 || r > REG_ID_MAX {
                return Err(Outcome::RegIdInvalid);
            }
            with_reg_id = true;
        }
    }
    let first_hop = (want_first_hop || with_reg_id) && first_hop(req.echo.vias);
    if !with_reg_id {
        return Ok(Outbound {
            applies: false,
            first_hop,
            ignore_reg_id: false,
        });
    }
    let supported = supports_outbound(req);
    let via_outbound_proxy = first_hop || path_starts_with_ob(req.path);
    if supported && !via_outbound_proxy {
        return Err(Outcome::FirstHopLacksOutbound);
    }
    if supported
        && contacts
            .iter()
            .filter(|c| c.reg_id.is_some() && c.expires != Some(0))
            .count()
            > 1
    {
        return Err(Outcome::RegIdMultiple);
    }
    Ok(Outbound {
        applies: supported,
        first_hop,
        ignore_reg_id: !supported && !via_outbound_proxy,
    })
}

/// Whether the request lists `outbound` in `Supported`.
pub(crate) fn supports_outbound(req: &Request<'_>) -> bool {
    req.supported
        .iter()
        .any(|t| t.eq_ignore_ascii_case(b"outbound"))
}

/// One via-parm in all: the UA sent the request to us directly (RFC 5626 §6: "the
/// registrar MUST check from its Via header field if the registrar is the first hop").
fn first_hop(vias: &[&[u8]]) -> bool {
    match vias {
        [one] => !has_comma_outside_quotes(one),
        _ => false,
    }
}

fn has_comma_outside_quotes(value: &[u8]) -> bool {
    if memchr::memchr(b',', value).is_none() {
        return false;
    }
    let mut quoted = false;
    let mut escaped = false;
    for &b in value {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return true,
            _ => {}
        }
    }
    false
}

/// The first Path URI carries `ob` (RFC 5626 §5.1: the edge proxy does Outbound).
fn path_starts_with_ob(path: &[&[u8]]) -> bool {
    let Some(first) = path.first() else {
        return false;
    };
    let inner = match (memchr::memchr(b'<', first), memchr::memchr(b'>', first)) {
        (Some(open), Some(close)) if open < close => &first[open + 1..close],
        _ => first.split(|&b| b == b',').next().unwrap_or(b""),
    };
    sip::parse_uri(inner.trim_ascii()).is_ok_and(|u| u.param(b"ob").is_some())
}

/// Per shard: the AOR keys with a binding on each live flow.
#[derive(Debug, Default)]
pub(crate) struct Flows {
    aors: HashMap<FlowId, Vec<Box<[u8]>>>,
}

impl Flows {
    /// Remember that `aor_key` has a binding on `flow`; false when it could not be
    /// listed (a bound reached).
    pub(crate) fn note(&mut self, flow: FlowId, aor_key: &[u8]) -> bool {
        if !self.aors.contains_key(&flow) && self.aors.len() >= FLOWS_MAX {
            return false;
        }
        let keys = self.aors.entry(flow).or_default();
        if keys.iter().any(|k| **k == *aor_key) {
            return true;
        }
        if keys.len() >= FLOW_AORS_MAX {
            return false;
        }
        keys.push(aor_key.into());
        true
    }
}

impl Registrar {
    /// The connection `flow` has closed (the runtime tells every shard): remove its
    /// Outbound bindings, mark the others flow-down. Returns (removed, marked down).
    pub fn flow_closed(&mut self, now_ms: u64, flow: FlowId) -> (usize, usize) {
        let Some(keys) = self.flows.aors.remove(&flow) else {
            return (0, 0);
        };
        let (mut removed, mut down) = (0, 0);
        for key in keys {
            let hashed = HashedAorKey::new(&key);
            let mut removals: Vec<Change<'static>> = Vec::new();
            let mut mark: Vec<(usize, u32)> = Vec::new();
            if let Some(aor) = self.location.get_hashed(hashed) {
                for (index, b) in aor.iter().enumerate() {
                    if b.flow() != Some(flow) || b.is_expired(now_ms) {
                        continue;
                    }
                    if b.flags() & FLAG_OUTBOUND != 0 {
                        removals.push(Change::Remove { index });
                    } else if b.flags() & FLAG_FLOW_DOWN == 0 {
                        mark.push((index, b.flags() | FLAG_FLOW_DOWN));
                    }
                }
            }
            // Marks first: they do not move bindings, removals do.
            for (index, flags) in mark {
                if self.location.set_flags(hashed, index, flags) {
                    down += 1;
                }
            }
            if removals.is_empty() || self.store_failed {
                // With a failed store nothing may change (as for a REGISTER): the
                // bindings expire instead.
                continue;
            }
            self.aor_key.set(hashed);
            if let Ok(summary) = self
                .location
                .apply_hashed(self.aor_key.key(), now_ms, &removals)
            {
                removed += summary.removed;
                self.journal_aor();
            }
        }
        self.stats.flow_removed += removed as u64;
        self.stats.flow_down += down as u64;
        self.sync_gauges();
        (removed, down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_via_parm_is_the_first_hop() {
        assert!(first_hop(&[b"SIP/2.0/TCP ua.example.com;branch=z9hG4bK1"]));
        assert!(!first_hop(&[
            b"SIP/2.0/TCP edge.example.com;branch=z9hG4bK2",
            b"SIP/2.0/TCP ua.example.com;branch=z9hG4bK1",
        ]));
        assert!(!first_hop(&[
            b"SIP/2.0/TCP edge;branch=z9hG4bK2, SIP/2.0/TCP ua;branch=z9hG4bK1"
        ]));
        // A comma inside a quoted parameter value is not a second via-parm.
        assert!(first_hop(&[b"SIP/2.0/TCP ua;branch=z9hG4bK1;x=\"a,b\""]));
        assert!(!first_hop(&[]));
    }

    #[test]
    fn path_ob_is_read_from_the_first_uri_only() {
        assert!(path_starts_with_ob(&[b"<sip:edge.example.com;lr;ob>"]));
        assert!(path_starts_with_ob(&[b"<sip:edge;ob;lr>, <sip:core;lr>"]));
        assert!(!path_starts_with_ob(&[b"<sip:edge;lr>, <sip:core;lr;ob>"]));
        assert!(!path_starts_with_ob(&[b"<sip:edge;lr>", b"<sip:core;ob>"]));
        assert!(!path_starts_with_ob(&[b"<sip:edge;lr;obx>"]));
        assert!(!path_starts_with_ob(&[]));
    }

    #[test]
    fn flows_list_each_aor_once_and_stay_bounded() {
        let mut f = Flows::default();
        let flow = FlowId {
            core: 0,
            slot: 1,
            generation: 1,
        };
        assert!(f.note(flow, b"a@x"));
        assert!(f.note(flow, b"a@x"));
        for i in 1..FLOW_AORS_MAX {
            assert!(f.note(flow, format!("u{i}@x").as_bytes()));
        }
        assert!(!f.note(flow, b"one-too-many@x"));
        assert_eq!(f.aors[&flow].len(), FLOW_AORS_MAX);
        assert_eq!(f.aors.len(), 1);
    }
}
