//! Requests other than REGISTER: the registrar answers them as a redirect server
//! (RFC 3261 §8.3): a request for a registered AOR gets 302 with its contacts,
//! q-ordered; a known AOR with no live binding gets 480, an unknown one 404. OPTIONS is
//! answered by the registrar itself (§11.2), and is processed even with Max-Forwards 0
//! (RFC 4475 zeromf: 483 is for a request that would be forwarded, and this one is not).

use super::{Registrar, outcome::Outcome};
use crate::location::HashedAorKey;
use crate::sip::{Method, Request};

impl Registrar {
    /// Decide the answer to a non-REGISTER request whose domain and Require passed.
    /// `routed`: the Request-URI's AOR key, hashed, when `prepare` wrote it.
    pub(super) fn lookup(
        &mut self,
        now_ms: u64,
        req: &Request<'_>,
        routed: Option<HashedAorKey<'_>>,
    ) -> Outcome {
        match req.method {
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
                    return Outcome::NoTransaction;
                }
                self.redirect(now_ms, routed)
            }
            Method::Other(_) => Outcome::NotImplemented,
            _ => Outcome::MethodNotAllowed,
        }
    }

    /// 302 with the live bindings of the Request-URI's AOR, else 480 or 404.
    fn redirect(&mut self, now_ms: u64, routed: Option<HashedAorKey<'_>>) -> Outcome {
        if !self.load_key(routed) {
            return Outcome::NotFound;
        }
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
