//! Start-up: read every shard directory, keep the last record per AOR, drop expired
//! bindings, re-partition into the current shards, write one compacted snapshot per
//! shard and delete the old segments.
//!
//! A torn or corrupt tail (a crash mid-write) is cut where the first bad frame starts,
//! with a warning naming the file and offset: every record before it is kept, since
//! each is self-contained. A segment of a format version this build does not read stops start-up
//! (version 1 segments, written before bindings kept their branch hash, are read).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hashbrown::HashMap;

use super::record::{self, Frame, Record};
use super::segment::{self, Header};

/// Bytes of a typical record (one binding), to size the AOR map from the bytes read.
const RECORD_BYTES_TYPICAL: usize = 160;
/// The AOR map is sized up front for at most this many AORs.
const MAP_PRESIZE_MAX: usize = 16 << 20;

/// What the load produced.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Per current shard: its framed records (the snapshot just written), to restore.
    pub shards: Vec<Vec<u8>>,
    /// Live bindings kept.
    pub bindings: usize,
    /// AORs kept.
    pub aors: usize,
    /// Expired bindings dropped.
    pub expired: usize,
    /// Bytes cut from torn or corrupt tails.
    pub cut_bytes: u64,
    /// The generation new segments of this run belong to.
    pub generation: u64,
}

/// Check that `data_dir` exists (creating it) and is writable; the error names the path.
pub fn prepare_dir(data_dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let probe = data_dir.join(".sipreg-write-probe");
    fs::write(&probe, b"probe")
        .and_then(|()| fs::remove_file(&probe))
        .with_context(|| format!("the data directory {} is not writable", data_dir.display()))
}

/// Load `data_dir` into `shards` shards; `shard_of(aor_key)` places an AOR. Writes
/// the compacted snapshots and removes the old segments before returning.
pub fn load(
    data_dir: &Path,
    shards: usize,
    now_ms: u64,
    shard_of: impl Fn(&[u8]) -> usize,
) -> anyhow::Result<Loaded> {
    prepare_dir(data_dir)?;
    let old = list_segments(data_dir)?;
    let mut loaded = Loaded {
        generation: old.iter().map(|s| s.0).max().map_or(1, |g| g + 1),
        ..Loaded::default()
    };
    // Every segment stays in memory while the map borrows keys and payloads from it:
    // no copy per record (1M records: ~160 MB, freed before serving).
    let mut files = Vec::with_capacity(old.len());
    for (_, _, path) in &old {
        let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if segment::check_header(path, &bytes)? == Header::Short {
            tracing::warn!(
                "{}: segment header cut short ({} bytes): ignored",
                path.display(),
                bytes.len()
            );
            continue;
        }
        files.push((path, bytes));
    }
    let total_bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let mut latest: HashMap<&[u8], &[u8]> =
        HashMap::with_capacity((total_bytes / RECORD_BYTES_TYPICAL).min(MAP_PRESIZE_MAX));
    for (path, bytes) in &files {
        let mut offset = segment::HEADER_BYTES;
        loop {
            match record::next_frame(bytes, offset) {
                Frame::End => break,
                Frame::Bad(reason) => {
                    cut(path, offset, bytes.len(), reason, &mut loaded);
                    break;
                }
                Frame::Record { payload, next } => match record::peek(payload) {
                    Ok((false, key)) => {
                        latest.remove(key);
                        offset = next;
                    }
                    Ok((true, key)) => {
                        latest.insert(key, payload);
                        offset = next;
                    }
                    Err(e) => {
                        cut(path, offset, bytes.len(), e.as_str(), &mut loaded);
                        break;
                    }
                },
            }
        }
    }

    let shard_count = shards.max(1);
    let kept_bytes: usize = latest
        .values()
        .map(|p| p.len() + record::FRAME_HEADER_BYTES)
        .sum();
    // One allocation per snapshot (a little over an even share), not a doubling series.
    let share = kept_bytes / shard_count;
    loaded.shards = (0..shard_count)
        .map(|_| {
            Vec::with_capacity(if shard_count == 1 {
                share
            } else {
                share + share / 8
            })
        })
        .collect();
    for (key, payload) in &latest {
        let Ok((count, live)) = record::live_count(payload, now_ms) else {
            tracing::warn!(
                "store: the record of AOR {} does not decode: dropped",
                String::from_utf8_lossy(key)
            );
            continue;
        };
        loaded.expired += count - live;
        if live == 0 {
            continue;
        }
        let Some(out) = loaded.shards.get_mut(shard_of(key)) else {
            continue;
        };
        if live == count {
            record::frame(out, payload);
        } else if let Ok(Record::Set { bindings, .. }) = record::decode(payload) {
            let live: Vec<_> = bindings
                .iter()
                .filter(|b| !b.is_expired(now_ms))
                .copied()
                .collect();
            record::encode_set(out, key, &live);
        }
        loaded.bindings += live;
        loaded.aors += 1;
    }
    drop(latest);
    drop(files);

    for (index, records) in loaded.shards.iter().enumerate() {
        let dir = segment::shard_dir(data_dir, index);
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the shard directory {}", dir.display()))?;
        segment::write_whole(&dir, loaded.generation, 0, records)?;
    }
    segment::sync_dir(data_dir)?;
    // The snapshots are durable: the old segments are now redundant (and, should a
    // crash leave some behind, older generations lose to the snapshots anyway).
    for (_, _, path) in &old {
        fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    for dir in shard_dirs(data_dir)? {
        let index = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<usize>().ok());
        if index.is_some_and(|i| i >= shards) {
            // Left over from a run with more shards; empty now unless foreign files.
            let _ = fs::remove_dir(&dir);
        } else {
            segment::sync_dir(&dir)?;
        }
    }
    Ok(loaded)
}

