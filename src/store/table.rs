//! The one table writer and reader behind every Parquet and Arrow IPC file
//! the crate writes (exports, directions, surfaces, PCA, curvature maps,
//! metrics, surface segments).
//!
//! Writing: zstd level 3 ([`ZSTD_LEVEL`]), key-value metadata, written to a
//! temporary name and renamed into place ([`write_atomic`]), so a reader never
//! sees a half-written table under its final name.
//!
//! Reading: the file must be a regular file (a FIFO or device is refused
//! before anything is read), its columns must equal the expected schema, and
//! Arrow IPC files are checked block by block before Arrow decodes them
//! (Arrow's decoder panics on some damaged files).
//!
//! Checksums: every Arrow IPC file the crate writes (snapshots, metrics,
//! surface point segments) lists the CRC32 of each record batch's bytes (its
//! message header and body, as the footer's block gives them) in the footer's
//! custom metadata under [`CHECKSUM_KEY`], a JSON list in batch order. Readers
//! compare them before decoding, and refuse a file without them (otherwise
//! one damaged byte in the key would switch checking off; only pre-release
//! builds wrote IPC files without checksums).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::ipc::reader::{read_footer_length, FileReader};
use arrow::ipc::writer::FileWriter;
use arrow::ipc::{root_as_footer, root_as_message, Block, Footer};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::store::fsutil::{open_regular, write_atomic};

/// The zstd level of every Parquet table.
pub const ZSTD_LEVEL: i32 = 3;

/// The magic bytes that start and end an Arrow IPC file.
const ARROW_MAGIC: [u8; 6] = *b"ARROW1";

/// Key of the Arrow IPC footer's custom metadata holding the CRC32
/// (crc32fast, IEEE polynomial) of every record batch, as a JSON list of
/// integers in batch order. Each checksum covers the batch's bytes as the
/// footer's block locates them: `[offset, offset + metaDataLength +
/// bodyLength)`, i.e. the message header and the body.
pub const CHECKSUM_KEY: &str = "tch_landscape.crc32";

fn parquet_error(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

/// Writer properties of every Parquet table: zstd, `metadata` as key-values.
fn properties(metadata: &[(String, String)]) -> WriterProperties {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default();
    let mut kv = metadata
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect::<Vec<_>>();
    kv.push(KeyValue::new(
        META_CHECKSUM_KEY.to_string(),
        metadata_checksum(metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()))).to_string(),
    ));
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_key_value_metadata(Some(kv))
        .build()
}

/// Key-value metadata key of a Parquet file's CRC32 of its own key-value
/// metadata (the settings and specs stored with a result).
pub const META_CHECKSUM_KEY: &str = "tch_landscape.meta_crc32";

/// The CRC32 of key-value pairs, sorted, as JSON.
fn metadata_checksum<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u32 {
    let sorted: std::collections::BTreeMap<&str, &str> = pairs.collect();
    crc32fast::hash(
        serde_json::to_string(&sorted)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// The open Parquet table handed to the closure of [`write_parquet`].
pub(crate) struct ParquetSink<'a> {
    writer: ArrowWriter<CrcWriter<&'a mut BufWriter<File>>>,
    path: &'a Path,
    rows: u64,
}

impl ParquetSink<'_> {
    /// Appends a record batch (its schema must be the table's).
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(parquet_error(self.path))
    }
}

/// Writes the Parquet table `path` atomically: `fill` appends record batches
/// of `schema`; `metadata` becomes the file's key-value metadata. Returns the
/// number of rows written. When `fill` or the write fails nothing is left
/// under `path` or its temporary name.
pub(crate) fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    metadata: &[(String, String)],
    fill: impl FnOnce(&mut ParquetSink<'_>) -> Result<()>,
) -> Result<u64> {
    let mut rows = 0;
    write_atomic(path, true, |w| {
        let w = CrcWriter {
            inner: w,
            hasher: crc32fast::Hasher::new(),
        };
        let writer = ArrowWriter::try_new(w, schema, Some(properties(metadata)))
            .map_err(parquet_error(path))?;
        let mut sink = ParquetSink {
            writer,
            path,
            rows: 0,
        };
        fill(&mut sink)?;
        rows = sink.rows;
        // Everything but the footer: the magic and every column chunk.
        sink.writer.flush().map_err(parquet_error(path))?;
        sink.writer
            .sync()
            .map_err(|e| Error::io("writing", path, e))?;
        let crc = sink.writer.inner_mut().take();
        sink.writer.append_key_value_metadata(KeyValue::new(
            DATA_CHECKSUM_KEY.to_string(),
            crc.to_string(),
        ));
        sink.writer.close().map_err(parquet_error(path))?;
        Ok(())
    })?;
    Ok(rows)
}

