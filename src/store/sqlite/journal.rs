//! The grant journal: a small file next to the database, mapped into memory, where a call granted
//! from the proved counts (`proved.rs`) is recorded with a memory copy instead of a transaction.
//!
//! Why a mapped file: the record has to outlive the process (`kill -9` included) before the call is
//! answered, as a committed transaction does, and it has to cost next to nothing on the runtime thread
//! that grants it: no system call that can stall (a `write(2)` updates the file's times and can wait
//! for the file system's journal), no hand-off to another thread. A store into a shared mapping of a
//! file lands in the kernel's page cache, which survives the process exactly as SQLite's WAL frames
//! written with `synchronous = NORMAL` do; like them it reaches the disk with the kernel's writeback
//! or the next `msync`, so a power loss can drop the last grants just as it can drop the last commits.
//!
//! Layout: two halves of [`HALF`] bytes. Records of one epoch are appended to the half `epoch % 2`
//! from its start; starting the next epoch moves to the other half, whose records are then two
//! epochs old. The database remembers from which epoch and offset the journal holds calls it has not
//! folded in yet (`fold.rs`), so a half is only reused once a fold past it has committed. A record is
//! 8-byte aligned:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | epoch, little-endian `u64`: written last, so a record cut short by a kill has a stale epoch |
//! | 8..12 | CRC-32 of the epoch and of bytes 12.. up to the end of the names |
//! | 12..14, 14..16 | lengths of the tenant and the token id (`u16`) |
//! | 16..24 | the token's count after the call (`i64`): absolute, so replaying twice changes nothing |
//! | 24..32 | the call's time, UTC seconds (`i64`) |
//! | 32.. | tenant, then token id, zero-padded to 8 bytes |
//!
//! Reading stops at the first record whose epoch is not the one read or whose checksum does not
//! match: after the last record of an epoch lie older bytes, at any alignment.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{compiler_fence, Ordering};

use memmap2::MmapMut;

/// Bytes of one half: about 6,000 records of a 32-byte token id and a short tenant.
pub(super) const HALF: usize = 512 * 1024;

/// Bytes before the names.
const HEAD: usize = 32;

/// Longest tenant or token id recorded here; longer ones take the store thread's path.
const MAX_NAME: usize = 256;

/// Where the journal's unfolded calls start: an epoch, and an offset in that epoch's half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) epoch: u64,
    pub(super) offset: usize,
}

/// One recorded call, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) tenant: String,
    pub(super) jti: String,
    /// The count after the call.
    pub(super) used: i64,
    pub(super) at: i64,
}

/// The mapped file and where the next record goes.
pub(super) struct Journal {
    map: MmapMut,
    /// Kept open for `msync`'s sake only; the mapping holds its own reference to the file.
    _file: File,
    epoch: u64,
    cursor: usize,
}

/// `<store.path>.grants`.
pub(super) fn path_for(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".grants");
    PathBuf::from(p)
}

