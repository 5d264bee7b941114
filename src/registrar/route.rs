//! Which shard owns a request: the placement key the registrar keys its state on.
//!
//! REGISTER is placed by its To AOR, other requests by the Request-URI's AOR (the
//! key [`sip::write_aor_key`] writes: unescaped user `@` lower-cased host), and a
//! request whose URI names no user (OPTIONS to the domain) by its Call-ID. A request the
//! parser refused but can answer is placed by its Call-ID (or top Via), so each of its
//! retransmissions lands on the same shard. The owner is `aor_hash(key) % shards`
//! (`placement`, the one definition the kernel steering program is built from too).

use crate::placement::aor_hash;
use crate::sip::{self, Method, Request};

/// The owner hash of a parsed request: what [`Registrar::prepare`](super::Registrar::prepare)
/// routes by.
pub fn route_hash(req: &Request<'_>) -> u64 {
    with_routing_key(req, |key| owner_hash(req, key))
}

/// The owner hash of `req` given its routing key ([`with_routing_key`]): the AOR key's,
/// or the Call-ID's when the request names no user.
pub(super) fn owner_hash(req: &Request<'_>, key: Option<&[u8]>) -> u64 {
    key.map_or_else(|| aor_hash(req.call_id), aor_hash)
}

/// Calls `f` with the AOR key a request is placed by (REGISTER: the To AOR; others: the
/// Request-URI's `user@host`), or `None` when it names no user.
pub(super) fn with_routing_key<R>(req: &Request<'_>, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    thread_local! {
        static KEY: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
    }
    let uri = if req.method == Method::Register {
        &req.to.uri
    } else {
        &req.request_uri
    };
    KEY.with(|key| {
        let mut key = key.borrow_mut();
        key.clear();
        let named = uri.user.is_some() && sip::write_aor_key(uri, &mut key).is_ok();
        f(named.then_some(key.as_slice()))
    })
}

/// The owner hash of a request the parser refused but can answer: its Call-ID (or top
/// Via), placed like any other key, so every retransmission lands on the same shard.
pub(super) fn echo_hash(echo: &sip::Echo<'_>) -> u64 {
    aor_hash(echo.call_id.unwrap_or(echo.top_via.raw))
}
