//! The journal of the open metrics segment: an append-only file of
//! checksummed frames, one per report (format in the [parent module's
//! docs](super)).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{name_too_long, MetricRow, MAX_FRAME_ROWS, MAX_METRIC_NAME_BYTES};
use crate::error::{Error, Result};
use crate::store::fsutil::open_regular;

const JOURNAL_MAGIC: [u8; 8] = *b"TLMJRNL1";
const FRAME_HEADER: usize = 12;
/// Fixed bytes of a journal row before its name.
const ROW_FIXED: usize = 1 + 4 + 8 + 8 + 8 + 8 + 2;
const MAX_FRAME_BYTES: usize = MAX_FRAME_ROWS * (ROW_FIXED + MAX_METRIC_NAME_BYTES);
const FLAG_SNAPSHOT: u8 = 1;
const FLAG_STEP: u8 = 2;

/// The open journal of one segment.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
    frame: Vec<u8>,
}

impl Journal {
    /// Creates the journal `path` (never through an existing file or link).
    pub(super) fn create(path: PathBuf) -> Result<Journal> {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &path, e)),
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("creating", &path, e))?;
        let mut out = BufWriter::with_capacity(64 << 10, file);
        out.write_all(&JOURNAL_MAGIC)
            .map_err(|e| Error::io("writing", &path, e))?;
        Ok(Journal {
            path,
            out,
            frame: Vec::new(),
        })
    }

    /// Appends `rows` (at most [`MAX_FRAME_ROWS`], names at most
    /// [`MAX_METRIC_NAME_BYTES`]) as one frame, into the buffer.
    pub(super) fn append(&mut self, rows: &[MetricRow]) -> Result<()> {
        let f = &mut self.frame;
        f.clear();
        f.resize(FRAME_HEADER, 0);
        for r in rows {
            let name = r.name.as_bytes();
            let name_len = u16::try_from(name.len())
                .ok()
                .filter(|&n| usize::from(n) <= MAX_METRIC_NAME_BYTES)
                .ok_or_else(|| name_too_long(&r.name))?;
            let flags = if r.snapshot.is_some() {
                FLAG_SNAPSHOT
            } else {
                0
            } | if r.step.is_some() { FLAG_STEP } else { 0 };
            f.push(flags);
            f.extend_from_slice(&r.snapshot.unwrap_or(0).to_le_bytes());
            f.extend_from_slice(&r.epoch.to_le_bytes());
            f.extend_from_slice(&r.step.unwrap_or(0).to_le_bytes());
            f.extend_from_slice(&r.value.to_bits().to_le_bytes());
            f.extend_from_slice(&r.unix_time.to_bits().to_le_bytes());
            f.extend_from_slice(&name_len.to_le_bytes());
            f.extend_from_slice(name);
        }
        let payload = &f[FRAME_HEADER..];
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l as usize <= MAX_FRAME_BYTES)
            .ok_or_else(|| Error::invalid("metrics", "too many rows in one journal frame"))?;
        let crc = crc32fast::hash(payload);
        f[0..4].copy_from_slice(&len.to_le_bytes());
        f[4..8].copy_from_slice(&(!len).to_le_bytes());
        f[8..12].copy_from_slice(&crc.to_le_bytes());
        self.out
            .write_all(f)
            .map_err(|e| Error::io("appending to", &self.path, e))
    }

    /// Hands the buffered frames to the kernel: they survive the process
    /// being killed (not a power loss).
    pub(super) fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("appending to", &self.path, e))
    }

    /// Closes the journal without writing what is buffered and removes the
    /// file (its rows are in a segment now).
    pub(super) fn discard(self) -> Result<()> {
        let (_file, _unwritten) = self.out.into_parts();
        std::fs::remove_file(&self.path).map_err(|e| Error::io("removing", &self.path, e))
    }

    /// [`flush`](Self::flush), then fsync: the frames survive a power loss.
    pub(super) fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io("syncing", &self.path, e))
    }
}

/// Reads exactly `buf.len()` bytes, or fewer at the end of the file;
/// returns how many were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading", path, e)),
        }
    }
    Ok(n)
}

/// True when everything left in `r` is zero bytes.
fn rest_is_zero(r: &mut impl Read, path: &Path) -> Result<bool> {
    let mut buf = [0u8; 8192];
    loop {
        let n = read_up_to(r, &mut buf, path)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
    }
}

