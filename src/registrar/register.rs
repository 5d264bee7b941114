//! The REGISTER pipeline of RFC 3261 §10.3, in the RFC's order: validate everything,
//! compute the whole new binding set, then commit once (step 7: "the binding updates
//! MUST be committed ... if and only if all binding updates and additions succeed").
//!
//! Nothing here touches the location table before the plan is complete, so every
//! rejection leaves the table exactly as it was. Neither OpenSIPS nor Kamailio roll
//! back a half-applied REGISTER (FEATURES.md A10); this module never needs to.

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;

use super::{Registrar, outcome::Outcome};
use crate::location::{BranchHash, Change, CommitError, HashedAorKey, NewBinding};
use crate::sip::{Contact, Contacts, Request, Scheme, parse_uri, uri_equivalent};

/// An AOR key longer than this is refused with 400 (OpenSIPS `max_aor_len` is 256).
pub const AOR_KEY_BYTES_MAX: usize = 256;

/// Option tags we support in `Require` (RFC 3327 Path).
pub(crate) const SUPPORTED_OPTIONS: &[&[u8]] = &[b"path"];

/// What an existing binding looked like when the plan was made.
#[derive(Clone, Copy)]
struct Existing {
    /// Its index in the AOR's binding list (what `Change` refers to).
    index: usize,
    /// Not yet expired at `now`.
    live: bool,
    /// Touched by this request (refreshed or removed); eviction skips it.
    touched: bool,
    /// When it was first registered, for evict-oldest.
    registered_at_ms: u64,
}

