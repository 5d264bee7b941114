//! The location table: AOR → bindings, one table per shard (RFC 3261 §10.3 steps 7-8).
//!
//! Why it looks like this:
//! - **One shard, one thread, no locks.** An AOR lives in exactly one shard (ARCHITECTURE.md), so
//!   the table is a plain single-threaded structure and per-AOR ordering is free.
//! - **Sans-IO.** It takes byte slices and numbers (AOR key computed by the caller, times in
//!   ms since the Unix epoch); it never parses SIP and never reads a clock.
//! - **All-or-nothing commits** ([`LocationTable::apply`]): RFC 3261 §10.3 step 7 says the
//!   binding updates of one REGISTER are committed only if all succeed. Every change is
//!   validated before the first mutation, so a failure leaves the table untouched (OpenSIPS
//!   and Kamailio leave partial writes behind).
//! - **Memory is the budget.** A carrier shard holds millions of bindings; each binding is
//!   one packed allocation plus a 40-byte slot, and a one-binding AOR costs only a 5-byte
//!   hash bucket on top (≈ 275 B per binding measured, against 1168 B for Kamailio).
//! - **Expiry without scans.** A 1-second timer wheel threaded through the slots: O(1)
//!   schedule/reschedule/cancel, bounded work per [`LocationTable::expire`] call, exactly one
//!   wheel entry per binding however often it is refreshed.
#![forbid(unsafe_code)]

mod aor_key;
mod binding;
mod branch;
mod table;
mod wheel;

#[cfg(test)]
mod tests;

mod emptied;
pub(crate) use aor_key::AorKeyBuf;
pub use aor_key::HashedAorKey;
pub use binding::{BINDING_FIELD_BYTES_MAX, BindingRef, Flow, NewBinding, Q_MAX, Transport};
pub use branch::BranchHash;
pub use emptied::EMPTIED_AORS_MAX_DEFAULT;
pub use table::{
    AOR_KEY_BYTES_MAX, AorRef, BINDINGS_PER_AOR_MAX, BINDINGS_PER_SHARD_MAX, Bindings, Change,
    CommitError, CommitSummary, EXPIRE_MOVES_MAX, LocationLimits, LocationTable, TOUCH_DEPTH,
};