/// Writes one record batch as the Parquet table `path` (see [`write_parquet`]).
pub(crate) fn write_parquet_batch(
    path: &Path,
    batch: &RecordBatch,
    metadata: &[(String, String)],
) -> Result<()> {
    write_parquet(path, batch.schema(), metadata, |sink| sink.write(batch)).map(|_| ())
}

/// The key-value metadata entry `key` holding `value` as JSON, which
/// [`Table::json_meta`] reads back; `path` names the table in errors.
pub(crate) fn json_entry<T: serde::Serialize + ?Sized>(
    path: &Path,
    key: &str,
    value: &T,
) -> Result<(String, String)> {
    let json = serde_json::to_string(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((key.to_string(), json))
}

/// A Parquet table read back: its record batches and key-value metadata.
#[derive(Debug)]
pub(crate) struct Table {
    /// The record batches, in file order.
    pub(crate) batches: Vec<RecordBatch>,
    /// The file's key-value metadata.
    pub(crate) metadata: HashMap<String, String>,
}

impl Table {
    /// The metadata value of `key`, or an error naming the file and key.
    pub(crate) fn required_meta(&self, path: &Path, key: &str, what: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::corrupt(path, format!("no '{key}' metadata: not {what}")))
    }

    /// Deserializes the JSON metadata value of `key`.
    pub(crate) fn json_meta<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
        key: &str,
        what: &str,
    ) -> Result<T> {
        let json = self.required_meta(path, key, what)?;
        serde_json::from_str(json)
            .map_err(|e| Error::corrupt(path, format!("bad '{key}' metadata ({e})")))
    }
}

/// Key-value metadata key of a Parquet file's CRC32 of everything before
/// its footer (the magic and every column chunk).
pub const DATA_CHECKSUM_KEY: &str = "tch_landscape.data_crc32";

/// Checks the first `data_end` bytes of the Parquet file `path` against
/// [`DATA_CHECKSUM_KEY`] in its `meta`: a damaged page is an error, never
/// other values.
fn check_parquet_data(
    path: &Path,
    meta: &parquet::file::metadata::FileMetaData,
    data_end: u64,
) -> Result<()> {
    let stored = meta
        .key_value_metadata()
        .into_iter()
        .flatten()
        .find(|kv| kv.key == DATA_CHECKSUM_KEY)
        .and_then(|kv| kv.value.as_deref()?.parse::<u32>().ok())
        .ok_or_else(|| {
            Error::corrupt(
                path,
                format!("no readable '{DATA_CHECKSUM_KEY}' metadata (damaged, or written by a pre-release build: compute it again)"),
            )
        })?;
    let mut file = std::io::Read::take(open_regular(path)?, data_end);
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n =
            std::io::Read::read(&mut file, &mut buf).map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let computed = hasher.finalize();
    if computed != stored {
        return Err(Error::corrupt(
            path,
            checksum_mismatch("data pages", stored, computed),
        ));
    }
    Ok(())
}