/// What every binding written by one REGISTER gets alike, computed once per request.
#[derive(Clone, Copy)]
struct Shared<'a> {
    /// RFC 3327 §5.3: the Path vector, stored with each binding as one value.
    path: &'a [u8],
    /// The top Via branch's hash (the CSeq rule of §10.3 step 7 compares it).
    branch: BranchHash,
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
    ) -> Outcome {
        // Steps 3 and 4: who is this, and may they register this AOR?
        if let Some(outcome) = self.authenticate(now_ms, req) {
            return outcome;
        }
        // Step 5: the To URI names the AOR.
        if let Err(outcome) = self.load_aor_key(req, routed) {
            return outcome;
        }
        match req.contacts {
            // §10.3 step 6: no Contact is a query.
            Contacts::None => Outcome::Fetched,
            Contacts::Star => self.unregister_all(now_ms, req, arena),
            Contacts::List(contacts) => self.update(now_ms, source, req, contacts, arena),
        }
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

    /// `Contact: *` (§10.3 step 6): valid only alone and with `Expires: 0`; removes every
    /// binding, subject to the Call-ID/CSeq rule of step 7 for each one.
    fn unregister_all<'a>(&mut self, now_ms: u64, req: &Request<'a>, arena: &'a Bump) -> Outcome {
        if req.expires != Some(0) {
            return Outcome::StarMisuse;
        }
        let mut changes: BumpVec<'a, Change<'a>> = BumpVec::new_in(arena);
        if let Some(aor) = self.location.get_hashed(self.aor_key.key()) {
            for (index, b) in aor.iter().enumerate() {
                if b.call_id() == req.call_id && req.cseq.seq <= b.cseq() && b.expires_ms() > now_ms
                {
                    return Outcome::InvalidCSeq;
                }
                changes.push(Change::Remove { index });
            }
        }
        self.commit(now_ms, &changes)
    }

    /// Add, refresh or remove the listed contacts (§10.3 step 7).
    fn update<'a>(
        &mut self,
        now_ms: u64,
        source: super::Source,
        req: &Request<'a>,
        contacts: &'a [Contact<'a>],
        arena: &'a Bump,
    ) -> Outcome {
        // Validate every contact and its expiry before looking at the table.
        let mut granted: BumpVec<'a, u32> = BumpVec::with_capacity_in(contacts.len(), arena);
        for (i, c) in contacts.iter().enumerate() {
            if !matches!(c.uri.scheme, Scheme::Sip | Scheme::Sips) {
                return Outcome::ContactNotSip;
            }
            if contacts[..i].iter().any(|prev| same_contact(prev, c)) {
                return Outcome::DuplicateContact;
            }
            match self.grant_expiry(c.expires.or(req.expires)) {
                Ok(s) => granted.push(s),
                Err(outcome) => return outcome,
            }
        }

        // Hashed once per request: the CSeq rule compares it, every binding stores it.
        let branch = BranchHash::of(req.via().branch);

        // Snapshot the AOR and match each contact against it.
        let mut existing: BumpVec<'a, Existing> = BumpVec::new_in(arena);
        let mut matched: BumpVec<'a, Option<usize>> =
            BumpVec::with_capacity_in(contacts.len(), arena);
        if let Some(aor) = self.location.get_hashed(self.aor_key.key()) {
            // Sized once (one allocation, not a growth per push); AORs are small.
            existing.reserve_exact(aor.len());
            for (index, b) in aor.iter().enumerate() {
                existing.push(Existing {
                    index,
                    live: b.expires_ms() > now_ms,
                    touched: false,
                    registered_at_ms: b.registered_ms(),
                });
            }
            for c in contacts {
                let found = aor.iter().position(|b| binding_matches(&b, c));
                if let Some(b) = found.and_then(|index| aor.get(index))
                    && let Some(outcome) = cseq_rule(now_ms, req, branch, &b)
                {
                    return outcome;
                }
                matched.push(found);
            }
        } else {
            matched.extend(contacts.iter().map(|_| None));
        }

        // Build the change list.
        let shared = Shared {
            path: join_path(req.path, arena),
            branch,
        };
        // At most one change per contact and one per existing binding.
        let mut changes: BumpVec<'a, Change<'a>> =
            BumpVec::with_capacity_in(contacts.len() + existing.len(), arena);
        let mut live_after = existing.iter().filter(|e| e.live).count();
        for ((c, &expires_s), &found) in contacts.iter().zip(granted.iter()).zip(matched.iter()) {
            let binding = self.new_binding(now_ms, source, req, shared, c, expires_s);
            match (found, expires_s) {
                (Some(index), 0) => {
                    if let Some(e) = existing.get_mut(index) {
                        e.touched = true;
                        if e.live {
                            live_after -= 1;
                        }
                    }
                    changes.push(Change::Remove { index });
                }
                (Some(index), _) => {
                    if let Some(e) = existing.get_mut(index) {
                        e.touched = true;
                        if !e.live {
                            live_after += 1;
                        }
                    }
                    changes.push(Change::Update { index, binding });
                }
                // Removing a binding that does not exist is not an error (§10.3 step 7).
                (None, 0) => {}
                (None, _) => {
                    live_after += 1;
                    changes.push(Change::Insert(binding));
                }
            }
        }

        // Expired leftovers not yet purged by the timer go with this commit.
        for e in existing.iter_mut().filter(|e| !e.live && !e.touched) {
            e.touched = true;
            changes.push(Change::Remove { index: e.index });
        }

        // max_contacts counts live bindings only; a refresh is not a new binding.
        let max = self.config.max_contacts as usize;
        if max > 0 && live_after > max {
            match self.config.max_contacts_policy {
                super::MaxContactsPolicy::Reject => return Outcome::TooManyContacts,
                super::MaxContactsPolicy::EvictOldest => {
                    let mut victims: BumpVec<'a, Existing> = BumpVec::new_in(arena);
                    victims.extend(existing.iter().filter(|e| e.live && !e.touched).copied());
                    victims.sort_unstable_by_key(|e| (e.registered_at_ms, e.index));
                    for v in victims.iter() {
                        if live_after <= max {
                            break;
                        }
                        changes.push(Change::Remove { index: v.index });
                        live_after -= 1;
                        self.stats.evicted += 1;
                    }
                    if live_after > max {
                        return Outcome::TooManyContacts;
                    }
                }
            }
        }
        self.commit(now_ms, &changes)
    }

    /// Apply the plan in one step; the table refuses it whole or takes it whole.
    fn commit(&mut self, now_ms: u64, changes: &[Change<'_>]) -> Outcome {
        if changes.is_empty() {
            return Outcome::Registered;
        }
        if self.store_failed {
            return Outcome::StoreFailed;
        }
        match self
            .location
            .apply_hashed(self.aor_key.key(), now_ms, changes)
        {
            Ok(_) => {
                self.journal_aor();
                Outcome::Registered
            }
            Err(CommitError::TableFull) => Outcome::RegistrarFull,
            Err(CommitError::AorFull) => Outcome::TooManyContacts,
            Err(CommitError::BindingTooLarge | CommitError::AorKeyInvalid) => {
                Outcome::BindingTooLarge
            }
            // A q above 1.0 is refused by the parser, and indices come from this
            // module: reaching these is a bug, answered 500 with nothing changed
            // (§10.3 step 7).
            Err(
                CommitError::QOutOfRange
                | CommitError::IndexOutOfRange
                | CommitError::IndexRepeated,
            ) => {
                debug_assert!(false, "registrar built an invalid commit");
                Outcome::ServerError
            }
        }
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
        shared: Shared<'a>,
        c: &Contact<'a>,
        expires_s: u32,
    ) -> NewBinding<'a> {
        NewBinding {
            contact: c.uri.raw,
            expires_ms: now_ms.saturating_add(u64::from(expires_s) * 1000),
            q: c.q,
            call_id: req.call_id,
            cseq: req.cseq.seq,
            branch: shared.branch,
            path: shared.path,
            source: source.addr,
            transport: crate::location::Transport::Udp,
            local_socket: source.local,
            user_agent: req.user_agent.unwrap_or(b""),
            instance: c.instance,
            reg_id: c.reg_id,
            flags: 0,
        }
    }
}

