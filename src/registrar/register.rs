//! The REGISTER pipeline of RFC 3261 §10.3, *decide* half, in the RFC's order: domain,
//! authentication, AOR, Contact/`*` and expiry validation (steps 1 to 7 as far as they
//! need nothing of the stored bindings). It yields an [`Intent`]: what the request asks
//! of its AOR, every value validated and every expiry granted.
//!
//! The *commit* half (`commit`) applies an intent atomically against the AOR's current
//! bindings: the Call-ID/CSeq rule, max contacts, all-or-nothing (step 7: "the binding
//! updates MUST be committed ... if and only if all binding updates and additions
//! succeed"). Nothing touches the location table before the whole change list is
//! built, so every rejection leaves it exactly as it was. (Neither OpenSIPS nor
//! Kamailio roll back a half-applied REGISTER; this pipeline never needs to.)

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;

use super::outbound::{self, FLAG_OUTBOUND, Outbound};
use super::{Registrar, outcome::Outcome};
use crate::location::{BranchHash, HashedAorKey, NewBinding};
use crate::sip::{Contact, Contacts, Request, Scheme, uri_equivalent};

/// An AOR key longer than this is refused with 400; the location table's own limit,
/// so the registrar never accepts a key the table would refuse, nor the reverse.
pub use crate::location::AOR_KEY_BYTES_MAX;

/// Option tags we support in `Require` (RFC 3327 Path, RFC 5626 Outbound).
pub(crate) const SUPPORTED_OPTIONS: &[&[u8]] = &[b"path", b"outbound"];

/// What deciding a request led to: an answer, or an intent to commit first.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Decided<'a> {
    /// Answer with this outcome (nothing to commit).
    Done(Outcome),
    /// Commit this, then answer with how the commit ended.
    Commit(Intent<'a>),
}

impl From<Outcome> for Decided<'_> {
    fn from(outcome: Outcome) -> Self {
        Self::Done(outcome)
    }
}

/// What a validated REGISTER asks of its AOR's bindings: the output of *decide*, the
/// input of *commit*. It borrows the request and the batch's arena.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Intent<'a> {
    /// The request's Call-ID (§10.3 step 7 orders requests of one Call-ID by CSeq).
    pub(crate) call_id: &'a [u8],
    /// The request's CSeq number.
    pub(crate) cseq: u32,
    /// The hash of its top Via branch: an equal CSeq is a retransmission only with the
    /// branch that last wrote the binding (see `commit`).
    pub(crate) branch: BranchHash,
    /// What to do.
    pub(crate) op: IntentOp<'a>,
}

/// The three things a REGISTER can ask (§10.3 steps 6 and 7).
#[derive(Clone, Copy, Debug)]
pub(crate) enum IntentOp<'a> {
    /// No Contact: a query for the current bindings.
    Fetch,
    /// `Contact: *` with `Expires: 0`: remove every binding.
    RemoveAll,
    /// Add, refresh or (expiry 0) remove each listed contact.
    Update(&'a [Planned<'a>]),
}

/// One listed contact, validated, with the binding it becomes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planned<'a> {
    /// The Contact as parsed (matched against stored bindings at commit).
    pub(crate) contact: &'a Contact<'a>,
    /// The expiry granted, in seconds; 0 removes the binding.
    pub(crate) expires_s: u32,
    /// The binding it is stored as (when `expires_s > 0`).
    pub(crate) binding: NewBinding<'a>,
}

/// What every binding written by one REGISTER gets alike, computed once per request.
#[derive(Clone, Copy)]
struct Alike<'a> {
    /// RFC 3327 §5.3: the Path vector, stored with each binding as one value.
    path: &'a [u8],
    /// The top Via branch's hash (the CSeq rule of §10.3 step 7 compares it).
    branch: BranchHash,
    /// RFC 5626 §6 for this request.
    outbound: Outbound,
    /// The connection the bindings are reachable through: the request came straight
    /// from the UA over a connection (first hop).
    flow: Option<crate::location::FlowId>,
}