/// Reads the Parquet table `path`, whose columns must be those of `schema`
/// (names, types and nullability); `what` names the kind of table in errors
/// ("a curvature map").
pub(crate) fn read_parquet(path: &Path, schema: &Schema, what: &str) -> Result<Table> {
    let file = open_regular(path)?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io("reading", path, e))?
        .len();
    let corrupt = |r: String| Error::corrupt(path, r);
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| corrupt(format!("not a readable Parquet file ({e})")))?;
    // The Parquet decoder asserts that column chunks have non-negative
    // ranges (and reads them from the file): checked here first.
    let mut data_end = 4u64; // the magic
    for (g, group) in builder.metadata().row_groups().iter().enumerate() {
        for c in group.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let len = c.compressed_size();
            let inside = start >= 0
                && len >= 0
                && (start as u64)
                    .checked_add(len as u64)
                    .is_some_and(|e| e <= file_len);
            if !inside {
                return Err(corrupt(format!(
                    "row group {g}: column chunk '{}' at {start} + {len} bytes lies outside the {file_len}-byte file",
                    c.column_path()
                )));
            }
            data_end = data_end.max(start as u64 + len as u64);
        }
    }
    check_parquet_data(path, builder.metadata().file_metadata(), data_end)?;
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect::<HashMap<String, String>>();
    let stored = metadata
        .get(META_CHECKSUM_KEY)
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| corrupt(format!("no readable '{META_CHECKSUM_KEY}' metadata")))?;
    let computed = metadata_checksum(
        metadata
            .iter()
            .filter(|(k, _)| {
                ![META_CHECKSUM_KEY, DATA_CHECKSUM_KEY, "ARROW:schema"].contains(&k.as_str())
            })
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if stored != computed {
        return Err(corrupt(checksum_mismatch(
            "key-value metadata",
            stored,
            computed,
        )));
    }
    if builder.schema().fields() != schema.fields() {
        return Err(corrupt(format!(
            "its columns differ from those of {what} (schemas/ documents them)"
        )));
    }
    // The decoder still panics on some damaged pages (a dictionary-encoded
    // page without its dictionary, a zero count it divides by): such a
    // panic is the file's fault and becomes its error.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let reader = builder.build().map_err(|e| corrupt(e.to_string()))?;
        reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| corrupt(e.to_string()))
    }));
    let batches = match decoded {
        Ok(batches) => batches?,
        Err(p) => {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(corrupt(format!("damaged Parquet data ({why})")));
        }
    };
    Ok(Table { batches, metadata })
}

/// A writer computing the CRC32 of the bytes that pass through it since the
/// last [`CrcWriter::take`].
struct CrcWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(buf));
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W> CrcWriter<W> {
    /// The CRC32 of the bytes written since the last call, and a fresh start.
    fn take(&mut self) -> u32 {
        std::mem::take(&mut self.hasher).finalize()
    }
}

/// The open Arrow IPC file handed to the closure of [`write_ipc_with`]: every
/// record batch written through it is checksummed.
pub(crate) struct IpcSink<'a, W: Write> {
    writer: FileWriter<CrcWriter<W>>,
    path: &'a Path,
    checksums: Vec<u32>,
}

impl<W: Write> IpcSink<'_, W> {
    /// Appends a record batch (its schema must be the file's) and records its
    /// checksum.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        // Everything written before (the schema message, earlier batches)
        // is not part of this batch's block.
        self.writer.get_mut().take();
        self.writer
            .write(batch)
            .map_err(|e| Error::arrow(self.path, e))?;
        let crc = self.writer.get_mut().take();
        self.checksums.push(crc);
        Ok(())
    }

    /// Adds a key-value pair to the footer's custom metadata.
    pub(crate) fn footer_metadata(&mut self, key: &str, value: String) {
        self.writer.write_metadata(key, value);
    }
}

