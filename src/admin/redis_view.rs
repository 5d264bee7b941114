//! The management API over a Redis Cluster location (`--location redis`, issue 15):
//! several sipreg nodes share the bindings, so any node's API shows and changes all of
//! them, with its own blocking client (`redis_client`).
//!
//! Every read and change is one call of the commit script on the AOR's key, the only
//! writer of the stored format (`crate::redis::script`), so the API is atomic with
//! concurrent REGISTERs from any node and uses Redis's clock:
//! - show: op `F` (fetch, purging expired bindings);
//! - delete an AOR / one contact: op `D` (removes whatever Call-ID and CSeq wrote the
//!   bindings: an operator's removal is not subject to §10.3 step 7);
//! - add: op `A` (`U` without the CSeq rule), recorded with Call-ID `sipreg-admin`,
//!   CSeq 0 and an unspecified source, as in memory mode;
//! - dump: `SCAN … MATCH sipreg:loc:{*` on each master in turn, then one `F` per key,
//!   pipelined per master. The cursor is `MASTER.SCAN` (the master's index among the
//!   masters sorted by address, and its SCAN cursor), plus `.HEX` (the last key given,
//!   in hex) when a SCAN step had more keys than the page had room for: the step is
//!   then run again and only the keys after that one are given. SCAN's guarantee is
//!   what a dump gets: every AOR present for the whole dump is listed, at least once;
//!   one may be listed twice (a resharding or failover between pages moves keys and
//!   changes the masters), and one added or removed meanwhile may or may not be.
//! - flush: the dump's SCAN on every master, and op `D` on every key (pipelined per
//!   SCAN step), so each AOR is removed atomically and the count is of live bindings.
//!   REGISTERs that land during the flush stay, as in memory mode. A flush that takes
//!   longer than `FLUSH_ANSWER_TIMEOUT_MS` stops and answers 503 with what it removed;
//!   running it again goes on (nothing is half-removed).
//!
//! Redis unreachable, or the slot not served, answers 503 naming Redis. A key under
//! our prefix that the script cannot read (not a hash) answers 500 for that AOR, and a
//! dump or flush skips it with a warning.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::redis_client::{BlockingCluster, RedisError};
use super::view::{LocationView, NewBinding, Page};
use super::{Answer, FLUSH_ANSWER_TIMEOUT_MS};
use crate::config::RedisConfig;
use crate::location::{BINDINGS_PER_AOR_MAX, CommitError, Transport};
use crate::redis::cluster::ClusterError;
use crate::redis::resp::Reply;
use crate::redis::script::{
    self, CommitIntent, CommitOp, CommitReply, CommitStatus, ContactIntent, LOCATION_KEY_PREFIX,
    ReplyError, StoredBinding,
};
use crate::registrar::{ADMIN_CALL_ID, AdminError, MaxContactsPolicy};
use crate::runtime::control::{AorCopy, BindingCopy};
use crate::sip;

/// Keys one dump or flush `SCAN` step asks a master to look at (Redis's COUNT hint).
pub(super) const SCAN_COUNT: usize = 512;

/// `SCAN` steps one dump page takes at most (a page may come back short, with a
/// cursor, when the masters hold few location keys among many others).
pub(super) const SCAN_STEPS_PER_PAGE_MAX: usize = 64;

/// The Redis location, through the admin thread's own client.
#[derive(Debug)]
pub(super) struct RedisView {
    client: BlockingCluster,
    /// `--max-expires`: the longest binding the API may add, in s.
    max_expires_s: u32,
}

impl RedisView {
    pub(super) fn new(config: &RedisConfig, max_expires_s: u32) -> Self {
        Self {
            client: BlockingCluster::new(config.seeds.clone()),
            max_expires_s,
        }
    }
}

fn redis_answer(e: &RedisError) -> Answer {
    tracing::warn!("management API: {e}");
    match e {
        RedisError::Unreachable(_) | RedisError::Unavailable(_) => {
            Answer::error(503, &e.to_string())
        }
        RedisError::Protocol(_) => Answer::error(500, &e.to_string()),
    }
}