impl Journal {
    /// Opens the journal next to `db`, creating it zero-filled when it is missing or `fresh` is
    /// set (the database does not know it, so nothing in it can be trusted). Written out in full
    /// at creation, not made sparse: every block is allocated here, where a full disk is an error at
    /// start, and not at the first store into a hole, where it would be a `SIGBUS`.
    pub(super) fn open(db: &Path, fresh: bool) -> Result<Journal, String> {
        let path = path_for(db);
        let fail = |what: &str, e: std::io::Error| format!("{}: {what}: {e}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| fail("cannot open the grant journal", e))?;
        let len = file
            .metadata()
            .map_err(|e| fail("cannot read the grant journal", e))?
            .len();
        if fresh || len == 0 {
            file.set_len(0)
                .and_then(|()| file.write_all(&vec![0; 2 * HALF]))
                .and_then(|()| file.sync_all())
                .map_err(|e| fail("cannot write the grant journal", e))?;
        } else if len != (2 * HALF) as u64 {
            return Err(format!(
                "{}: the grant journal has {len} bytes, not {}: it was not written by this relay",
                path.display(),
                2 * HALF
            ));
        }
        let map = map(&file).map_err(|e| fail("cannot map the grant journal", e))?;
        Ok(Journal {
            map,
            _file: file,
            epoch: 0,
            cursor: 0,
        })
    }

    /// Where the next record goes.
    pub(super) fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.cursor,
        }
    }

    /// Bytes used in the running epoch's half.
    pub(super) fn used(&self) -> usize {
        self.cursor
    }

    /// Starts writing `epoch` from the start of its half.
    pub(super) fn start(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.cursor = 0;
    }

    /// Records a call; false when the half has no room for it or a name is too long (the call then
    /// takes the store thread's path). The epoch goes in last: cut short, the record is not one.
    pub(super) fn append(&mut self, tenant: &str, jti: &str, used: i64, at: i64) -> bool {
        if tenant.len() > MAX_NAME || jti.len() > MAX_NAME {
            return false;
        }
        let len = record_len(tenant.len(), jti.len());
        if self.cursor + len > HALF {
            return false;
        }
        let start = half_start(self.epoch) + self.cursor;
        let r = &mut self.map[start..start + len];
        // Both lengths are at most MAX_NAME, which fits a u16.
        r[12..14].copy_from_slice(&(tenant.len() as u16).to_le_bytes());
        r[14..16].copy_from_slice(&(jti.len() as u16).to_le_bytes());
        r[16..24].copy_from_slice(&used.to_le_bytes());
        r[24..32].copy_from_slice(&at.to_le_bytes());
        let names = HEAD + tenant.len() + jti.len();
        r[HEAD..HEAD + tenant.len()].copy_from_slice(tenant.as_bytes());
        r[HEAD + tenant.len()..names].copy_from_slice(jti.as_bytes());
        r[names..].fill(0);
        let crc = checksum(self.epoch, &r[12..names]);
        r[8..12].copy_from_slice(&crc.to_le_bytes());
        // Keeps the compiler from moving the epoch's store before the others. Nothing else reads
        // the mapping while the process lives, so the processor's own order does not matter: a
        // killed process's executed stores all reach the page cache.
        compiler_fence(Ordering::Release);
        r[0..8].copy_from_slice(&self.epoch.to_le_bytes());
        self.cursor += len;
        true
    }

    /// The calls recorded from `from` on: the rest of its epoch's half, then the next epoch's half
    /// from its start (a fold can start an epoch and the process die before it commits).
    pub(super) fn read_from(&self, from: Position) -> Vec<Record> {
        let mut out = Vec::new();
        self.read_half(from.epoch, from.offset, &mut out);
        self.read_half(from.epoch.wrapping_add(1), 0, &mut out);
        out
    }

    fn read_half(&self, epoch: u64, mut offset: usize, out: &mut Vec<Record>) {
        let half = &self.map[half_start(epoch)..half_start(epoch) + HALF];
        while let Some((record, len)) = parse(half.get(offset..).unwrap_or_default(), epoch) {
            out.push(record);
            offset += len;
        }
    }

    /// Zeroes the whole file, once its calls are in the rows (at start, after the replay has
    /// committed). Every page is written here, on the thread opening the store, so none is first
    /// touched by a runtime thread's grant (a page fault, and the process's memory growing by the
    /// journal while it serves), and no older record is left behind the next epoch's last one.
    pub(super) fn clear(&mut self) {
        self.map.fill(0);
    }

    /// Asks the kernel to write the journal's dirty pages out (`msync`), on the store thread when it
    /// closes, so a clean stop leaves it on the disk.
    pub(super) fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }
}

/// Maps the whole file shared and writable.
// The one `unsafe` of the crate (see lib.rs). What memmap2 asks of the caller: that nothing changes
// the file's size or contents behind the mapping while it lives, or reads of it race with those
// writes. The file belongs to this relay for as long as its store is open: `lock.rs` keeps every
// other relay off the database and its journal, and the store never resizes the file once mapped.
// Something else with write access to the data directory (which could as well rewrite the database)
// truncating the file would make a store into the mapping raise SIGBUS, a crash, never a wrong count.
#[allow(unsafe_code)]
fn map(file: &File) -> std::io::Result<MmapMut> {
    // SAFETY: see above.
    unsafe { MmapMut::map_mut(file) }
}

fn half_start(epoch: u64) -> usize {
    (epoch % 2) as usize * HALF
}

fn record_len(tenant: usize, jti: usize) -> usize {
    (HEAD + tenant + jti).next_multiple_of(8)
}

fn checksum(epoch: u64, rest: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&epoch.to_le_bytes());
    h.update(rest);
    h.finalize()
}

