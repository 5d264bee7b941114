//! The *commit* half of the REGISTER pipeline against the shard's in-memory table: apply
//! an [`Intent`] atomically to the AOR's current bindings (RFC 3261 §10.3 steps 7 and 8).
//!
//! - Each listed contact is matched against the stored bindings (RFC 5626 instance and
//!   reg-id when both sides carry an instance, else RFC 3261 §19.1.4 URI equivalence).
//! - The Call-ID/CSeq rule ([`cseq_rule`]): a matched live binding of the same Call-ID
//!   needs a higher CSeq; a lower one fails the whole request (400 "Invalid CSeq"); an
//!   equal one with the branch that wrote the binding is the request already applied,
//!   retransmitted after its transaction left the bounded cache (the current bindings
//!   are answered and nothing changes), with another branch it fails.
//! - Expired leftovers not yet purged by the timer go with the commit; max contacts
//!   counts live bindings after it (reject, or evict the oldest).
//! - The change list is applied in one step, which the table takes whole or refuses
//!   whole, and the AOR's new state is journaled.
//!
//! This is the memory backend's commit; a shared backend runs the same rules where the
//! bindings live, in one atomic step.

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;

use super::register::{Intent, IntentOp};
use super::{MaxContactsPolicy, Registrar, outcome::Outcome};
use crate::location::{BindingRef, Change, CommitError};
use crate::sip::{Contact, parse_uri, uri_equivalent};

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

impl Registrar {
    /// Commit `intent` to the AOR in `self.aor_key` and say how the request ends.
    pub(super) fn commit_intent<'a>(
        &mut self,
        now_ms: u64,
        intent: &Intent<'a>,
        arena: &'a Bump,
    ) -> Outcome {
        match intent.op {
            IntentOp::Fetch => Outcome::Fetched,
            IntentOp::RemoveAll => self.remove_all(now_ms, intent, arena),
            IntentOp::Update(planned) => self.update(now_ms, intent, planned, arena),
        }
    }

    /// `Contact: *`: remove every binding, subject to the Call-ID/CSeq rule of step 7
    /// for each one.
    fn remove_all<'a>(&mut self, now_ms: u64, intent: &Intent<'a>, arena: &'a Bump) -> Outcome {
        let mut changes: BumpVec<'a, Change<'a>> = BumpVec::new_in(arena);
        if let Some(aor) = self.location.get_hashed(self.aor_key.key()) {
            for (index, b) in aor.iter().enumerate() {
                if b.call_id() == intent.call_id
                    && intent.cseq <= b.cseq()
                    && b.expires_ms() > now_ms
                {
                    return Outcome::InvalidCSeq;
                }
                changes.push(Change::Remove { index });
            }
        }
        self.apply(now_ms, &changes)
    }

    /// Add, refresh or remove the planned contacts (§10.3 step 7).
    fn update<'a>(
        &mut self,
        now_ms: u64,
        intent: &Intent<'a>,
        planned: &'a [super::register::Planned<'a>],
        arena: &'a Bump,
    ) -> Outcome {
        // Snapshot the AOR and match each contact against it.
        let mut existing: BumpVec<'a, Existing> = BumpVec::new_in(arena);
        let mut matched: BumpVec<'a, Option<usize>> =
            BumpVec::with_capacity_in(planned.len(), arena);
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
            for p in planned {
                let found = aor.iter().position(|b| binding_matches(&b, p.contact));
                if let Some(b) = found.and_then(|index| aor.get(index))
                    && let Some(outcome) = cseq_rule(now_ms, intent, &b)
                {
                    return outcome;
                }
                matched.push(found);
            }
        } else {
            matched.extend(planned.iter().map(|_| None));
        }

        // Build the change list: at most one change per contact and one per existing
        // binding.
        let mut changes: BumpVec<'a, Change<'a>> =
            BumpVec::with_capacity_in(planned.len() + existing.len(), arena);
        let mut live_after = existing.iter().filter(|e| e.live).count();
        for (p, &found) in planned.iter().zip(matched.iter()) {
            match (found, p.expires_s) {
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
                    changes.push(Change::Update {
                        index,
                        binding: p.binding,
                    });
                }
                // Removing a binding that does not exist is not an error (§10.3 step 7).
                (None, 0) => {}
                (None, _) => {
                    live_after += 1;
                    changes.push(Change::Insert(p.binding));
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
                MaxContactsPolicy::Reject => return Outcome::TooManyContacts,
                MaxContactsPolicy::EvictOldest => {
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
        self.apply(now_ms, &changes)
    }

    /// Apply the change list in one step; the table refuses it whole or takes it whole.
    fn apply(&mut self, now_ms: u64, changes: &[Change<'_>]) -> Outcome {
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
}

/// RFC 3261 §10.3 step 7 for a contact that matched binding `b`: `None` when the
/// update may go on, else the answer. Same Call-ID needs a higher CSeq; an expired
/// binding is gone as far as the RFC is concerned.
///
/// An equal CSeq is one of two things ([`BranchHash`](crate::location::BranchHash)
/// says which):
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
fn cseq_rule(now_ms: u64, intent: &Intent<'_>, b: &BindingRef<'_>) -> Option<Outcome> {
    if b.expires_ms() <= now_ms || b.call_id() != intent.call_id {
        return None;
    }
    let (seq, stored) = (intent.cseq, b.cseq());
    if seq > stored {
        None
    } else if seq == stored && intent.branch.may_be_retransmission_of(b.branch()) {
        Some(Outcome::Fetched)
    } else {
        Some(Outcome::InvalidCSeq)
    }
}

/// RFC 5626 §6 / RFC 5627: with `+sip.instance` on both sides the instance (and reg-id)
/// decide; otherwise RFC 3261 §19.1.4 URI equivalence.
fn binding_matches(b: &BindingRef<'_>, c: &Contact<'_>) -> bool {
    if let (Some(stored), Some(new)) = (b.instance(), c.instance) {
        return stored == new && b.reg_id() == c.reg_id;
    }
    match parse_uri(b.contact()) {
        Ok(stored) => uri_equivalent(&stored, &c.uri),
        Err(_) => b.contact() == c.uri.raw,
    }
}