impl Registrar {
    /// Run §10.3 steps 5 to 8 for a REGISTER whose domain and Require were checked.
    /// `self.aor_key` holds the AOR key on return (for the 200's bindings); `routed` is
    /// the To AOR's key when `prepare` wrote it.
    pub(super) fn register<'a>(
        &mut self,
        now_ms: u64,
        source: super::Source,
        req: &Request<'a>,
        routed: Option<HashedAorKey<'_>>,
        arena: &'a Bump,
    ) -> Decided<'a> {
        // Steps 3 and 4: who is this, and may they register this AOR?
        if let Some(outcome) = self.authenticate(now_ms, req) {
            return outcome.into();
        }
        // Step 5: the To URI names the AOR.
        if let Err(outcome) = self.load_aor_key(req, routed) {
            return outcome.into();
        }
        // Hashed once per request: the CSeq rule compares it, every binding stores it.
        let branch = BranchHash::of(req.via().branch);
        let op = match req.contacts {
            // §10.3 step 6: no Contact is a query.
            Contacts::None => IntentOp::Fetch,
            // `Contact: *` is valid only alone and with `Expires: 0`.
            Contacts::Star if req.expires != Some(0) => return Outcome::StarMisuse.into(),
            Contacts::Star => IntentOp::RemoveAll,
            Contacts::List(contacts) => {
                match self.plan(now_ms, source, req, branch, contacts, arena) {
                    Ok(planned) => IntentOp::Update(planned),
                    Err(outcome) => return outcome.into(),
                }
            }
        };
        Decided::Commit(Intent {
            call_id: req.call_id,
            cseq: req.cseq.seq,
            branch,
            op,
        })
    }

    /// RFC 3261 §10.3 steps 3-4 with digest authentication (§22, RFC 7616/8760): `None`
    /// when the request may go on, else the answer (401 with a challenge, 403 when the
    /// authenticated user is not the To user, 400 for malformed credentials).
    fn authenticate(&mut self, now_ms: u64, req: &Request<'_>) -> Option<Outcome> {
        let auth = self.auth.as_mut()?;
        // The realm is the served domain the request is addressed to, lower-cased as
        // the subscriber file's HA1s were computed (RFC 3261 §22.1: realm = domain).
        let mut buf = [0u8; crate::auth::REALM_LEN_MAX];
        let realm = lower_realm(req.request_uri.host, &mut buf);
        let to_user = req.to.uri.user.unwrap_or(b"");
        // Further Authorization values are read only when the first is not for our realm
        // (RFC 3261 §22.4).
        let others = req.other_authorizations();
        match auth
            .check_any(now_ms, b"REGISTER", req.authorization, others, realm)
            .authorize_to(to_user)
        {
            crate::auth::AuthOutcome::Ok { .. } => None,
            crate::auth::AuthOutcome::Challenge { stale } => Some(Outcome::Unauthorized { stale }),
            crate::auth::AuthOutcome::Forbidden => Some(Outcome::Forbidden),
            crate::auth::AuthOutcome::BadRequest(reason) => Some(Outcome::BadCredentials(reason)),
        }
    }

    /// Compute `self.aor_key` from the To URI, or the outcome that refuses it.
    fn load_aor_key(
        &mut self,
        req: &Request<'_>,
        routed: Option<HashedAorKey<'_>>,
    ) -> Result<(), Outcome> {
        if !matches!(req.to.uri.scheme, Scheme::Sip | Scheme::Sips) {
            return Err(Outcome::ToNotSip);
        }
        if !self.serves_domain(req.to.uri.host) {
            return Err(Outcome::AorNotServed);
        }
        if !self.load_key(routed) {
            return Err(Outcome::ToNoUser);
        }
        if self.aor_key.bytes().len() > AOR_KEY_BYTES_MAX {
            return Err(Outcome::AorTooLong);
        }
        Ok(())
    }

    /// Validate every listed contact and grant its expiry (§10.3 steps 6 and 7, before
    /// the stored bindings are looked at), or the outcome that refuses the request.
    fn plan<'a>(
        &mut self,
        now_ms: u64,
        source: super::Source,
        req: &Request<'a>,
        branch: BranchHash,
        contacts: &'a [Contact<'a>],
        arena: &'a Bump,
    ) -> Result<&'a [Planned<'a>], Outcome> {
        let outbound = outbound::outbound(req, contacts, source.conn.is_some())?;
        let alike = Alike {
            // RFC 3327 §5.3: the Path vector is stored with each binding, as one value.
            path: join_path(req.path, arena),
            branch,
            outbound,
            flow: source
                .conn
                .filter(|_| outbound.first_hop)
                .map(crate::location::FlowId::from),
        };
        let mut planned: BumpVec<'a, Planned<'a>> =
            BumpVec::with_capacity_in(contacts.len(), arena);
        for (i, c) in contacts.iter().enumerate() {
            if !matches!(c.uri.scheme, Scheme::Sip | Scheme::Sips) {
                return Err(Outcome::ContactNotSip);
            }
            if contacts[..i].iter().any(|prev| same_contact(prev, c)) {
                return Err(Outcome::DuplicateContact);
            }
            let expires_s = self.grant_expiry(c.expires.or(req.expires))?;
            planned.push(Planned {
                contact: c,
                expires_s,
                binding: self.new_binding(now_ms, source, req, alike, c, expires_s),
            });
        }
        if let Some(flow) = alike.flow
            && self.shared.is_none()
            && planned.iter().any(|p| p.expires_s > 0)
            && !self.flows.note(flow, self.aor_key.bytes())
        {
            self.stats.flow_untracked += 1;
        }
        Ok(planned.into_bump_slice())
    }

    /// The expiry granted for a requested one (§10.3 step 7), or the 423.
    fn grant_expiry(&mut self, requested: Option<u32>) -> Result<u32, Outcome> {
        let c = &self.config;
        let requested = requested.unwrap_or(c.default_expires_s);
        if requested == 0 {
            return Ok(0);
        }
        // §10.3 step 7: 423 only when 0 < requested < 1 hour and < our minimum.
        if requested < c.min_expires_s {
            if c.min_expires_policy == super::MinExpiresPolicy::Reject && requested < 3600 {
                return Err(Outcome::IntervalTooBrief);
            }
            return Ok(c.min_expires_s);
        }
        let granted = requested.min(c.max_expires_s);
        Ok(self.jitter(granted))
    }

    /// Shorten a granted expiry by up to `expires_jitter_percent`, never below the
    /// minimum, so that devices registered together do not all refresh together.
    fn jitter(&mut self, granted: u32) -> u32 {
        let pct = u64::from(self.config.expires_jitter_percent);
        if pct == 0 {
            return granted;
        }
        let span = u64::from(granted) * pct / 100;
        if span == 0 {
            return granted;
        }
        let cut = self.rng.next() % (span + 1);
        let cut = u32::try_from(cut).unwrap_or(0);
        granted
            .saturating_sub(cut)
            .max(self.config.min_expires_s.min(granted))
    }

    fn new_binding<'a>(
        &self,
        now_ms: u64,
        source: super::Source,
        req: &Request<'a>,
        alike: Alike<'a>,
        c: &Contact<'a>,
        expires_s: u32,
    ) -> NewBinding<'a> {
        NewBinding {
            contact: c.uri.raw,
            expires_ms: now_ms.saturating_add(u64::from(expires_s) * 1000),
            q: c.q,
            call_id: req.call_id,
            cseq: req.cseq.seq,
            branch: alike.branch,
            path: alike.path,
            source: source.remote,
            transport: source.transport,
            local_socket: source.listen,
            user_agent: req.user_agent.unwrap_or(b""),
            instance: c.instance,
            // RFC 5626 §6: through a proxy that does not do Outbound, reg-id is ignored.
            reg_id: c.reg_id.filter(|_| !alike.outbound.ignore_reg_id),
            flow: alike.flow,
            flags: if alike.outbound.applies && c.reg_id.is_some() {
                FLAG_OUTBOUND
            } else {
                0
            },
        }
    }
}

fn same_contact(a: &Contact<'_>, b: &Contact<'_>) -> bool {
    if let (Some(x), Some(y)) = (a.instance, b.instance) {
        return x == y && a.reg_id == b.reg_id;
    }
    uri_equivalent(&a.uri, &b.uri)
}

/// The Path header values as one stored value, `a, b, c` (order kept).
fn join_path<'a>(values: &[&'a [u8]], arena: &'a Bump) -> &'a [u8] {
    match values {
        [] => b"",
        [one] => one,
        many => {
            let mut v: BumpVec<'a, u8> = BumpVec::new_in(arena);
            for (i, p) in many.iter().enumerate() {
                if i > 0 {
                    v.extend_from_slice(b", ");
                }
                v.extend_from_slice(p);
            }
            v.into_bump_slice()
        }
    }
}

/// `host` lower-cased into `buf` (cut at its size: a longer host matches no realm).
pub(crate) fn lower_realm<'b>(
    host: &[u8],
    buf: &'b mut [u8; crate::auth::REALM_LEN_MAX],
) -> &'b [u8] {
    let n = host.len().min(buf.len());
    for (d, s) in buf.iter_mut().zip(host) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..n]
}
