//! The write-ahead log in front of the sled store.
//!
//! A sled multi-tree transaction seals sled's log buffer and hands it to
//! sled's IO threads every time, and then `Db::flush` writes and syncs
//! sled's log again: most of the CPU a new alert cost. So the sled store
//! does not use sled transactions. One writer at a time (the store's write
//! lock) gathers a transaction's writes in memory, appends them to this log
//! as one record and syncs it (one `write` and one `fdatasync`), and only
//! then applies them to sled as plain inserts and removes. sled writes them
//! to its own files in the background.
//!
//! A crash can leave sled with some of a record's writes and not others.
//! At open, every record since the last checkpoint is applied again, in
//! order; each write sets a key to a whole value (or removes it), so doing
//! it twice is the same as doing it once, and the trees end up as they were
//! after the last record that was synced. A checkpoint is `Db::flush` (all
//! applied writes are in sled's files) followed by a new epoch: a record
//! with no writes at offset 0, after which the old records no longer count.
//!
//! A record is `len: u32, crc: u32, epoch: u64, seq: u64, writes`, little
//! endian, `crc` being CRC-32 of everything after it. Reading stops at the
//! first record that is cut short, fails its CRC, or is not the next `seq`
//! of the epoch the record at offset 0 started: what lies after it is a
//! record that was never synced, or one from an earlier epoch (the file is
//! reused from the start at each checkpoint).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The log's file name in the data directory.
pub const WAL_FILE: &str = "tocsin-wal.log";

const HEADER: usize = 24;

/// One write: a tree (by index), a key, and the new value (`None`: removed).
pub type Write = (usize, Vec<u8>, Option<Vec<u8>>);

/// The log file.
pub struct Wal {
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    end: u64,
    epoch: u64,
    /// The last record's sequence number in this epoch.
    seq: u64,
    /// The record being built, kept between appends so its memory is reused.
    buf: Vec<u8>,
    /// Where the last read stopped at a damaged record that later records
    /// of the same epoch follow: (byte offset, the first later seq found).
    damaged: Option<(u64, u64)>,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, and returns it with the writes
    /// of the records since the last checkpoint, oldest first. The caller
    /// applies them, flushes sled and calls [`Wal::checkpoint`].
    pub fn open(dir: &Path) -> io::Result<(Wal, Vec<Write>)> {
        let path = dir.join(WAL_FILE);
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if created {
            // The file itself must survive a crash.
            File::open(dir)?.sync_all()?;
        }
        let mut wal = Wal {
            file,
            path,
            end: 0,
            epoch: 0,
            seq: 0,
            buf: Vec::new(),
            damaged: None,
        };
        let writes = wal.read()?;
        Ok((wal, writes))
    }

    /// Reads the records of the current epoch (and sets where the next one
    /// goes): what a reopened sled must have applied again.
    pub fn read(&mut self) -> io::Result<Vec<Write>> {
        let mut bytes = Vec::new();
        {
            use std::io::{Read, Seek};
            let mut f = &self.file;
            f.seek(io::SeekFrom::Start(0))?;
            f.read_to_end(&mut bytes)?;
        }
        let mut writes = Vec::new();
        let mut at = 0usize;
        let mut epoch = None;
        let mut seq = 0u64;
        while let Some((rec_epoch, rec_seq, body, len)) = record_at(&bytes, at) {
            match epoch {
                None if rec_seq == 0 => epoch = Some(rec_epoch),
                Some(e) if e == rec_epoch && rec_seq == seq + 1 => {}
                _ => break,
            }
            let Some(parsed) = parse_writes(body) else {
                break;
            };
            writes.extend(parsed);
            seq = rec_seq;
            at += len;
        }
        self.damaged = epoch.and_then(|e| later_record(&bytes, at, e, seq));
        if let Some((_, later)) = self.damaged {
            // Not a torn tail (that is a record never synced, and nothing
            // of its epoch follows it): a synced record went bad, and the
            // ones behind it cannot be applied again without it.
            tracing::error!(path = %self.path.display(), offset = at, last_good_seq = seq,
                later_seq = later,
                "The write-ahead log is damaged in the middle: the records from the damaged one on \
                 are not applied again, so writes acknowledged just before the last stop may be \
                 missing from the store if sled had not applied them. Check the disk, and the \
                 incidents written just before the last stop.");
        }
        self.epoch = epoch.unwrap_or(0);
        self.seq = seq;
        self.end = at as u64;
        Ok(writes)
    }

