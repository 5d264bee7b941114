//! Replica acknowledgement of a commit (`--redis-wait N`, SCALE-OUT-NOTES.md §4.2, §6).
//!
//! Redis replicates asynchronously: a master can acknowledge a script and die before
//! any replica has it, and the replica that takes over then lacks a binding the UA was
//! told (200) it has. `WAIT N timeout` after the script, on the same connection, blocks
//! that connection until N replicas hold every write it made so far, or until the
//! timeout; it answers the number of replicas that acknowledged. A 200 sent only when
//! that number is at least N survives a failover to one of those replicas.
//!
//! Which commits wait: those that add or remove a binding (the script's `changed`
//! count, [`super::script::CommitReply::changed`]), because losing one of those loses
//! a device (or brings a removed one back) until the UA's next refresh. A refresh of an
//! existing binding does not wait: losing it costs only its new expiry, which the next
//! refresh restores. A retransmission answered from the current list (`RETRANSMISSION`)
//! waits too when its request was a change: its first answer may have been a 503 from
//! a `WAIT` that fell short, and its 200 must not acknowledge less than the first would
//! have.
//!
//! Too few acknowledgements are not rolled back (Redis has no undo, and the write may
//! still reach the replica): the binding stays on the master, the REGISTER gets 503, and
//! the UA's retry (a new CSeq, or the same request retransmitted) finds it there.
//!
//! The runtime sends one `WAIT` per connection per read of replies, covering every
//! commit whose reply in that read asked for it: `WAIT` covers all earlier writes of the
//! connection, so one is as good as many.

use super::resp::{self, Reply};
use super::script::{CommitReply, CommitStatus};

/// Most replicas `--redis-wait` may ask for (Redis Cluster deployments run one or two
/// per master; a larger N can never be met and only delays every answer).
pub const WAIT_REPLICAS_MAX: u32 = 16;

/// Whether the commit whose script reply is `reply` must be acknowledged by replicas
/// before its 200. `fetch`: the request only read the AOR.
pub fn needs_wait(fetch: bool, reply: &CommitReply<'_>) -> bool {
    match reply.status {
        CommitStatus::Ok => reply.changed > 0,
        CommitStatus::Retransmission => !fetch,
        CommitStatus::InvalidCSeq | CommitStatus::TooManyContacts => false,
    }
}

/// Appends `WAIT <replicas> <timeout_ms>` to `out`.
pub fn encode_wait(out: &mut Vec<u8>, replicas: u32, timeout_ms: u64) {
    let (n, t) = (replicas.to_string(), timeout_ms.to_string());
    resp::encode_command(out, &[&b"WAIT"[..], n.as_bytes(), t.as_bytes()]);
}

/// What a `WAIT` reply says about the commits it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitVerdict {
    /// At least the replicas asked for hold the writes: answer 200.
    Acknowledged,
    /// Fewer replicas than asked for acknowledged within the timeout: answer 503; the
    /// writes stay on the master.
    TooFew {
        /// Replicas that did acknowledge.
        acknowledged: u32,
    },
}

/// Why a reply is not a `WAIT` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// Redis refused the command (the message as sent): nothing is known, answer 503.
    Server(Vec<u8>),
    /// Not a non-negative integer: answer 500.
    Malformed,
}

/// Decodes the reply to `WAIT <wanted> …`.
pub fn decode_wait_reply(reply: &Reply, wanted: u32) -> Result<WaitVerdict, WaitError> {
    match reply {
        Reply::Int(n) => {
            let acknowledged = u32::try_from(*n).map_err(|_| WaitError::Malformed)?;
            Ok(if acknowledged >= wanted {
                WaitVerdict::Acknowledged
            } else {
                WaitVerdict::TooFew { acknowledged }
            })
        }
        Reply::Error(msg) => Err(WaitError::Server(msg.clone())),
        _ => Err(WaitError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: CommitStatus, changed: u32) -> CommitReply<'static> {
        CommitReply {
            status,
            now_ms: 1,
            evicted: 0,
            changed,
            bindings: Vec::new(),
        }
    }

    #[test]
    fn only_changes_wait() {
        // A new binding or a removal waits; a refresh (nothing added or removed) and a
        // fetch do not; rejections changed nothing.
        assert!(needs_wait(false, &reply(CommitStatus::Ok, 1)));
        assert!(!needs_wait(false, &reply(CommitStatus::Ok, 0)));
        assert!(!needs_wait(true, &reply(CommitStatus::Ok, 0)));
        assert!(!needs_wait(false, &reply(CommitStatus::InvalidCSeq, 0)));
        assert!(!needs_wait(false, &reply(CommitStatus::TooManyContacts, 0)));
        // A retransmitted change acknowledges no less than its first answer would have.
        assert!(needs_wait(false, &reply(CommitStatus::Retransmission, 0)));
        assert!(!needs_wait(true, &reply(CommitStatus::Retransmission, 0)));
    }

    #[test]
    fn wait_is_one_resp_command() {
        let mut out = Vec::new();
        encode_wait(&mut out, 1, 250);
        assert_eq!(out, b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$3\r\n250\r\n");
    }

    #[test]
    fn wait_replies() {
        assert_eq!(
            decode_wait_reply(&Reply::Int(1), 1),
            Ok(WaitVerdict::Acknowledged)
        );
        assert_eq!(
            decode_wait_reply(&Reply::Int(2), 1),
            Ok(WaitVerdict::Acknowledged)
        );
        assert_eq!(
            decode_wait_reply(&Reply::Int(0), 1),
            Ok(WaitVerdict::TooFew { acknowledged: 0 })
        );
        assert_eq!(
            decode_wait_reply(&Reply::Int(1), 2),
            Ok(WaitVerdict::TooFew { acknowledged: 1 })
        );
        assert_eq!(
            decode_wait_reply(&Reply::Error(b"ERR WAIT cannot be used".to_vec()), 1),
            Err(WaitError::Server(b"ERR WAIT cannot be used".to_vec()))
        );
        for bad in [
            Reply::Int(-1),
            Reply::Int(i64::MAX),
            Reply::Simple(b"OK".to_vec()),
            Reply::Bulk(Some(b"1".to_vec())),
            Reply::Bulk(None),
            Reply::Array(Some(vec![Reply::Int(1)])),
        ] {
            assert_eq!(
                decode_wait_reply(&bad, 1),
                Err(WaitError::Malformed),
                "{bad:?}"
            );
        }
    }
}
