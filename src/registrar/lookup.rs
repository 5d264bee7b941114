//! Requests other than REGISTER: the registrar answers them as a redirect server
//! (RFC 3261 §8.3): a request for a registered AOR gets 302 with its contacts,
//! q-ordered; a known AOR with no live binding gets 480, an unknown one 404. OPTIONS is
//! answered by the registrar itself (§11.2), and is processed even with Max-Forwards 0
//! (RFC 4475 zeromf: 483 is for a request that would be forwarded, and this one is not).

use super::register::{Decided, Intent, IntentOp};
use super::{Registrar, outcome::Outcome};
use crate::location::HashedAorKey;
use crate::sip::{Method, Request};

impl Registrar {
    /// Decide the answer to a non-REGISTER request whose domain and Require passed.
    /// `routed`: the Request-URI's AOR key, hashed, when `prepare` wrote it.
    pub(super) fn lookup<'a>(
        &mut self,
        now_ms: u64,
        req: &Request<'a>,
        routed: Option<HashedAorKey<'_>>,
    ) -> Decided<'a> {
        let outcome = match req.method {
            Method::Options => Outcome::OptionsOk,
            // We hold no INVITE transaction to cancel (§9.2) and take part in no dialog.
            Method::Cancel | Method::Bye | Method::Prack => Outcome::NoTransaction,
            Method::Invite
            | Method::Message
            | Method::Subscribe
            | Method::Notify
            | Method::Refer
            | Method::Publish
            | Method::Info
            | Method::Update => {
                if req.to.tag.is_some() {
                    // A mid-dialog request: we are in no dialog (§12.2.2).
                    Outcome::NoTransaction
                } else if !self.load_key(routed) {
                    Outcome::NotFound
                } else if self.shared.is_some() {
                    // The bindings live in the shared backend: read them there.
                    return Decided::Commit(Intent {
                        call_id: req.call_id,
                        cseq: req.cseq.seq,
                        branch: crate::location::BranchHash::UNKNOWN,
                        op: IntentOp::Fetch,
                    });
                } else {
                    self.redirect(now_ms)
                }
            }
            Method::Other(_) => Outcome::NotImplemented,
            _ => Outcome::MethodNotAllowed,
        };
        outcome.into()
    }

    /// 302 with the live bindings of the Request-URI's AOR (in `self.aor_key`), else
    /// 480 or 404.
    fn redirect(&mut self, now_ms: u64) -> Outcome {
        match self.location.get_hashed(self.aor_key.key()) {
            None if self.location.recently_emptied(self.aor_key.key()) => {
                Outcome::TemporarilyUnavailable
            }
            None => Outcome::NotFound,
            Some(aor) if aor.iter().any(|b| b.expires_ms() > now_ms) => Outcome::Redirected,
            Some(_) => Outcome::TemporarilyUnavailable,
        }
    }
}