/// Reads a metrics journal (see the module docs), tolerating a torn tail.
pub(super) fn read_journal(path: &Path) -> Result<Vec<MetricRow>> {
    let mut r = std::io::BufReader::new(open_regular(path)?);
    let torn = |offset: u64, why: &str| {
        tracing::warn!(file = %path.display(), offset, "metrics journal ends in a torn tail ({why}): the rows of the last report before the process died are ignored");
    };
    let mut rows = Vec::new();
    let mut magic = [0u8; 8];
    let n = read_up_to(&mut r, &mut magic, path)?;
    if magic != JOURNAL_MAGIC {
        // Killed before the header reached the disk: empty, a prefix of the
        // magic, or zeros (power loss).
        let torn_header = if n < magic.len() {
            JOURNAL_MAGIC.starts_with(&magic[..n]) || magic[..n].iter().all(|&b| b == 0)
        } else {
            magic == [0; 8] && rest_is_zero(&mut r, path)?
        };
        if !torn_header {
            return Err(Error::corrupt(
                path,
                "not a metrics journal (no 'TLMJRNL1' magic)",
            ));
        }
        if n > 0 {
            torn(0, "incomplete header");
        }
        return Ok(rows);
    }
    let mut offset = magic.len() as u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; FRAME_HEADER];
        let n = read_up_to(&mut r, &mut header, path)?;
        if n == 0 {
            return Ok(rows);
        }
        if n < FRAME_HEADER {
            torn(offset, "incomplete frame header");
            return Ok(rows);
        }
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (len, check, crc) = (word(0), word(4), word(8));
        if len != !check {
            if header == [0; FRAME_HEADER] && rest_is_zero(&mut r, path)? {
                torn(offset, "zero bytes");
                return Ok(rows);
            }
            return Err(Error::corrupt(
                path,
                format!("journal frame at byte {offset}: damaged header (length {len} does not match its check word)"),
            ));
        }
        let len = len as usize;
        if !(ROW_FIXED..=MAX_FRAME_BYTES).contains(&len) {
            return Err(Error::corrupt(
                path,
                format!("journal frame at byte {offset}: length {len} outside {ROW_FIXED}..={MAX_FRAME_BYTES}"),
            ));
        }
        payload.resize(len, 0);
        if read_up_to(&mut r, &mut payload, path)? < len {
            torn(offset, "incomplete frame");
            return Ok(rows);
        }
        if crc32fast::hash(&payload) != crc {
            return Err(Error::corrupt(
                path,
                format!("journal frame at byte {offset}: checksum mismatch"),
            ));
        }
        decode_rows(&payload, &mut rows).map_err(|why| {
            Error::corrupt(path, format!("journal frame at byte {offset}: {why}"))
        })?;
        offset += (FRAME_HEADER + len) as u64;
    }
}

/// Decodes the rows of one frame's payload (checksum already verified).
fn decode_rows(mut p: &[u8], rows: &mut Vec<MetricRow>) -> std::result::Result<(), String> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
        if p.len() < n {
            return Err("row cut short".into());
        }
        let (head, tail) = p.split_at(n);
        *p = tail;
        Ok(head)
    }
    fn u64_at(b: &[u8], i: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    }
    while !p.is_empty() {
        let f = take(&mut p, ROW_FIXED)?;
        let flags = f[0];
        if flags & !(FLAG_SNAPSHOT | FLAG_STEP) != 0 {
            return Err(format!("unknown row flags {flags:#04x}"));
        }
        let snapshot = u32::from_le_bytes([f[1], f[2], f[3], f[4]]);
        let name_len = usize::from(u16::from_le_bytes([f[37], f[38]]));
        if name_len > MAX_METRIC_NAME_BYTES {
            return Err(format!("metric name of {name_len} bytes"));
        }
        let name = std::str::from_utf8(take(&mut p, name_len)?)
            .map_err(|_| "metric name is not UTF-8".to_string())?;
        rows.push(MetricRow {
            snapshot: (flags & FLAG_SNAPSHOT != 0).then_some(snapshot),
            epoch: u64_at(f, 5),
            step: (flags & FLAG_STEP != 0).then(|| u64_at(f, 13)),
            value: f64::from_bits(u64_at(f, 21)),
            unix_time: f64::from_bits(u64_at(f, 29)),
            name: name.to_string(),
        });
    }
    Ok(())
}