/// RFC 3261 §10.3 step 7 for a contact that matched binding `b`: `None` when the
/// update may go on, else the answer. Same Call-ID needs a higher CSeq; an expired
/// binding is gone as far as the RFC is concerned.
///
/// An equal CSeq is one of two things ([`BranchHash`] says which):
/// - the same top Via branch as the REGISTER that wrote `b`: that request again,
///   retransmitted after its transaction left the bounded cache (`txn_cache_max` under
///   load). Answer the current bindings and change nothing, as OpenSIPS/Kamailio do
///   within `cseq_delay`. So is an equal CSeq against a binding whose branch is not
///   known (written before sipreg stored it, or by the admin API).
/// - another branch: a new request that reused the CSeq (a de-registration, say).
///   "If not, the update MUST be aborted and the request fails": 400, nothing changed,
///   rather than a 200 that tells the UA a change it asked for was made.
///
/// A lower CSeq is out of order: 400 as well.
fn cseq_rule(
    now_ms: u64,
    req: &Request<'_>,
    branch: BranchHash,
    b: &crate::location::BindingRef<'_>,
) -> Option<Outcome> {
    if b.expires_ms() <= now_ms || b.call_id() != req.call_id {
        return None;
    }
    let (seq, stored) = (req.cseq.seq, b.cseq());
    if seq > stored {
        None
    } else if seq == stored && branch.may_be_retransmission_of(b.branch()) {
        Some(Outcome::Fetched)
    } else {
        Some(Outcome::InvalidCSeq)
    }
}

/// RFC 5626 §6 / RFC 5627: with `+sip.instance` on both sides the instance (and reg-id)
/// decide; otherwise RFC 3261 §19.1.4 URI equivalence.
fn binding_matches(b: &crate::location::BindingRef<'_>, c: &Contact<'_>) -> bool {
    if let (Some(stored), Some(new)) = (b.instance(), c.instance) {
        return stored == new && b.reg_id() == c.reg_id;
    }
    match parse_uri(b.contact()) {
        Ok(stored) => uri_equivalent(&stored, &c.uri),
        Err(_) => b.contact() == c.uri.raw,
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