/// Writes the Arrow IPC file `path` of `schema` atomically (see
/// [`write_atomic`]): `fill` appends the record batches, whose checksums go
/// into the footer under [`CHECKSUM_KEY`]. With `fsync` the file and the
/// rename are durable when this returns.
pub(crate) fn write_ipc_with(
    path: &Path,
    schema: &Schema,
    fsync: bool,
    fill: impl FnOnce(&mut IpcSink<'_, &mut BufWriter<File>>) -> Result<()>,
) -> Result<()> {
    write_atomic(path, fsync, |w| {
        let w = CrcWriter {
            inner: w,
            hasher: crc32fast::Hasher::new(),
        };
        let mut writer = FileWriter::try_new(w, schema).map_err(|e| Error::arrow(path, e))?;
        // The magic and the schema message, before the first batch.
        let header = writer.get_mut().take();
        writer.write_metadata(HEADER_CHECKSUM_KEY, header.to_string());
        let mut sink = IpcSink {
            writer,
            path,
            checksums: Vec::new(),
        };
        fill(&mut sink)?;
        let list = serde_json::to_string(&sink.checksums).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        sink.writer.write_metadata(CHECKSUM_KEY, list);
        sink.writer
            .write_metadata(SCHEMA_CHECKSUM_KEY, schema_checksum(schema).to_string());
        sink.writer.finish().map_err(|e| Error::arrow(path, e))
    })
}

/// Writes one record batch as the Arrow IPC file `path`, atomically, with
/// its checksum (see [`write_ipc_with`]).
pub(crate) fn write_ipc(path: &Path, batch: &RecordBatch, fsync: bool) -> Result<()> {
    write_ipc_with(path, &batch.schema(), fsync, |sink| sink.write(batch))
}

/// Footer key of the CRC32 of the schema's key-value metadata (sorted, as
/// JSON), which the batch checksums do not cover.
pub const SCHEMA_CHECKSUM_KEY: &str = "tch_landscape.schema_crc32";

/// The CRC32 of `schema`'s key-value metadata, sorted by key, as JSON.
fn schema_checksum(schema: &Schema) -> u32 {
    let sorted: std::collections::BTreeMap<&String, &String> = schema.metadata().iter().collect();
    crc32fast::hash(
        serde_json::to_string(&sorted)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// Footer key of the CRC32 of the file's header (magic and schema message,
/// up to the first record batch).
pub const HEADER_CHECKSUM_KEY: &str = "tch_landscape.header_crc32";

/// Checks the header of an IPC file (`bytes`, whose first record batch
/// starts at `first_block`) against [`HEADER_CHECKSUM_KEY`].
pub(crate) fn check_header(
    bytes: &[u8],
    footer: &Footer<'_>,
    first_block: Option<&Block>,
) -> std::result::Result<(), String> {
    let stored = footer_metadata(footer, HEADER_CHECKSUM_KEY)
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| format!("no readable '{HEADER_CHECKSUM_KEY}' in its footer"))?;
    // A file without batches has nothing to delimit its header by.
    let Some(block) = first_block else {
        return Ok(());
    };
    let end = usize::try_from(block.offset())
        .ok()
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| "first record batch outside the file".to_string())?;
    let computed = crc32fast::hash(&bytes[..end]);
    if computed != stored {
        return Err(checksum_mismatch("header", stored, computed));
    }
    Ok(())
}

/// The value of `key` in the custom metadata of an IPC footer.
pub(crate) fn footer_metadata<'a>(footer: &Footer<'a>, key: &str) -> Option<&'a str> {
    footer
        .custom_metadata()?
        .iter()
        .find(|kv| kv.key() == Some(key))
        .map(|kv| kv.value().unwrap_or_default())
}

/// The checksums of the `batches` record batches of an IPC file, from its
/// footer ([`CHECKSUM_KEY`]); `None` for a file written before checksums.
/// Errors are the reason the list is unusable.
pub(crate) fn footer_checksums(
    footer: &Footer<'_>,
    batches: usize,
) -> std::result::Result<Option<Vec<u32>>, String> {
    let Some(json) = footer_metadata(footer, CHECKSUM_KEY) else {
        // Every file this crate writes has them; a file without them was
        // damaged where the list was, or written by a pre-release build.
        // Accepting it would let one damaged byte turn checking off.
        return Err(format!(
            "no '{CHECKSUM_KEY}' checksums in its footer (damaged, or written by a pre-release build of tch-landscape: record it again)"
        ));
    };
    let list: Vec<u32> = serde_json::from_str(json)
        .map_err(|e| format!("unreadable '{CHECKSUM_KEY}' footer metadata ({e})"))?;
    if list.len() != batches {
        return Err(format!(
            "'{CHECKSUM_KEY}' lists {} checksums for {batches} record batches",
            list.len()
        ));
    }
    Ok(Some(list))
}

/// The reason given when the bytes of `what` do not match their checksum.
pub(crate) fn checksum_mismatch(what: &str, stored: u32, computed: u32) -> String {
    format!(
        "{what}: checksum mismatch (stored {stored:08x}, computed {computed:08x}): \
         the file was damaged after it was written"
    )
}