/// The script's reply, or the answer for why it is not one.
fn decoded(reply: &Reply) -> Result<CommitReply<'_>, Answer> {
    script::decode_commit_reply(reply).map_err(|e| match e {
        ReplyError::Server(ClusterError::ClusterDown | ClusterError::TryAgain) => Answer::error(
            503,
            "Redis cluster unavailable: the AOR's slot is not served",
        ),
        ReplyError::Server(ClusterError::Other(message)) => Answer::error(
            500,
            &format!(
                "Redis refused the location script: {}",
                String::from_utf8_lossy(&message)
            ),
        ),
        e => Answer::error(500, &format!("unexpected answer from Redis: {e:?}")),
    })
}

/// A dump or a flush walks on past a key whose script call failed for that key
/// alone (500: not a hash in our format, e.g. written by something else under our
/// prefix), with a warning, so one bad key cannot block a whole dump; a 503 (Redis
/// unreachable, slot not served) ends it.
fn skip_unusable<'r>(
    aor_key: &[u8],
    result: Result<CommitReply<'r>, Answer>,
) -> Result<Option<CommitReply<'r>>, Answer> {
    match result {
        Ok(r) => Ok(Some(r)),
        Err(answer) if answer.status == 500 => {
            tracing::warn!(
                aor = %String::from_utf8_lossy(aor_key),
                "management API: skipping an AOR: {}",
                answer.body
            );
            Ok(None)
        }
        Err(answer) => Err(answer),
    }
}

/// An intent of the management API for `aor_key` (no REGISTER's Call-ID or CSeq).
fn intent<'a>(aor_key: &'a [u8], op: CommitOp<'a>) -> CommitIntent<'a> {
    CommitIntent {
        aor_key,
        call_id: ADMIN_CALL_ID,
        cseq: 0,
        branch_hash: 0,
        max_contacts: BINDINGS_PER_AOR_MAX as u32,
        policy: MaxContactsPolicy::Reject,
        op,
    }
}

/// The script's match key of a contact (as the cores compute it for a REGISTER).
fn match_key(contact: &[u8]) -> Vec<u8> {
    let mut key = Vec::new();
    match sip::parse_uri(contact) {
        Ok(uri) => sip::uri_match_key(&uri, &mut key),
        Err(_) => key.extend_from_slice(contact),
    }
    key
}

/// A contact as the script reads it: only `match_key` matters to `D`; `A` stores the
/// rest as a binding added through the API.
fn admin_contact<'a>(
    match_key: &'a [u8],
    contact: &'a [u8],
    expires_s: u32,
    q: Option<u16>,
) -> ContactIntent<'a> {
    ContactIntent {
        match_key,
        expires_s,
        q,
        contact,
        path: b"",
        source: SocketAddr::from(([0, 0, 0, 0], 0)),
        transport: Transport::Udp,
        listen: 0,
        user_agent: b"",
        instance: None,
        reg_id: None,
        flow: None,
    }
}

fn binding_copy(b: &StoredBinding<'_>) -> BindingCopy {
    BindingCopy {
        contact: b.contact.to_vec(),
        expires_s: b.expires_s,
        q: b.q,
        call_id: b.call_id.to_vec(),
        cseq: b.cseq,
        source: b.source,
        transport: b.transport,
        socket: b.listen,
        user_agent: b.user_agent.to_vec(),
        path: b.path.to_vec(),
        instance: b.instance.map(<[u8]>::to_vec),
        reg_id: b.reg_id,
        registered_ms: b.registered_ms,
        flow: b.flow.map(|t| t.flow),
        flow_node: b.flow.map(|t| String::from_utf8_lossy(t.node).into_owned()),
        // Closes and Outbound removal are not carried to the shared location yet.
        flow_down: false,
        outbound: false,
    }
}

/// The AOR's live bindings from a fetch, `None` when it has none.
fn aor_copy(aor_key: &[u8], reply: &CommitReply<'_>) -> Option<AorCopy> {
    (!reply.bindings.is_empty()).then(|| AorCopy {
        key: aor_key.to_vec(),
        bindings: reply.bindings.iter().map(binding_copy).collect(),
    })
}

/// The AOR key of a location key `sipreg:loc:{<aor key>}`.
fn aor_of(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(LOCATION_KEY_PREFIX)?.strip_suffix(b"}")
}

/// A dump cursor: master index, its SCAN cursor, and the last key given from that step.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cursor {
    master: usize,
    scan: u64,
    after: Option<Vec<u8>>,
}