    /// Whether the last read stopped at a damaged record with later ones of
    /// its epoch behind it: (byte offset, the first later seq found).
    #[cfg(test)]
    pub fn damaged(&self) -> Option<(u64, u64)> {
        self.damaged
    }

    /// Bytes of records since the last checkpoint.
    pub fn size(&self) -> u64 {
        self.end
    }

    /// The log's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record holding `writes` and syncs it. On an error the
    /// record does not count: the next one is written in its place.
    pub fn append<'a>(
        &mut self,
        writes: impl Iterator<Item = (usize, &'a [u8], Option<&'a [u8]>)>,
    ) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(HEADER, 0);
        for (tree, key, value) in writes {
            buf.push(tree as u8);
            buf.push(value.is_some() as u8);
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key);
            if let Some(v) = value {
                buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                buf.extend_from_slice(v);
            }
        }
        let result = self.write_record(&mut buf, self.seq + 1);
        // A huge record's memory is not kept.
        if buf.capacity() <= 4 * 1024 * 1024 {
            self.buf = buf;
        }
        result
    }

    /// Starts a new epoch: the caller has put every write applied so far
    /// into sled's files (`Db::flush`), so the records before no longer
    /// count.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        // A random epoch: a stale record later in the file (from any
        // earlier epoch, even if the record at offset 0 was lost) never
        // continues the new one.
        let mut epoch = uuid::Uuid::new_v4().as_u64_pair().0;
        if epoch == self.epoch {
            epoch = epoch.wrapping_add(1);
        }
        let old = (self.epoch, self.seq, self.end);
        self.epoch = epoch;
        self.end = 0;
        if let Err(e) = self.write_record(&mut [0u8; HEADER], 0) {
            (self.epoch, self.seq, self.end) = old;
            return Err(e);
        }
        Ok(())
    }

    fn write_record(&mut self, buf: &mut [u8], seq: u64) -> io::Result<()> {
        let body = (buf.len() - HEADER) as u32;
        buf[0..4].copy_from_slice(&body.to_le_bytes());
        buf[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        buf[16..24].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32fast::hash(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(buf, self.end)?;
        self.file.sync_data()?;
        self.end += buf.len() as u64;
        self.seq = seq;
        Ok(())
    }
}

/// A whole record of `epoch` with a seq after `seq`, somewhere after `at`
/// (where reading stopped): (`at`, its seq). Stale records of earlier
/// epochs and a torn tail have none.
fn later_record(bytes: &[u8], at: usize, epoch: u64, seq: u64) -> Option<(u64, u64)> {
    let want = epoch.to_le_bytes();
    (at + 1..bytes.len().saturating_sub(HEADER - 1)).find_map(|i| {
        if bytes.get(i + 8..i + 16)? != want {
            return None;
        }
        let (e, s, _, _) = record_at(bytes, i)?;
        (e == epoch && s > seq + 1).then_some((at as u64, s))
    })
}

/// The record at `at`, if a whole one with a good CRC is there:
/// (epoch, seq, writes, length in bytes).
fn record_at(bytes: &[u8], at: usize) -> Option<(u64, u64, &[u8], usize)> {
    let head = bytes.get(at..at.checked_add(HEADER)?)?;
    let body = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let end = at.checked_add(HEADER)?.checked_add(body)?;
    let rec = bytes.get(at..end)?;
    if crc32fast::hash(&rec[8..]) != crc {
        return None;
    }
    let epoch = u64::from_le_bytes(rec[8..16].try_into().ok()?);
    let seq = u64::from_le_bytes(rec[16..24].try_into().ok()?);
    Some((epoch, seq, &rec[HEADER..], HEADER + body))
}

fn parse_writes(mut body: &[u8]) -> Option<Vec<Write>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    fn len(b: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
    }
    let mut out = Vec::new();
    while !body.is_empty() {
        let tag = take(&mut body, 2)?;
        let (tree, put) = (tag[0] as usize, tag[1] == 1);
        let n = len(&mut body)?;
        let key = take(&mut body, n)?.to_vec();
        let value = if put {
            let n = len(&mut body)?;
            Some(take(&mut body, n)?.to_vec())
        } else {
            None
        };
        out.push((tree, key, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tree: usize, k: &str, v: &str) -> (usize, &'static [u8], Option<&'static [u8]>) {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        let v: &'static str = Box::leak(v.to_string().into_boxed_str());
        (tree, k.as_bytes(), Some(v.as_bytes()))
    }

    fn keys(writes: &[Write]) -> Vec<String> {
        writes
            .iter()
            .map(|(t, k, v)| {
                format!(
                    "{t}:{}={}",
                    String::from_utf8_lossy(k),
                    v.as_deref().map_or("-".into(), String::from_utf8_lossy)
                )
            })
            .collect()
    }

    #[test]
    fn records_since_the_checkpoint_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, writes) = Wal::open(dir.path()).unwrap();
        assert!(writes.is_empty());
        wal.checkpoint().unwrap();
        wal.append([put(0, "a", "1"), put(2, "b", "2")].into_iter())
            .unwrap();
        wal.append([(0, &b"a"[..], None)].into_iter()).unwrap();
        drop(wal);
        let (_, writes) = Wal::open(dir.path()).unwrap();
        assert_eq!(keys(&writes), ["0:a=1", "2:b=2", "0:a=-"]);
    }

    #[test]
    fn a_checkpoint_drops_what_came_before_though_the_file_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.checkpoint().unwrap();
        for i in 0..20 {
            wal.append([put(1, &format!("old{i}"), "x")].into_iter())
                .unwrap();
        }
        wal.checkpoint().unwrap();
        wal.append([put(1, "new", "y")].into_iter()).unwrap();
        drop(wal);
        let (_, writes) = Wal::open(dir.path()).unwrap();
        assert_eq!(keys(&writes), ["1:new=y"]);
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.checkpoint().unwrap();
        wal.append([put(0, "kept", "1")].into_iter()).unwrap();
        let at = wal.size();
        wal.append([put(0, "torn", "2")].into_iter()).unwrap();
        wal.append([put(0, "after", "3")].into_iter()).unwrap();
        drop(wal);
        // Damage one byte of the second record: it and what follows are
        // not read (they were never synced, as far as the log can tell).
        let path = dir.path().join(WAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at as usize + HEADER + 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (mut wal, writes) = Wal::open(dir.path()).unwrap();
        assert_eq!(keys(&writes), ["0:kept=1"]);
        // A record of the epoch follows the damaged one: said, not silent.
        assert_eq!(wal.damaged(), Some((at, 3)));
        // The store applies what was read, then starts a new epoch: the
        // records behind the damage never join it.
        wal.checkpoint().unwrap();
        wal.append([put(0, "next", "4")].into_iter()).unwrap();
        let end = wal.size();
        drop(wal);
        let (wal, writes) = Wal::open(dir.path()).unwrap();
        assert_eq!(keys(&writes), ["0:next=4"]);
        // The stale records behind the new epoch's are no damage.
        assert_eq!(wal.damaged(), None);
        drop(wal);
        // Cut short: the same.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(end - 3).unwrap();
        drop(f);
        let (wal, writes) = Wal::open(dir.path()).unwrap();
        assert!(writes.is_empty(), "{:?}", keys(&writes));
        assert_eq!(wal.damaged(), None, "a torn tail is no damage");
    }

    #[test]
    fn a_lost_first_record_reads_as_empty_and_old_records_never_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.checkpoint().unwrap();
        wal.append([put(0, "stale", "1")].into_iter()).unwrap();
        drop(wal);
        let path = dir.path().join(WAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 0xff; // the epoch-start record
        std::fs::write(&path, &bytes).unwrap();
        let (mut wal, writes) = Wal::open(dir.path()).unwrap();
        assert!(writes.is_empty());
        // A new epoch written over it does not pick up the stale record
        // behind its start, even though it sits where seq 1 would.
        wal.checkpoint().unwrap();
        drop(wal);
        let (_, writes) = Wal::open(dir.path()).unwrap();
        assert!(writes.is_empty(), "{:?}", keys(&writes));
    }
}
