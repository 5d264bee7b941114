//! Writes a data directory holding `N` one-binding AORs (1M unless told otherwise), as a
//! running sipreg would have left it, to measure how long a restart takes to load it
//! (the `loaded N bindings in T ms` log line) without priming it over the network:
//!
//! ```text
//! cargo build --release --example store_fill --bin sipreg
//! target/release/examples/store_fill /tmp/fill 1000000
//! target/release/sipreg --cores 1 --listen 127.0.0.1:15060 --admin off --data-dir /tmp/fill
//! ```
//!
//! Field sizes are close to those of `tests/alloc.rs` `memory_per_binding` (20-byte AOR key,
//! 80-byte contact, 40-byte Call-ID, 30-byte User-Agent); every binding expires an hour
//! from now, so the load keeps all of them. Records go to `shard-0`, in segments of at
//! most `SEGMENT_BYTES_MAX`, through the store's own encoder (format version
//! `FORMAT_VERSION`, with branch hashes).

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use sipreg::location::{BranchHash, Transport};
use sipreg::store::record::{StoredBinding, encode_set};
use sipreg::store::segment;

const AORS_DEFAULT: u32 = 1_000_000;
/// The binding lifetime written, in seconds.
const EXPIRES_S: u32 = 3600;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "sipreg-fill".into()));
    let aors: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(AORS_DEFAULT);
    let shard = segment::shard_dir(&dir, 0);
    fs::create_dir_all(&shard)?;
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;

    let (mut key, mut contact, mut call_id) = (String::new(), String::new(), String::new());
    let mut seq = 0u64;
    let mut seg = segment::header(1, seq).to_vec();
    let mut bytes_total = 0usize;
    for i in 0..aors {
        key.clear();
        contact.clear();
        call_id.clear();
        let _ = write!(key, "u{i:07}@example.com");
        let _ = write!(
            contact,
            "sip:u{i:07}@198.51.100.23:5060;transport=udp;rinstance=3f2a9b1c0d4e5f60a1b2c3d4"
        );
        let _ = write!(call_id, "{i:08}-4c5d6e7f8091a2b3c4d5e6f708192a3");
        let branch = format!("z9hG4bK-{i:08}");
        let b = StoredBinding {
            contact: contact.as_bytes(),
            call_id: call_id.as_bytes(),
            path: b"",
            user_agent: b"Yealink SIP-T46S 66.86.0.15 xy",
            instance: None,
            reg_id: None,
            q: None,
            cseq: 1,
            branch: BranchHash::of(Some(branch.as_bytes())),
            flags: 0,
            expires_s: now_s + EXPIRES_S,
            registered_s: now_s,
            source: "198.51.100.23:5060".parse().expect("address"),
            transport: Transport::Udp,
            local_socket: 0,
        };
        encode_set(&mut seg, key.as_bytes(), &[b]);
        if seg.len() as u64 >= segment::SEGMENT_BYTES_MAX {
            bytes_total += seg.len();
            fs::write(shard.join(segment::file_name(1, seq)), &seg)?;
            seq += 1;
            seg = segment::header(1, seq).to_vec();
        }
    }
    bytes_total += seg.len();
    fs::write(shard.join(segment::file_name(1, seq)), &seg)?;
    println!(
        "{aors} AORs, {} segment(s), {bytes_total} bytes in {}",
        seq + 1,
        shard.display()
    );
    Ok(())
}
