//! The management API over the cores' own tables (`--location memory`): every
//! operation is a [`Command`] to the core that owns the AOR (or to every core, for a
//! dump or a flush), over its bounded control channel (`runtime::control`).

use std::time::Duration;

use super::view::{LocationView, NewBinding, Page};
use super::{Answer, FLUSH_ANSWER_TIMEOUT_MS, call, unexpected};
use crate::runtime::control::{AorCopy, Command, ControlHandle, Reply};

/// The cores' tables, reached through their control channels.
#[derive(Debug)]
pub(super) struct MemoryView {
    control: ControlHandle,
}

impl MemoryView {
    pub(super) fn new(control: ControlHandle) -> Self {
        Self { control }
    }
}

impl LocationView for MemoryView {
    fn show(&mut self, aor_key: Vec<u8>) -> Result<Option<AorCopy>, Answer> {
        let control = &self.control;
        let owner = control.owner(&aor_key);
        match call(control, owner, Command::Show { aor_key })? {
            Reply::Aor(aor) => Ok(aor),
            _ => Err(unexpected()),
        }
    }

    fn remove(&mut self, aor_key: Vec<u8>, contact: Option<Vec<u8>>) -> Result<usize, Answer> {
        let control = &self.control;
        let owner = control.owner(&aor_key);
        match call(control, owner, Command::Remove { aor_key, contact })? {
            Reply::Removed(Ok(n)) => Ok(n),
            Reply::Removed(Err(message)) => Err(Answer::error(500, message)),
            _ => Err(unexpected()),
        }
    }

    fn add(&mut self, aor_key: Vec<u8>, binding: NewBinding) -> Result<(), Answer> {
        let control = &self.control;
        let owner = control.owner(&aor_key);
        let command = Command::Add {
            aor_key,
            contact: binding.contact,
            expires_s: binding.expires_s,
            q: binding.q,
        };
        match call(control, owner, command)? {
            Reply::Added(Ok(())) => Ok(()),
            Reply::Added(Err(message)) => Err(Answer::error(400, message)),
            _ => Err(unexpected()),
        }
    }

    fn flush(&mut self) -> Result<usize, Answer> {
        let control = &self.control;
        // Every core flushes at once, in bounded steps between its SIP batches.
        let mut pending = Vec::with_capacity(control.shards());
        for shard in 0..control.shards() {
            match control.send(shard, Command::Flush) {
                Ok(answer) => pending.push(answer),
                Err(e) => return Err(Answer::error(503, e.as_str())),
            }
        }
        let mut removed = 0;
        for answer in pending {
            match answer.recv_timeout(Duration::from_millis(FLUSH_ANSWER_TIMEOUT_MS)) {
                Ok(Reply::Flushed { bindings }) => removed += bindings,
                Ok(_) => return Err(unexpected()),
                Err(_) => {
                    return Err(Answer::error(
                        503,
                        "flush still running after the timeout; it goes on in the background",
                    ));
                }
            }
        }
        Ok(removed)
    }

    fn dump(&mut self, cursor: &str, limit: usize) -> Result<Page, Answer> {
        let control = &self.control;
        let (mut shard, mut position) = match cursor {
            "" => (0, 0),
            cursor => match parse_cursor(cursor) {
                Some((s, p)) if s < control.shards() => (s, p),
                _ => {
                    return Err(Answer::error(
                        400,
                        "malformed cursor (use the `next` of a page)",
                    ));
                }
            },
        };
        let mut aors = Vec::new();
        while shard < control.shards() && aors.len() < limit {
            let command = Command::Dump {
                position,
                limit: limit - aors.len(),
            };
            match call(control, shard, command)? {
                Reply::Page { aors: page, next } => {
                    aors.extend(page);
                    match next {
                        Some(p) => position = p,
                        None => {
                            shard += 1;
                            position = 0;
                        }
                    }
                }
                _ => return Err(unexpected()),
            }
        }
        let next = (shard < control.shards()).then(|| format!("{shard}.{position}"));
        Ok(Page { aors, next })
    }
}

/// A cursor is `SHARD.SLOT` (see `LocationTable::aors_from_slot`).
pub(super) fn parse_cursor(cursor: &str) -> Option<(usize, usize)> {
    let (shard, position) = cursor.split_once('.')?;
    Some((shard.parse().ok()?, position.parse().ok()?))
}