impl Cursor {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let master = parts.next()?.parse().ok()?;
        let scan = parts.next()?.parse().ok()?;
        let after = match parts.next() {
            None => None,
            Some(hex) => Some(from_hex(hex)?),
        };
        parts.next().is_none().then_some(Self {
            master,
            scan,
            after,
        })
    }

    fn text(&self) -> String {
        match &self.after {
            None => format!("{}.{}", self.master, self.scan),
            Some(key) => format!("{}.{}.{}", self.master, self.scan, to_hex(key)),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl RedisView {
    /// Fetches `keys` (location keys) from `master` in one pipelined exchange; AORs
    /// with no live binding are left out.
    fn fetch_all(&mut self, master: &str, keys: &[Vec<u8>]) -> Result<Vec<AorCopy>, Answer> {
        let aors: Vec<&[u8]> = keys.iter().filter_map(|k| aor_of(k)).collect();
        let intents: Vec<CommitIntent<'_>> =
            aors.iter().map(|a| intent(a, CommitOp::Fetch)).collect();
        let replies = self
            .client
            .scripts_on(master, &intents)
            .map_err(|e| redis_answer(&e))?;
        let mut out = Vec::with_capacity(replies.len());
        for (aor, reply) in aors.iter().zip(&replies) {
            if let Some(r) = skip_unusable(aor, decoded(reply))? {
                out.extend(aor_copy(aor, &r));
            }
        }
        Ok(out)
    }
}

impl LocationView for RedisView {
    fn show(&mut self, aor_key: Vec<u8>) -> Result<Option<AorCopy>, Answer> {
        let reply = self
            .client
            .script(&intent(&aor_key, CommitOp::Fetch))
            .map_err(|e| redis_answer(&e))?;
        Ok(aor_copy(&aor_key, &decoded(&reply)?))
    }

    fn remove(&mut self, aor_key: Vec<u8>, contact: Option<Vec<u8>>) -> Result<usize, Answer> {
        let key = contact.as_deref().map(match_key).unwrap_or_default();
        let one = contact.as_deref().map(|c| admin_contact(&key, c, 0, None));
        let op = CommitOp::AdminRemove(one.as_slice());
        let reply = self
            .client
            .script(&intent(&aor_key, op))
            .map_err(|e| redis_answer(&e))?;
        Ok(decoded(&reply)?.evicted as usize)
    }

    fn add(&mut self, aor_key: Vec<u8>, binding: NewBinding) -> Result<(), Answer> {
        if binding.expires_s == 0 || binding.expires_s > self.max_expires_s {
            return Err(Answer::error(400, AdminError::ExpiresOutOfRange.as_str()));
        }
        let key = match_key(&binding.contact);
        let contact = [admin_contact(
            &key,
            &binding.contact,
            binding.expires_s,
            binding.q,
        )];
        let reply = self
            .client
            .script(&intent(&aor_key, CommitOp::AdminUpdate(&contact)))
            .map_err(|e| redis_answer(&e))?;
        match decoded(&reply)?.status {
            CommitStatus::Ok => Ok(()),
            CommitStatus::TooManyContacts => Err(Answer::error(400, CommitError::AorFull.as_str())),
            // The script does not apply the CSeq rule to op A.
            CommitStatus::Retransmission | CommitStatus::InvalidCSeq => Err(Answer::error(
                500,
                "unexpected answer from Redis: the CSeq rule applied to an API change",
            )),
        }
    }

    fn flush(&mut self) -> Result<usize, Answer> {
        let deadline = Instant::now() + Duration::from_millis(FLUSH_ANSWER_TIMEOUT_MS);
        let masters = self.client.masters().map_err(|e| redis_answer(&e))?;
        let mut removed = 0;
        for master in &masters {
            let mut cursor = 0;
            loop {
                let (next, keys) = self
                    .client
                    .scan(master, cursor, SCAN_COUNT)
                    .map_err(|e| redis_answer(&e))?;
                let intents: Vec<CommitIntent<'_>> = keys
                    .iter()
                    .filter_map(|k| aor_of(k))
                    .map(|a| intent(a, CommitOp::AdminRemove(&[])))
                    .collect();
                let replies = self
                    .client
                    .scripts_on(master, &intents)
                    .map_err(|e| redis_answer(&e))?;
                for (intent, reply) in intents.iter().zip(&replies) {
                    if let Some(r) = skip_unusable(intent.aor_key, decoded(reply))? {
                        removed += r.evicted as usize;
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
                if Instant::now() > deadline {
                    return Err(Answer::error(
                        503,
                        &format!(
                            "flush stopped after {FLUSH_ANSWER_TIMEOUT_MS} ms having removed \
                             {removed} binding(s); run it again to go on"
                        ),
                    ));
                }
            }
        }
        Ok(removed)
    }

    fn dump(&mut self, cursor: &str, limit: usize) -> Result<Page, Answer> {
        let masters = self.client.masters().map_err(|e| redis_answer(&e))?;
        let mut at = match cursor {
            "" => Cursor {
                master: 0,
                scan: 0,
                after: None,
            },
            text => match Cursor::parse(text) {
                Some(c) if c.master < masters.len() => c,
                _ => {
                    return Err(Answer::error(
                        400,
                        "malformed cursor (use the `next` of a page)",
                    ));
                }
            },
        };
        // Keys to fetch, grouped by the master whose SCAN listed them.
        let mut found: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        let mut count = 0;
        let mut next = None;
        let mut steps = 0;
        while let Some(master) = masters.get(at.master) {
            if count >= limit || steps >= SCAN_STEPS_PER_PAGE_MAX {
                next = Some(at.text());
                break;
            }
            steps += 1;
            let (following, mut keys) = self
                .client
                .scan(master, at.scan, SCAN_COUNT)
                .map_err(|e| redis_answer(&e))?;
            keys.sort_unstable();
            keys.dedup();
            if let Some(after) = at.after.take() {
                keys.retain(|k| *k > after);
            }
            let room = limit - count;
            let cut = keys.len() > room;
            keys.truncate(room);
            count += keys.len();
            let last = keys.last().cloned();
            match found.last_mut() {
                Some((m, list)) if *m == at.master => list.extend(keys),
                _ => found.push((at.master, keys)),
            }
            if cut {
                // The rest of this step: run it again, after the last key given.
                at.after = last;
                next = Some(at.text());
                break;
            }
            if following == 0 {
                at = Cursor {
                    master: at.master + 1,
                    scan: 0,
                    after: None,
                };
            } else {
                at.scan = following;
            }
        }
        let mut aors = Vec::with_capacity(count);
        for (m, keys) in &found {
            if let Some(master) = masters.get(*m) {
                aors.extend(self.fetch_all(master, keys)?);
            }
        }
        Ok(Page { aors, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for c in [
            Cursor {
                master: 0,
                scan: 0,
                after: None,
            },
            Cursor {
                master: 2,
                scan: 12_345,
                after: Some(b"sipreg:loc:{a.b@example.com}".to_vec()),
            },
        ] {
            assert_eq!(Cursor::parse(&c.text()), Some(c));
        }
        for bad in ["", "1", "x.1", "1.x", "1.2.abc", "1.2.zz", "1.2.00.3"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn location_keys_name_their_aor() {
        assert_eq!(
            aor_of(b"sipreg:loc:{alice@example.com}"),
            Some(&b"alice@example.com"[..])
        );
        assert_eq!(aor_of(b"sipreg:loc:{a}b}"), Some(&b"a}b"[..]));
        assert_eq!(aor_of(b"sipreg:other"), None);
    }

    #[test]
    fn unreachable_redis_is_503_naming_redis() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let config = RedisConfig {
            seeds: vec![format!("127.0.0.1:{port}")],
            timeout_ms: 100,
            wait_replicas: 0,
            wait_timeout_ms: 50,
            node_id: "test-node".into(),
        };
        let mut view = RedisView::new(&config, 3600);
        for answer in [
            view.show(b"alice@example.com".to_vec()).unwrap_err(),
            view.dump("", 10).unwrap_err(),
            view.remove(b"alice@example.com".to_vec(), None)
                .unwrap_err(),
            view.flush().unwrap_err(),
        ] {
            assert_eq!(answer.status, 503, "{}", answer.body);
            assert!(answer.body.contains("Redis unreachable"), "{}", answer.body);
        }
        let too_long = NewBinding {
            contact: b"sip:a@b".to_vec(),
            expires_s: 3601,
            q: None,
        };
        let answer = view
            .add(b"alice@example.com".to_vec(), too_long)
            .unwrap_err();
        assert_eq!(answer.status, 400, "{}", answer.body);
    }
}