/// Reads the Arrow IPC file `path` of flat `schema` (primitive and string
/// columns), checking its footer, every block and every block's checksum
/// before decoding.
pub(crate) fn read_ipc(path: &Path, schema: &Schema) -> Result<Vec<RecordBatch>> {
    read_ipc_checked(path, schema).map(|(batches, _)| batches)
}

/// [`read_ipc`], also saying whether the file had checksums (files written
/// before checksums existed have none).
pub(crate) fn read_ipc_checked(path: &Path, schema: &Schema) -> Result<(Vec<RecordBatch>, bool)> {
    let mut file = open_regular(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| Error::io("reading", path, e))?;
    let corrupt = |r: String| Error::corrupt(path, r);
    let (footer, trailer_start) = ipc_footer(&bytes).map_err(corrupt)?;
    let blocks: Vec<&Block> = footer.recordBatches().into_iter().flatten().collect();
    let checksums = footer_checksums(&footer, blocks.len()).map_err(corrupt)?;
    check_header(&bytes, &footer, blocks.first().copied()).map_err(corrupt)?;
    for (i, block) in blocks.iter().enumerate() {
        let (start, len) = check_ipc_block(&bytes, block, trailer_start, schema)
            .map_err(|r| corrupt(format!("record batch {i}: {r}")))?;
        if let Some(stored) = checksums.as_ref().and_then(|c| c.get(i).copied()) {
            let computed = crc32fast::hash(&bytes[start..start + len]);
            if computed != stored {
                return Err(corrupt(checksum_mismatch(
                    &format!("record batch {i}"),
                    stored,
                    computed,
                )));
            }
        }
    }
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err(corrupt("unexpected dictionary batches".into()));
    }
    let reader = FileReader::try_new(std::io::Cursor::new(bytes.as_slice()), None)
        .map_err(|e| corrupt(format!("not an Arrow IPC file ({e})")))?;
    if reader.schema().fields() != schema.fields() {
        return Err(corrupt(format!(
            "columns {:?} differ from the expected {:?}",
            field_names(&reader.schema()),
            field_names(schema)
        )));
    }
    let stored = reader
        .custom_metadata()
        .get(SCHEMA_CHECKSUM_KEY)
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| corrupt(format!("no readable '{SCHEMA_CHECKSUM_KEY}' in its footer")))?;
    let computed = schema_checksum(&reader.schema());
    if stored != computed {
        return Err(corrupt(checksum_mismatch(
            "schema metadata",
            stored,
            computed,
        )));
    }
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    Ok((batches, checksums.is_some()))
}

fn field_names(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

/// Reads a file with its current schema `current`, else with the schema
/// `older` of an earlier version (still read); the error is the one
/// against the current schema.
pub(crate) fn read_current_or_older<T>(
    current: &Schema,
    older: &Schema,
    read: impl Fn(&Schema) -> Result<T>,
) -> Result<T> {
    read(current).or_else(|e| read(older).map_err(|_| e))
}

/// Column `i` of `batch` as the array type `T`, or an error naming the file
/// and the column (the schema was checked, so this fails only on a bug or a
/// damaged file).
pub(crate) fn column<'b, T: Array + 'static>(
    batch: &'b RecordBatch,
    i: usize,
    path: &Path,
) -> Result<&'b T> {
    let name = batch
        .schema_ref()
        .fields()
        .get(i)
        .map(|f| f.name().clone())
        .unwrap_or_else(|| format!("#{i}"));
    batch
        .columns()
        .get(i)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            Error::corrupt(
                path,
                format!(
                    "column '{name}' is not of type {}",
                    std::any::type_name::<T>()
                ),
            )
        })
}

/// Checks an Arrow IPC file's leading magic and trailer and parses its
/// footer; returns the footer and where the trailer starts. Errors are the
/// reason the file is not a readable IPC file.
pub(crate) fn ipc_footer(buffer: &[u8]) -> std::result::Result<(Footer<'_>, usize), String> {
    if buffer.len() < 8 + 10 {
        return Err(format!(
            "{} bytes is too short for an Arrow IPC file",
            buffer.len()
        ));
    }
    if buffer[..6] != ARROW_MAGIC {
        return Err("does not start with the Arrow IPC magic 'ARROW1'".into());
    }
    let trailer_start = buffer.len() - 10;
    let mut trailer = [0u8; 10];
    trailer.copy_from_slice(&buffer[trailer_start..]);
    let footer_len =
        read_footer_length(trailer).map_err(|e| format!("no Arrow IPC file trailer ({e})"))?;
    if footer_len > trailer_start - 8 {
        return Err("footer length exceeds file size".into());
    }
    let footer = root_as_footer(&buffer[trailer_start - footer_len..trailer_start])
        .map_err(|e| format!("unreadable IPC footer ({e})"))?;
    Ok((footer, trailer_start))
}

