//! Any bytes as a URI: no panic, and a parsed URI is equivalent to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipreg::sip::{parse_uri, uri_equivalent, write_aor_key};

fuzz_target!(|data: &[u8]| {
    if let Ok(uri) = parse_uri(data) {
        assert!(uri_equivalent(&uri, &uri));
        let mut key = Vec::new();
        let _ = write_aor_key(&uri, &mut key);
    }
});
