//! Non-INVITE server transactions (RFC 3261 §17.2.2), reduced to what a registrar needs.
//!
//! Why: a REGISTER over UDP is retransmitted (Timer E) until its final response arrives;
//! each retransmission must get the same final response, byte for byte, without being
//! processed again (FEATURES G3). The registrar answers every non-INVITE request at once
//! with a final response, so the §17.2.2 state machine collapses to its Completed state:
//! keep the response for Timer J (64·T1 = 32 s on UDP) and replay it to any request that
//! matches the transaction (§17.2.3). No 100 Trying is sent (RFC 4320).
//!
//! Sans-IO: keys are encoded and hashed once per request into the caller's arena
//! ([`TxnKey::encode_in`]) from the parsed request's bytes, times are ms since the Unix
//! epoch given by the caller. The cache is a FIFO ring ([`table`](TxnTable)): one
//! preallocated byte ring, no allocation per transaction, memory capped by
//! [`TxnLimits`] (budget written there).
#![forbid(unsafe_code)]

mod index;
mod key;
mod table;

#[cfg(test)]
mod tests;

pub use key::{EncodedKey, MAGIC_COOKIE, TXN_KEY_BYTES_MAX, TxnKey, is_rfc3261_branch};
pub use table::{
    TIMER_J_UDP_MS, TXN_ENTRIES_DEFAULT, TXN_ENTRIES_MAX, TXN_RECORD_BYTES_TYPICAL,
    TXN_RING_BYTES_MAX, TxnError, TxnLimits, TxnTable,
};