fn cut(path: &Path, offset: usize, len: usize, reason: &str, loaded: &mut Loaded) {
    tracing::warn!(
        "{}: {reason} at offset {offset}: cut the last {} bytes (a torn write from a crash?); \
         every record before it is loaded",
        path.display(),
        len - offset
    );
    loaded.cut_bytes += (len - offset) as u64;
}

fn shard_dirs(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let entries = fs::read_dir(data_dir)
        .with_context(|| format!("cannot list the data directory {}", data_dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with("shard-")) && entry.path().is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Every segment of every shard directory, in load order (generation, seq).
fn list_segments(data_dir: &Path) -> anyhow::Result<Vec<(u64, u64, PathBuf)>> {
    let mut segments = Vec::new();
    for dir in shard_dirs(data_dir)? {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((generation, seq)) = segment::parse_name(name) {
                segments.push((generation, seq, entry.path()));
            } else if name.ends_with(".tmp") {
                // A snapshot that never got renamed: not part of the store.
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    segments.sort();
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Transport;
    use crate::store::record::StoredBinding;

    fn binding(contact: &[u8], expires_s: u32) -> StoredBinding<'_> {
        StoredBinding {
            contact,
            call_id: b"c",
            path: b"",
            user_agent: b"",
            instance: None,
            reg_id: None,
            q: None,
            cseq: 1,
            branch: crate::location::BranchHash::UNKNOWN,
            flags: 0,
            expires_s,
            registered_s: 1,
            source: "192.0.2.1:5060".parse().unwrap(),
            transport: Transport::Udp,
            local_socket: 0,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sipreg-load-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn keys(records: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut offset = 0;
        while let Frame::Record { payload, next } = record::next_frame(records, offset) {
            out.push(record::decode(payload).unwrap().key().to_vec());
            offset = next;
        }
        out.sort();
        out
    }

    #[test]
    fn last_record_wins_expired_dropped_torn_tail_cut_and_repartitioned() {
        let dir = temp_dir("basic");
        let shard0 = segment::shard_dir(&dir, 0);
        fs::create_dir_all(&shard0).unwrap();
        let mut recs = Vec::new();
        record::encode_set(&mut recs, b"a", &[binding(b"sip:a1", 100)]);
        record::encode_set(&mut recs, b"b", &[binding(b"sip:b", 100)]);
        record::encode_set(&mut recs, b"a", &[binding(b"sip:a2", 100)]);
        record::encode_set(&mut recs, b"gone", &[binding(b"sip:g", 100)]);
        record::encode_set(&mut recs, b"gone", &[]);
        record::encode_set(&mut recs, b"old", &[binding(b"sip:o", 5)]);
        let good = recs.len();
        record::encode_set(&mut recs, b"torn", &[binding(b"sip:t", 100)]);
        recs.truncate(recs.len() - 3);
        segment::write_whole(&shard0, 1, 0, &recs).unwrap();

        let loaded = load(&dir, 2, 50_000, |k| usize::from(k == b"b")).unwrap();
        assert_eq!(loaded.bindings, 2);
        assert_eq!(loaded.expired, 1);
        assert_eq!(loaded.generation, 2);
        assert_eq!(loaded.cut_bytes, (recs.len() - good) as u64);
        assert_eq!(keys(&loaded.shards[0]), vec![b"a".to_vec()]);
        assert_eq!(keys(&loaded.shards[1]), vec![b"b".to_vec()]);
        let Frame::Record { payload, .. } = record::next_frame(&loaded.shards[0], 0) else {
            panic!()
        };
        let Record::Set { bindings, .. } = record::decode(payload).unwrap() else {
            panic!()
        };
        assert_eq!(bindings[0].contact, b"sip:a2");

        // The old segment is gone; a second load (into one shard) reads the snapshots.
        assert!(!shard0.join(segment::file_name(1, 0)).exists());
        let again = load(&dir, 1, 50_000, |_| 0).unwrap();
        assert_eq!(again.bindings, 2);
        assert_eq!(again.generation, 3);
        assert!(!segment::shard_dir(&dir, 1).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_version_refuses_naming_the_file() {
        let dir = temp_dir("version");
        let shard0 = segment::shard_dir(&dir, 0);
        fs::create_dir_all(&shard0).unwrap();
        let mut h = segment::header(1, 0).to_vec();
        h[8] = 3;
        let path = shard0.join(segment::file_name(1, 0));
        fs::write(&path, &h).unwrap();
        let e = format!("{:#}", load(&dir, 1, 0, |_| 0).unwrap_err());
        assert!(
            e.contains(&path.display().to_string()) && e.contains("version 3"),
            "{e}"
        );
        assert!(path.exists(), "a refused store is left untouched");
        fs::remove_dir_all(&dir).unwrap();
    }
}
