//! Any bytes from a Redis node: the RESP2 decoder must not panic, must agree with itself
//! when the bytes arrive in pieces through a `Pipeline`, and whatever it decodes must go
//! through the commit-reply, `WAIT`-reply, slot-map and error decoders without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipreg::redis::cluster::{ClusterError, Pipeline, SlotMap};
use sipreg::redis::resp::{self, Reply};
use sipreg::redis::script::decode_commit_reply;
use sipreg::redis::wait::decode_wait_reply;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let whole = resp::decode(bytes);
    if let Ok(Some((reply, used))) = &whole {
        assert!(*used <= bytes.len());
        // A strict prefix of a complete reply is incomplete, never an error.
        assert_eq!(resp::decode(&bytes[..used - 1]), Ok(None));
        let _ = decode_commit_reply(reply);
        let _ = decode_wait_reply(reply, 1);
        let _ = SlotMap::from_cluster_slots(reply);
        if let Reply::Error(msg) = reply {
            let _ = ClusterError::classify(msg);
        }
    }
    // The same bytes in two pieces through a pipeline give the same first reply.
    let mut p = Pipeline::new();
    p.push((), &["PING"]).unwrap();
    let cut = usize::from(split).min(bytes.len());
    p.receive(&bytes[..cut]);
    let early = p.next_reply();
    p.receive(&bytes[cut..]);
    let got = match early {
        Ok(Some(r)) => Ok(Some(r)),
        Ok(None) => p.next_reply(),
        Err(e) => Err(e),
    };
    match (whole, got) {
        (Ok(Some((a, _))), Ok(Some(((), b)))) => assert_eq!(a, b),
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        (w, g) => panic!("one-shot {w:?} but pipelined {g:?}"),
    }
});
