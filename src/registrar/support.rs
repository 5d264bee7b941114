//! One-datagram conveniences for tests, benches, the fuzzer and tools. The server does
//! not use them: it prepares a whole batch, warms it and answers each request in order
//! (see the module doc of `registrar`), with ownership decided in `prepare`.

use bumpalo::Bump;

use super::{Action, DropReason, Prepared, Registrar, Source};

/// Which shard owns a datagram, decided as the server's `prepare` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Owned by shard `placement::shard_for(hash, shards)`: the AOR's hash (REGISTER:
    /// To AOR; others: Request-URI), or the Call-ID hash for requests with no AOR.
    Hash(u64),
    /// Nothing to answer and nothing to route (keep-alive CRLF, responses, garbage
    /// without a usable Via): dropped and counted wherever it lands.
    Drop(DropReason),
}

/// The owner of a datagram: [`Registrar::prepare`] told that it owns nothing, so what
/// it hands back is exactly the routing decision.
pub fn route(bytes: &[u8]) -> Route {
    thread_local! {
        static ARENA: std::cell::RefCell<Bump> = std::cell::RefCell::new(Bump::with_capacity(16 * 1024));
    }
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        arena.reset();
        match Registrar::prepare(bytes, &arena, |_| false) {
            Prepared::Forward(hash) => Route::Hash(hash),
            Prepared::Drop(reason) => Route::Drop(reason),
            // `owns` refused everything: nothing is prepared for this shard.
            Prepared::Rejected { .. } | Prepared::Request { .. } | Prepared::PingReply(_) => {
                unreachable!("prepare kept a request it was told it does not own")
            }
        }
    })
}

/// Answer one datagram on a registrar that owns everything: `prepare` then `answer`.
/// `out` holds the response when the action is [`Action::Reply`].
pub fn handle(
    registrar: &mut Registrar,
    now_ms: u64,
    source: Source,
    bytes: &[u8],
    arena: &Bump,
    out: &mut Vec<u8>,
) -> Action {
    let prepared = Registrar::prepare(bytes, arena, |_| true);
    registrar.answer(now_ms, source, &prepared, arena, out)
}
