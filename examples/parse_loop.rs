//! Fixed driver for instruction-count profiling of the parser:
//! `valgrind --tool=callgrind target/release/examples/parse_loop 100000` parses the
//! parser bench's 529-byte REGISTER; `parse_loop 100000 450` the 450-byte one.

use std::hint::black_box;

use bumpalo::Bump;
use sipreg::sip::parse_request;

#[allow(dead_code)] // the pipeline's REGISTER writer
#[path = "../bench/messages.rs"]
mod messages;
use messages::{REGISTER, REGISTER_450};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let msg = match std::env::args().nth(2).as_deref() {
        Some("450") => REGISTER_450,
        _ => REGISTER,
    };
    let mut arena = Bump::with_capacity(16 * 1024);
    let mut ok = 0u32;
    for _ in 0..n {
        arena.reset();
        let req = parse_request(black_box(msg), &arena);
        ok += u32::from(black_box(req.is_ok()));
    }
    println!("{ok}/{n} parsed");
}
