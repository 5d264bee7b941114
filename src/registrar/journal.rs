//! The registrar's side of persistence: every committed AOR change becomes a framed
//! store record (`store::record`) in the shard's journal, which the runtime drains to
//! the store writer; start-up puts loaded bindings back without journaling them.
//!
//! A reply never leaves before the records it depends on when durability is `sync`:
//! [`Action::Reply`](super::Action::Reply) carries `durable_after`, the journal position
//! (bytes appended since start) its answer reflects, and the runtime holds it until the
//! writer reports that position durable.

use super::Registrar;
use crate::location::Change;
use crate::store::record::{self, StoredBinding};

impl Registrar {
    /// The runtime reports that the store can no longer write (`true`) or works again:
    /// while failed, every REGISTER that would change a binding gets 503 with
    /// Retry-After and changes nothing; fetches and lookups still work.
    pub fn set_store_failed(&mut self, failed: bool) {
        self.store_failed = failed;
    }

    /// Record the current state of `self.aor_key` after a successful commit.
    pub(super) fn journal_aor(&mut self) {
        if !self.config.journal {
            return;
        }
        let before = self.journal.len();
        record::encode_aor(
            &mut self.journal,
            self.aor_key.bytes(),
            self.location.get_hashed(self.aor_key.key()),
        );
        self.journal_position += (self.journal.len() - before) as u64;
    }

    /// Move the journal's records (whole records, in commit order) to the end of `out`.
    /// The bytes drained since start add up to the positions replies carry in
    /// `durable_after`.
    pub fn drain_journal(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.journal);
        } else {
            out.extend_from_slice(&self.journal);
            self.journal.clear();
        }
    }

    /// Put back an AOR's bindings loaded from the store (start-up); expired ones are
    /// skipped. Writes no journal record (the snapshot already holds them). Returns
    /// the bindings restored; a binding the table refuses (full) is skipped.
    pub fn restore_aor(
        &mut self,
        now_ms: u64,
        aor_key: &[u8],
        bindings: &[StoredBinding<'_>],
    ) -> usize {
        let mut restored = 0;
        for b in bindings.iter().filter(|b| !b.is_expired(now_ms)) {
            // The keep-alive state (`ping`) is this process's: a restart starts it
            // afresh rather than count a ping the old process sent as lost.
            let mut binding = b.to_new();
            binding.flags &= !super::ping::PING_FLAGS;
            let change = Change::Insert(binding);
            let registered_ms = u64::from(b.registered_s) * 1000;
            if self
                .location
                .apply(aor_key, registered_ms, &[change])
                .is_ok()
            {
                restored += 1;
            }
        }
        self.sync_gauges();
        restored
    }
}