/// The element width of each IPC buffer of a record batch of `schema`
/// (validity bitmaps and string data: 1), for the flat schemas of this crate.
fn buffer_widths(schema: &Schema) -> Option<Vec<usize>> {
    let mut widths = Vec::new();
    for field in schema.fields() {
        match field.data_type() {
            DataType::Utf8 | DataType::Binary => widths.extend([1, 4, 1]),
            dt if dt.is_primitive() => widths.extend([1, dt.primitive_width()?]),
            _ => return None,
        }
    }
    Some(widths)
}

/// Checks that an IPC record-batch block of a file of `schema` lies inside
/// `buffer[..end]` and that its message's nodes and buffers match the schema
/// and lie, aligned, inside its body; returns the block's byte range (start,
/// length). Arrow's decoder assumes all of this and panics on a damaged file
/// otherwise.
pub(crate) fn check_ipc_block(
    buffer: &[u8],
    block: &Block,
    end: usize,
    schema: &Schema,
) -> std::result::Result<(usize, usize), String> {
    let (offset, meta_len, body_len) = (block.offset(), block.metaDataLength(), block.bodyLength());
    let outside =
        || format!("block (offset {offset}, {meta_len} + {body_len} bytes) lies outside the file");
    if offset < 8 || meta_len < 8 || body_len < 0 {
        return Err(outside());
    }
    // The IPC format aligns messages and buffers to 8 bytes (this crate's
    // writer to 64); arrow's validation panics on misaligned offsets.
    if offset % 8 != 0 || meta_len % 8 != 0 {
        return Err(format!(
            "block (offset {offset}, metadata {meta_len} bytes) is not 8-byte aligned"
        ));
    }
    let (start, meta_len, body_len) = (offset as usize, meta_len as usize, body_len as u64);
    let len = usize::try_from(body_len)
        .ok()
        .and_then(|b| b.checked_add(meta_len))
        .filter(|&len| start.checked_add(len).is_some_and(|e| e <= end))
        .ok_or_else(outside)?;
    let data = &buffer[start..start + meta_len];
    // Encapsulated message: [0xFFFFFFFF] <int32 size> <flatbuffer Message>.
    let fb = if data[..4] == [0xff; 4] {
        &data[8..]
    } else {
        &data[4..]
    };
    let message = root_as_message(fb).map_err(|e| format!("unreadable message header ({e})"))?;
    let batch = message
        .header_as_record_batch()
        .ok_or_else(|| "message is not a record batch".to_string())?;
    if batch.length() < 0 {
        return Err(format!("negative row count {}", batch.length()));
    }
    let nodes = batch.nodes().map_or(0, |n| n.len());
    if nodes != schema.fields().len() {
        return Err(format!(
            "{nodes} field nodes for {} columns",
            schema.fields().len()
        ));
    }
    let widths = buffer_widths(schema).unwrap_or_default();
    let buffers = batch.buffers().map_or(0, |b| b.len());
    if !widths.is_empty() && buffers != widths.len() {
        return Err(format!(
            "{buffers} buffers, the schema needs {}",
            widths.len()
        ));
    }
    for node in batch.nodes().into_iter().flatten() {
        if node.length() < 0 || node.null_count() < 0 || node.null_count() > node.length() {
            return Err(format!(
                "invalid field node (length {}, null count {})",
                node.length(),
                node.null_count()
            ));
        }
    }
    for (i, b) in batch.buffers().into_iter().flatten().enumerate() {
        let width = widths.get(i).copied().unwrap_or(1) as i64;
        let inside = b.offset() >= 0
            && b.length() >= 0
            && (b.offset() as u64)
                .checked_add(b.length() as u64)
                .is_some_and(|e| e <= body_len);
        if !inside || b.offset() % 8 != 0 || b.length() % width != 0 {
            return Err(format!(
                "buffer {i} at {} + {} bytes is misaligned or lies outside the {body_len}-byte message body",
                b.offset(),
                b.length()
            ));
        }
    }
    Ok((start, len))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray, UInt32Array};
    use arrow::datatypes::Field;

    use super::*;

    fn sample() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::UInt32, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("v", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt32Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Float64Array::from(vec![0.5, -1.0, 2.0])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn parquet_round_trip_keeps_rows_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let b = sample();
        let meta = vec![("k".to_string(), "{\"x\":1}".to_string())];
        write_parquet_batch(&p, &b, &meta).unwrap();
        let t = read_parquet(&p, &b.schema(), "a sample table").unwrap();
        assert_eq!(t.batches.concat_rows(), 3);
        assert_eq!(t.batches[0], b);
        let v: serde_json::Value = t.json_meta(&p, "k", "a sample").unwrap();
        assert_eq!(v["x"], 1);
        let e = t.required_meta(&p, "missing", "a sample").unwrap_err();
        assert!(e.to_string().contains("'missing'"), "{e}");
    }

    trait Rows {
        fn concat_rows(&self) -> usize;
    }
    impl Rows for Vec<RecordBatch> {
        fn concat_rows(&self) -> usize {
            self.iter().map(|b| b.num_rows()).sum()
        }
    }

    #[test]
    fn wrong_schema_and_failed_fill_are_errors_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let b = sample();
        let r = write_parquet(&p, b.schema(), &[], |_| {
            Err(Error::invalid("test", "fails on purpose"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_parquet_batch(&p, &b, &[]).unwrap();
        let other = Schema::new(vec![Field::new("i", DataType::UInt32, false)]);
        let e = read_parquet(&p, &other, "a one-column table").unwrap_err();
        assert!(e.to_string().contains("a one-column table"), "{e}");
    }

    #[test]
    fn ipc_round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.arrow");
        let b = sample();
        write_ipc(&p, &b, false).unwrap();
        assert_eq!(read_ipc(&p, &b.schema()).unwrap(), vec![b.clone()]);
        let bytes = std::fs::read(&p).unwrap();
        // The footer lists the CRC32 of the batch's block.
        let (footer, _) = ipc_footer(&bytes).unwrap();
        let block = footer.recordBatches().unwrap().get(0);
        let (start, len) = (
            block.offset() as usize,
            block.metaDataLength() as usize + block.bodyLength() as usize,
        );
        let crc = crc32fast::hash(&bytes[start..start + len]);
        assert_eq!(footer_checksums(&footer, 1).unwrap(), Some(vec![crc]));
        // Every single flipped byte is an error or the same rows, never
        // different rows nor a panic.
        let (mut found, mut harmless) = (0, 0);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            std::fs::write(&p, &bad).unwrap();
            match read_ipc(&p, &b.schema()) {
                Ok(rows) => {
                    harmless += 1;
                    assert_eq!(rows, vec![b.clone()], "byte {i}: different rows");
                }
                Err(e) => {
                    found += 1;
                    assert!(e.to_string().contains("t.arrow"), "{e}");
                }
            }
        }
        // Every byte of the batch (values included) is found.
        assert!(found >= len, "{found} found, {harmless} harmless");
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_ipc(&p, &b.schema()).is_err());
    }

    #[test]
    fn ipc_files_without_checksums_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.arrow");
        let b = sample();
        let mut w = FileWriter::try_new(File::create(&p).unwrap(), &b.schema()).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let e = read_ipc_checked(&p, &b.schema()).unwrap_err();
        assert!(
            e.to_string().contains("no 'tch_landscape.crc32' checksums"),
            "{e}"
        );
        write_ipc(&p, &b, false).unwrap();
        assert!(read_ipc_checked(&p, &b.schema()).unwrap().1);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo.parquet");
        let ok = std::process::Command::new("mkfifo").arg(&p).status();
        if !ok.is_ok_and(|s| s.success()) {
            return; // no mkfifo on this system
        }
        let e = read_parquet(&p, &sample().schema(), "a table").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
