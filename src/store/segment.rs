//! Segment files: a 32-byte header (magic, format version, generation, sequence)
//! followed by framed records.
//!
//! The version lets a future sipreg refuse (or convert) a store it does not understand
//! instead of misreading it; the generation and sequence order segments at load.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// First 8 bytes of every segment.
pub const MAGIC: &[u8; 8] = b"SIPREGLG";
/// The record format this build writes. Version 2 added the branch hash to each
/// binding (a new "set" record kind, issue 14): a sipreg that reads version 1 only
/// would cut such a record as corrupt, so the version says "not for you" first.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this build still reads (version 1 records are all readable).
pub const FORMAT_VERSION_READ_MIN: u32 = 1;
/// Bytes of the segment header.
pub const HEADER_BYTES: usize = 32;
/// A segment is closed and a new one started past this size, in bytes.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// The writer keeps this much zero-filled, synced room ahead of its write position, in
/// bytes, and extends it by this much at a time (see [`zero_fill`]).
pub const ZERO_FILL_CHUNK_BYTES: u64 = 8 << 20;

/// The header of a segment.
pub fn header(generation: u64, seq: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&generation.to_le_bytes());
    h[24..32].copy_from_slice(&seq.to_le_bytes());
    h
}

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// A segment of this format.
    Ok,
    /// Shorter than a header: created but never written (a crash at creation).
    Short,
}

/// Check the header of `bytes` read from `path`: wrong magic or another format
/// version is an error naming the path (start-up must refuse, never guess).
pub fn check_header(path: &Path, bytes: &[u8]) -> anyhow::Result<Header> {
    let Some(h) = bytes.get(..HEADER_BYTES) else {
        return Ok(Header::Short);
    };
    if &h[..8] != MAGIC {
        bail!(
            "{}: not a sipreg segment (bad magic); move it out of the data directory",
            path.display()
        );
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if !(FORMAT_VERSION_READ_MIN..=FORMAT_VERSION).contains(&version) {
        bail!(
            "{}: written in store format version {version}, this sipreg reads versions \
             {FORMAT_VERSION_READ_MIN} to {FORMAT_VERSION} only: refusing to start (use the \
             matching sipreg, or move the data directory away to start empty)",
            path.display()
        );
    }
    Ok(Header::Ok)
}

/// The file name of segment (generation, seq).
pub fn file_name(generation: u64, seq: u64) -> String {
    format!("seg-{generation:010}-{seq:010}.log")
}

/// (generation, seq) of a segment file name, if it is one.
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    let (g, s) = rest.split_once('-')?;
    Some((g.parse().ok()?, s.parse().ok()?))
}

/// The directory of shard `index`.
pub fn shard_dir(data_dir: &Path, index: usize) -> PathBuf {
    data_dir.join(format!("shard-{index}"))
}

/// Create a new segment with its header written, its first [`ZERO_FILL_CHUNK_BYTES`]
/// zero-filled, and the directory entry durable. Returns the file and its length.
pub fn create(dir: &Path, generation: u64, seq: u64) -> anyhow::Result<(File, u64)> {
    let path = dir.join(file_name(generation, seq));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create segment {}", path.display()))?;
    file.write_all(&header(generation, seq))
        .with_context(|| format!("cannot write segment {}", path.display()))?;
    let len = zero_fill(&file, HEADER_BYTES as u64, ZERO_FILL_CHUNK_BYTES)
        .with_context(|| format!("cannot zero-fill segment {}", path.display()))?;
    sync_dir(dir)?;
    Ok((file, len))
}

/// Write `bytes` zeros at `from` (the file's end) and `fdatasync`: returns the new length.
///
/// Why: an `fdatasync` after an append that grows the file must also commit the new
/// size and block mapping through the ext4 journal (3-4 ms here), while one after
/// overwriting blocks that are already allocated and written flushes the data alone
/// (~0.5 ms, PERSISTENCE-NOTES.md §3 "log-pz"). `fallocate` is not enough: it leaves
/// unwritten extents, whose conversion on first write is again a journalled change.
/// The zeros end the log at load ([`super::record::next_frame`]).
pub fn zero_fill(file: &File, from: u64, bytes: u64) -> std::io::Result<u64> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    let end = from + bytes;
    while at < end {
        let n = (end - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    file.sync_data()?;
    Ok(end)
}

/// fsync a directory so that created, renamed and removed entries are durable.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

/// Write `records` (already framed) as segment (generation, seq) of `dir`: to a
/// temporary name, fsync, rename, fsync the directory. All or nothing.
pub fn write_whole(dir: &Path, generation: u64, seq: u64, records: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(file_name(generation, seq));
    let tmp = dir.join(format!("{}.tmp", file_name(generation, seq)));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(&header(generation, seq))?;
        file.write_all(records)?;
        file.sync_data()?;
        fs::rename(&tmp, &path)
    })();
    result.with_context(|| format!("cannot write segment {}", path.display()))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&file_name(3, 17)), Some((3, 17)));
        assert_eq!(parse_name("seg-1-2.log.tmp"), None);
        assert_eq!(parse_name("other"), None);
    }

    #[test]
    fn header_checks() {
        let p = Path::new("x/seg.log");
        assert_eq!(check_header(p, &header(1, 2)).unwrap(), Header::Ok);
        assert_eq!(check_header(p, &header(1, 2)[..10]).unwrap(), Header::Short);
        // A version 1 segment (before branch hashes) is still read.
        let mut v1 = header(1, 2);
        v1[8] = 1;
        assert_eq!(check_header(p, &v1).unwrap(), Header::Ok);
        let mut other = header(1, 2);
        other[8] = 9;
        let e = check_header(p, &other).unwrap_err().to_string();
        assert!(e.contains("x/seg.log") && e.contains("version 9"), "{e}");
        let e = check_header(p, &[0u8; 40]).unwrap_err().to_string();
        assert!(e.contains("bad magic"), "{e}");
    }
}
