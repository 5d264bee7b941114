//! Any bytes on a TCP or TLS connection (RFC 3261 §18.3): the framer must not panic,
//! must stay within the size limit it is given, and must frame a stream the same way
//! whatever its segmentation. The first byte picks the limit, the second where the
//! bytes are cut in two (as two reads would deliver them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipreg::sip::{Framed, frame_within, head_for_answer};

/// Frame `stream` as a connection would: each whole message or keep-alive consumed
/// from the front, stopping at the first partial message or error. Returns the items
/// and what stopped it.
fn frame_all(stream: &[u8], limit: usize) -> (Vec<(bool, usize)>, String) {
    let mut items = Vec::new();
    let mut at = 0;
    loop {
        match frame_within(&stream[at..], limit) {
            Ok(Framed::Complete { len }) => {
                assert!(len > 0 && len <= limit.max(1) && at + len <= stream.len());
                items.push((true, len));
                at += len;
            }
            Ok(Framed::KeepAlive { len }) => {
                assert!(len > 0 && at + len <= stream.len());
                items.push((false, len));
                at += len;
            }
            Ok(Framed::Partial) => return (items, format!("partial at {at}")),
            Err(e) => {
                let head = head_for_answer(&stream[at..]);
                assert!(head.len() <= stream.len() - at);
                return (items, format!("{e:?} at {at}"));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [limit_pick, cut, stream @ ..] = data else {
        return;
    };
    let limit = 64 + usize::from(*limit_pick) * 64;
    let (whole, _) = frame_all(stream, limit);
    // Arriving in two reads: what is framed from the first read, then from the rest
    // appended, is what is framed from the whole, message for message, up to where
    // the whole stream stopped.
    let cut = usize::from(*cut).min(stream.len());
    let (first, _) = frame_all(&stream[..cut], limit);
    let consumed: usize = first.iter().map(|i| i.1).sum();
    for (a, b) in first.iter().zip(&whole) {
        assert_eq!(a, b, "the first read framed differently");
    }
    let (rest, _) = frame_all(&stream[consumed..], limit);
    let joined: Vec<_> = first.iter().chain(&rest).copied().collect();
    assert_eq!(joined, whole, "two reads framed differently from one");
});
