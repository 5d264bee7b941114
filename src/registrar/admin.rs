//! Management operations on one shard, as OpenSIPS's `ul_*` MI commands: add, remove
//! and flush bindings from the admin API (`admin/`), executed on the owning core by
//! `runtime/control.rs`.
//!
//! Every change goes through `LocationTable::apply`, the same commit path as a
//! REGISTER, is journaled like one (persisted), and removals are counted in
//! `Stats::admin_removed`. With a failed store they are refused, like a REGISTER.

use std::net::SocketAddr;

use super::Registrar;
use crate::location::{Change, CommitError, CommitSummary, HashedAorKey, NewBinding, Transport};
use crate::sip;

impl Registrar {
    /// Commit `changes` to `aor_key` and journal the AOR's new state.
    fn admin_commit(
        &mut self,
        now_ms: u64,
        aor_key: &[u8],
        changes: &[Change<'_>],
    ) -> Result<CommitSummary, AdminError> {
        if self.store_failed {
            return Err(AdminError::StoreFailed);
        }
        self.aor_key.set(HashedAorKey::new(aor_key));
        let summary = self
            .location
            .apply_hashed(self.aor_key.key(), now_ms, changes)
            .map_err(AdminError::Commit)?;
        self.journal_aor();
        self.sync_gauges();
        Ok(summary)
    }

    /// Add (or refresh, when `contact` is already bound) a binding of `aor_key` for
    /// `expires_s` seconds (`1..=max_expires_s`), as `ul_add`. The binding is
    /// recorded with Call-ID `sipreg-admin`, CSeq 0 and an unspecified source.
    pub fn admin_add_binding(
        &mut self,
        now_ms: u64,
        aor_key: &[u8],
        contact: &[u8],
        expires_s: u32,
        q: Option<u16>,
    ) -> Result<CommitSummary, AdminError> {
        if expires_s == 0 || expires_s > self.config.max_expires_s {
            return Err(AdminError::ExpiresOutOfRange);
        }
        let binding = NewBinding {
            contact,
            expires_ms: now_ms.saturating_add(u64::from(expires_s) * 1000),
            q,
            call_id: ADMIN_CALL_ID,
            cseq: 0,
            branch: crate::location::BranchHash::UNKNOWN,
            path: b"",
            source: SocketAddr::from(([0, 0, 0, 0], 0)),
            transport: Transport::Udp,
            local_socket: 0,
            flow: None,
            user_agent: b"",
            instance: None,
            reg_id: None,
            flags: 0,
        };
        let existing = self
            .location
            .get(aor_key)
            .and_then(|aor| aor.iter().position(|b| same_contact(b.contact(), contact)));
        let change = match existing {
            Some(index) => Change::Update { index, binding },
            None => Change::Insert(binding),
        };
        self.admin_commit(now_ms, aor_key, &[change])
    }

    /// Remove the bindings of `aor_key` (all, or those whose contact is equivalent to
    /// `contact`), as `ul_rm` / `ul_rm_contact`. Returns how many were removed; 0 when
    /// the AOR (or the contact) is unknown.
    pub fn admin_remove(
        &mut self,
        now_ms: u64,
        aor_key: &[u8],
        contact: Option<&[u8]>,
    ) -> Result<usize, AdminError> {
        let Some(aor) = self.location.get(aor_key) else {
            return Ok(0);
        };
        let changes: Vec<Change<'static>> = aor
            .iter()
            .enumerate()
            .filter(|(_, b)| contact.is_none_or(|c| same_contact(b.contact(), c)))
            .map(|(index, _)| Change::Remove { index })
            .collect();
        if changes.is_empty() {
            return Ok(0);
        }
        let summary = self.admin_commit(now_ms, aor_key, &changes)?;
        self.stats.admin_removed += summary.removed as u64;
        Ok(summary.removed)
    }

    /// Remove every binding of the AORs whose first binding sits in table slots
    /// `from_slot..from_slot + slots_max`, as `ul_flush` in bounded steps: start at 0
    /// and call again with the returned slot until it returns `None`. Each step costs
    /// O(`slots_max`), so a whole flush is linear in the table size. Returns the
    /// bindings removed and the slot to continue from.
    pub fn admin_flush(
        &mut self,
        now_ms: u64,
        from_slot: usize,
        slots_max: usize,
    ) -> (usize, Option<usize>) {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let next = self
            .location
            .aors_from_slot(from_slot, usize::MAX, slots_max, |aor| {
                keys.push(aor.key().to_vec())
            });
        let mut removed = 0;
        for key in &keys {
            removed += self.admin_remove(now_ms, key, None).unwrap_or(0);
        }
        (removed, next)
    }
}

/// The Call-ID recorded on bindings added through the management API.
pub const ADMIN_CALL_ID: &[u8] = b"sipreg-admin";

/// Why a management operation was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// `expires` is 0 or above the configured maximum.
    ExpiresOutOfRange,
    /// The location table refused the commit.
    Commit(CommitError),
    /// The store failed: nothing may change until it is back (as a REGISTER's 503).
    StoreFailed,
}

impl AdminError {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ExpiresOutOfRange => "expires must be between 1 and the configured maximum",
            Self::Commit(e) => e.as_str(),
            Self::StoreFailed => "the binding store failed: changes are refused",
        }
    }
}

/// Two Contact URIs name the same binding (RFC 3261 §19.1.4 equivalence; bytes
/// equality when either does not parse).
fn same_contact(a: &[u8], b: &[u8]) -> bool {
    match (sip::parse_uri(a), sip::parse_uri(b)) {
        (Ok(x), Ok(y)) => sip::uri_equivalent(&x, &y),
        _ => a == b,
    }
}
