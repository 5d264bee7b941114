//! Fixed driver for instruction-count profiling of the parser:
//! `valgrind --tool=callgrind target/release/examples/parse_loop 100000`.

use std::hint::black_box;

use bumpalo::Bump;
use sipreg::sip::parse_request;

#[allow(dead_code)] // the pipeline's REGISTER writer
#[path = "../bench/messages.rs"]
mod messages;
use messages::REGISTER;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut arena = Bump::with_capacity(16 * 1024);
    let mut ok = 0u32;
    for _ in 0..n {
        arena.reset();
        let req = parse_request(black_box(REGISTER), &arena);
        ok += u32::from(black_box(req.is_ok()));
    }
    println!("{ok}/{n} parsed");
}