/// The record at the start of `bytes`, if it is a whole record of `epoch`, with its length.
fn parse(bytes: &[u8], epoch: u64) -> Option<(Record, usize)> {
    let word = |at: usize| -> Option<[u8; 8]> { bytes.get(at..at + 8)?.try_into().ok() };
    if u64::from_le_bytes(word(0)?) != epoch {
        return None;
    }
    let crc = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
    let tenant_len = usize::from(u16::from_le_bytes(bytes.get(12..14)?.try_into().ok()?));
    let jti_len = usize::from(u16::from_le_bytes(bytes.get(14..16)?.try_into().ok()?));
    if tenant_len > MAX_NAME || jti_len > MAX_NAME {
        return None;
    }
    let names = HEAD + tenant_len + jti_len;
    let len = record_len(tenant_len, jti_len);
    if bytes.len() < len || checksum(epoch, &bytes[12..names]) != crc {
        return None;
    }
    let tenant = std::str::from_utf8(&bytes[HEAD..HEAD + tenant_len]).ok()?;
    let jti = std::str::from_utf8(&bytes[HEAD + tenant_len..names]).ok()?;
    let record = Record {
        tenant: tenant.to_string(),
        jti: jti.to_string(),
        used: i64::from_le_bytes(word(16)?),
        at: i64::from_le_bytes(word(24)?),
    };
    Some((record, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tenant: &str, jti: &str, used: i64, at: i64) -> Record {
        Record {
            tenant: tenant.into(),
            jti: jti.into(),
            used,
            at,
        }
    }

    #[test]
    fn records_read_back_from_a_position_through_the_next_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("usage.db");
        let mut j = Journal::open(&db, false).unwrap();
        assert_eq!(
            std::fs::metadata(path_for(&db)).unwrap().len(),
            (2 * HALF) as u64
        );
        j.start(6);
        assert!(j.append("acme", "a", 1, 100));
        let mid = j.position();
        assert!(j.append("acme", "bb", 7, 101));
        assert!(j.append("globex", "a", 2, 102));
        j.start(7);
        assert!(j.append("acme", "a", 2, 103));
        drop(j);

        // Read back after reopening, as a restarted relay does.
        let j = Journal::open(&db, false).unwrap();
        let from_start = Position {
            epoch: 6,
            offset: 0,
        };
        assert_eq!(
            j.read_from(from_start),
            vec![
                rec("acme", "a", 1, 100),
                rec("acme", "bb", 7, 101),
                rec("globex", "a", 2, 102),
                rec("acme", "a", 2, 103),
            ]
        );
        assert_eq!(j.read_from(mid).len(), 3);
        // Epoch 7's half read as epoch 8's start, and epoch 9's: nothing (stale epochs).
        assert_eq!(
            j.read_from(Position {
                epoch: 7,
                offset: 0
            })
            .len(),
            1
        );
        assert!(j
            .read_from(Position {
                epoch: 8,
                offset: 0
            })
            .is_empty());
        // Starting fresh wipes everything.
        drop(j);
        let j = Journal::open(&db, true).unwrap();
        assert!(j.read_from(from_start).is_empty());
    }

    #[test]
    fn a_record_cut_short_or_damaged_ends_the_epoch_there() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("usage.db");
        let mut j = Journal::open(&db, false).unwrap();
        j.start(2);
        assert!(j.append("acme", "a", 1, 100));
        let second = j.position().offset;
        assert!(j.append("acme", "a", 2, 100));
        assert!(j.append("acme", "a", 3, 100));
        let from = Position {
            epoch: 2,
            offset: 0,
        };
        assert_eq!(j.read_from(from).len(), 3);
        // Every byte of the second record but its epoch (a kill between the stores): the checksum
        // no longer matches, and the third record is not read past it either.
        for i in 8..HEAD + 5 {
            j.map[second + i] ^= 0x5a;
            assert_eq!(
                j.read_from(from),
                vec![rec("acme", "a", 1, 100)],
                "byte {i}"
            );
            j.map[second + i] ^= 0x5a;
        }
        // Its epoch not written yet (the zeroed file): the same.
        j.map[second..second + 8].fill(0);
        assert_eq!(j.read_from(from).len(), 1);
    }

    #[test]
    fn a_full_half_refuses_and_long_names_are_left_to_the_store_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("usage.db"), false).unwrap();
        j.start(1);
        assert!(!j.append(&"t".repeat(MAX_NAME + 1), "a", 1, 1));
        let jti = "j".repeat(32);
        let mut n = 0;
        while j.append("acme", &jti, n + 1, 1) {
            n += 1;
        }
        assert_eq!(n as usize, HALF / record_len(4, 32));
        assert!(j.used() <= HALF);
        assert_eq!(
            j.read_from(Position {
                epoch: 1,
                offset: 0
            })
            .len(),
            n as usize
        );
        // The other half is untouched: the next epoch starts empty there.
        j.start(2);
        assert!(j.append("acme", &jti, 1, 1));
    }

    #[test]
    fn a_journal_of_another_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("usage.db");
        std::fs::write(path_for(&db), b"not a journal").unwrap();
        let e = Journal::open(&db, false).err().unwrap();
        assert!(e.contains("not written by this relay"), "{e}");
        assert!(Journal::open(&db, true).is_ok());
    }
}
