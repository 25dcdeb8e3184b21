//! The safetensors header, read bounded and validated before anything is
//! decoded: names, dtypes, shapes and offsets covering the file exactly.

use super::*;

/// The element types of safetensors that tch represents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dtype {
    F64,
    F32,
    F16,
    Bf16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    pub(super) fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "F64" => Dtype::F64,
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::Bf16,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            "I16" => Dtype::I16,
            "I8" => Dtype::I8,
            "U8" => Dtype::U8,
            "BOOL" => Dtype::Bool,
            _ => return None,
        })
    }

    pub(super) fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::Bf16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    pub(super) fn kind(self) -> Kind {
        match self {
            Dtype::F64 => Kind::Double,
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::Bf16 => Kind::BFloat16,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::I16 => Kind::Int16,
            Dtype::I8 => Kind::Int8,
            Dtype::U8 => Kind::Uint8,
            Dtype::Bool => Kind::Bool,
        }
    }

    pub(super) fn is_float(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::Bf16)
    }

    /// The name used in manifests and messages.
    pub(super) fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::Bf16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
        }
    }
}

/// One tensor of a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) dtype: Dtype,
    pub(super) shape: Vec<i64>,
    /// Byte range inside the data section.
    begin: u64,
    end: u64,
}

/// The checked header of a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    /// Length of the file.
    file_len: u64,
    /// Length of the JSON header (after the 8-byte length).
    header_len: u64,
    /// The tensors in data order (contiguous, covering the data section).
    entries: Vec<Entry>,
}

impl Layout {
    pub(super) fn by_name(&self) -> HashMap<&str, &Entry> {
        self.entries.iter().map(|e| (e.name.as_str(), e)).collect()
    }
}

/// The header's JSON object as its entries, in order, duplicates kept (a
/// map would keep only the last of two equal names).
pub(super) struct RawHeader(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawHeader, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    if v.len() > MAX_TENSORS {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_TENSORS} tensors"
                        )));
                    }
                    v.push(entry);
                }
                Ok(RawHeader(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
pub(super) struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// What a file that is not safetensors is, when it is recognisable: the
/// zip archive of `torch.save`, or its legacy pickle (protocol 2, then the
/// 10-byte magic number as a long).
pub(super) fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"PK\x03\x04") {
        Some("a zip archive, as torch.save writes (PyTorch's .pt/.pth/.t7)")
    } else if head.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) {
        Some("a Python pickle, as torch.save writes with _use_new_zipfile_serialization=False")
    } else {
        None
    }
}

/// Opens `path` (a regular file) and reads and checks its header.
pub(super) fn open_checked(path: &Path) -> Result<(BufReader<File>, Layout)> {
    let file = open_regular(path)?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io("inspecting", path, e))?
        .len();
    let mut r = BufReader::with_capacity(SCAN_BYTES, file);
    let mut head = [0u8; 8];
    if file_len < 8 {
        return Err(bad(
            path,
            format!(
                "not a safetensors file: {file_len} bytes, too short for its 8-byte header length"
            ),
        ));
    }
    r.read_exact(&mut head)
        .map_err(|e| Error::io("reading", path, e))?;
    let header_len = u64::from_le_bytes(head);
    let room = file_len - 8;
    if header_len < 2 || header_len > room || header_len > MAX_HEADER_BYTES {
        if let Some(what) = sniff(&head) {
            return Err(bad(
                path,
                format!(
                    "not a safetensors file but {what}, which libtorch cannot read outside Python; convert it to safetensors first (the Python in `landscape import --help`, or tch_landscape::import::CONVERT_PYTHON)"
                ),
            ));
        }
        return Err(bad(
            path,
            format!(
                "not a safetensors file: its first 8 bytes give a header of {header_len} bytes, the file has {room} after them (and a header has at most {MAX_HEADER_BYTES})"
            ),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header)
        .map_err(|e| Error::io("reading", path, e))?;
    if header.first() != Some(&b'{') {
        return Err(bad(
            path,
            "not a safetensors file: its header is not a JSON object",
        ));
    }
    let raw: RawHeader = serde_json::from_slice(&header).map_err(|e| {
        bad(
            path,
            format!("not a safetensors file: unreadable JSON header ({e})"),
        )
    })?;
    let layout = parse_header(path, raw, file_len, header_len)?;
    Ok((r, layout))
}

/// Checks the header's entries: names, dtypes, shapes, and offsets that
/// cover the data section exactly.
pub(super) fn parse_header(
    path: &Path,
    raw: RawHeader,
    file_len: u64,
    header_len: u64,
) -> Result<Layout> {
    let mut seen = HashSet::new();
    let mut entries = Vec::with_capacity(raw.0.len());
    for (name, value) in raw.0 {
        if !seen.insert(name.clone()) {
            return Err(bad(
                path,
                format!("tensor '{name}' appears twice in the header"),
            ));
        }
        if name == "__metadata__" {
            continue;
        }
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(bad(
                path,
                format!(
                    "a tensor name has {} bytes; from 1 to {MAX_NAME_BYTES}",
                    name.len()
                ),
            ));
        }
        let e: RawEntry = serde_json::from_value(value).map_err(|e| {
            bad(
                path,
                format!("tensor '{name}': unreadable header entry ({e})"),
            )
        })?;
        let dtype = Dtype::parse(&e.dtype).ok_or_else(|| {
            bad(
                path,
                format!(
                    "tensor '{name}' has dtype {}; supported: F64, F32, F16, BF16 (recorded), I64, I32, I16, I8, U8, BOOL (kept, not recorded)",
                    e.dtype
                ),
            )
        })?;
        if e.shape.len() > MAX_DIMS {
            return Err(bad(
                path,
                format!(
                    "tensor '{name}' has {} dimensions; at most {MAX_DIMS}",
                    e.shape.len()
                ),
            ));
        }
        let numel = e
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= MAX_NUMEL)
            .ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "tensor '{name}' has shape {:?}: more than {MAX_NUMEL} elements",
                        e.shape
                    ),
                )
            })?;
        let (begin, end) = e.data_offsets;
        if end < begin || end - begin != numel * dtype.size() {
            return Err(bad(
                path,
                format!(
                    "tensor '{name}' ({} {:?}) needs {} bytes, its data offsets [{begin}, {end}] give {}",
                    dtype.name(),
                    e.shape,
                    numel * dtype.size(),
                    end.saturating_sub(begin)
                ),
            ));
        }
        entries.push(Entry {
            name,
            dtype,
            shape: e.shape.iter().map(|&d| d as i64).collect(), // ≤ MAX_NUMEL each
            begin,
            end,
        });
    }
    if entries.is_empty() {
        return Err(bad(path, "holds no tensors"));
    }
    entries.sort_by_key(|e| (e.begin, e.end));
    let data_len = file_len - 8 - header_len;
    let mut at = 0u64;
    for e in &entries {
        if e.begin != at {
            return Err(bad(
                path,
                format!(
                    "tensor '{}' starts at byte {} of the data, expected {at} (tensors must follow each other without gap or overlap)",
                    e.name, e.begin
                ),
            ));
        }
        at = e.end;
    }
    if at != data_len {
        return Err(bad(
            path,
            format!("its tensors end at byte {at} of the data, the file has {data_len} data bytes (truncated or padded)"),
        ));
    }
    Ok(Layout {
        file_len,
        header_len,
        entries,
    })
}

/// Reads and checks the header of `path`.
pub(super) fn read_layout(path: &Path) -> Result<Layout> {
    open_checked(path).map(|(_, layout)| layout)
}

/// Checks that `layout` (of `path`) has the tensors of `first` (of
/// `first_path`): same names, shapes and dtypes.
pub(super) fn same_tensors(
    first_path: &Path,
    first: &Layout,
    path: &Path,
    layout: &Layout,
) -> Result<()> {
    let mine = layout.by_name();
    let theirs = first.by_name();
    let mut expected: Vec<&Entry> = first.entries.iter().collect();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    for e in expected {
        let Some(m) = mine.get(e.name.as_str()) else {
            return Err(bad(
                path,
                format!(
                    "tensor '{}' ({} {:?}) is missing; the first checkpoint {} has it, and every checkpoint must hold the same tensors",
                    e.name,
                    e.dtype.name(),
                    e.shape,
                    first_path.display()
                ),
            ));
        };
        if m.shape != e.shape {
            return Err(bad(
                path,
                format!(
                    "tensor '{}' has shape {:?}, expected {:?} as in the first checkpoint {}",
                    e.name,
                    m.shape,
                    e.shape,
                    first_path.display()
                ),
            ));
        }
        if m.dtype != e.dtype {
            return Err(bad(
                path,
                format!(
                    "tensor '{}' has dtype {}, expected {} as in the first checkpoint {}",
                    e.name,
                    m.dtype.name(),
                    e.dtype.name(),
                    first_path.display()
                ),
            ));
        }
    }
    let mut extra: Vec<&str> = layout
        .entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| !theirs.contains_key(n))
        .collect();
    extra.sort();
    if let Some(n) = extra.first() {
        return Err(bad(
            path,
            format!(
                "tensor '{n}' is not in the first checkpoint {}; every checkpoint must hold the same tensors",
                first_path.display()
            ),
        ));
    }
    Ok(())
}

/// Non-finite values found in one tensor.
#[derive(Debug, Default)]
pub(super) struct NonFiniteCount {
    pub(super) count: u64,
    pub(super) first: Option<(u64, f64)>,
}

/// Counts the non-finite values of `bytes` (little-endian values of
/// `dtype`, the first being element `start` of its tensor).
pub(super) fn scan(dtype: Dtype, bytes: &[u8], start: u64, acc: &mut NonFiniteCount) {
    let mut note = |i: usize, value: f64| {
        acc.count += 1;
        if acc.first.is_none() {
            acc.first = Some((start + i as u64, value));
        }
    };
    match dtype {
        Dtype::F32 => {
            for (i, c) in bytes.chunks_exact(4).enumerate() {
                let b = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if b & 0x7f80_0000 == 0x7f80_0000 {
                    note(i, f64::from(f32::from_bits(b)));
                }
            }
        }
        Dtype::F64 => {
            for (i, c) in bytes.chunks_exact(8).enumerate() {
                let b = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                if b & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000 {
                    note(i, f64::from_bits(b));
                }
            }
        }
        Dtype::F16 => {
            for (i, c) in bytes.chunks_exact(2).enumerate() {
                let b = u16::from_le_bytes([c[0], c[1]]);
                if b & 0x7c00 == 0x7c00 {
                    let v = if b & 0x03ff != 0 {
                        f64::NAN
                    } else if b & 0x8000 != 0 {
                        f64::NEG_INFINITY
                    } else {
                        f64::INFINITY
                    };
                    note(i, v);
                }
            }
        }
        Dtype::Bf16 => {
            for (i, c) in bytes.chunks_exact(2).enumerate() {
                let b = u16::from_le_bytes([c[0], c[1]]);
                if b & 0x7f80 == 0x7f80 {
                    note(i, f64::from(f32::from_bits(u32::from(b) << 16)));
                }
            }
        }
        _ => {}
    }
}

/// The error for non-finite values in a tensor of a checkpoint.
pub(super) fn non_finite(path: &Path, name: &str, nf: &NonFiniteCount) -> Option<Error> {
    let (index, value) = nf.first?;
    let s = if nf.count == 1 { "" } else { "s" };
    Some(bad(
        path,
        format!(
            "tensor '{name}' holds {} non-finite value{s}, the first ({value}) at element {index}; the analyses need finite values (training may have diverged by this checkpoint: import the checkpoints before it)",
            nf.count
        ),
    ))
}

/// Reads every value of `path` (whose header is `layout`), checking that
/// they are finite, in bounded memory. Returns the bytes read.
pub(super) fn scan_file(path: &Path, layout: &Layout) -> Result<u64> {
    let (mut r, now) = open_checked(path)?;
    unchanged(path, layout, &now)?;
    let mut buf = vec![0u8; SCAN_BYTES];
    for e in &layout.entries {
        let size = e.dtype.size();
        let mut left = e.end - e.begin;
        let mut index = 0u64;
        let mut nf = NonFiniteCount::default();
        while left > 0 {
            let n = left.min(SCAN_BYTES as u64) as usize; // a multiple of `size`
            r.read_exact(&mut buf[..n])
                .map_err(|e| Error::io("reading", path, e))?;
            scan(e.dtype, &buf[..n], index, &mut nf);
            index += n as u64 / size;
            left -= n as u64;
        }
        if let Some(err) = non_finite(path, &e.name, &nf) {
            return Err(err);
        }
    }
    Ok(layout.file_len)
}

/// An error when `path`'s header changed since it was checked.
pub(super) fn unchanged(path: &Path, checked: &Layout, now: &Layout) -> Result<()> {
    if checked != now {
        return Err(bad(path, "changed while it was being imported"));
    }
    Ok(())
}

/// Reads every tensor of `path` (whose checked header is `layout`) whole,
/// checks its values again and hands it to `each`. Returns the bytes read.
pub(super) fn read_values(
    path: &Path,
    layout: &Layout,
    mut each: impl FnMut(&Entry, &[u8]) -> Result<()>,
) -> Result<u64> {
    let (mut r, now) = open_checked(path)?;
    unchanged(path, layout, &now)?;
    let mut buf = Vec::new();
    for e in &layout.entries {
        let n = usize::try_from(e.end - e.begin).map_err(|_| {
            bad(
                path,
                format!("tensor '{}' is too large for this machine", e.name),
            )
        })?;
        buf.clear();
        buf.try_reserve_exact(n).map_err(|_| {
            bad(
                path,
                format!("tensor '{}' ({n} bytes) does not fit in memory", e.name),
            )
        })?;
        buf.resize(n, 0);
        r.read_exact(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        let mut nf = NonFiniteCount::default();
        scan(e.dtype, &buf, 0, &mut nf);
        if let Some(err) = non_finite(path, &e.name, &nf) {
            return Err(err);
        }
        each(e, &buf)?;
    }
    Ok(layout.file_len)
}

/// Rewrites snapshot 0 of the run in `dir` with epoch `epoch` (same values,
/// atomically): the recorder stamps θ₀ as epoch 0.
pub(super) fn restamp_first_snapshot(
    dir: &Path,
    manifest: &Manifest,
    epoch: u64,
    fsync: bool,
) -> Result<()> {
    let path = dir.join(SNAPSHOT_DIR).join(snapshot_file_name(0));
    let (mut meta, values) = {
        let snap = SnapshotFile::open(&path, manifest)?;
        let mut values = Vec::with_capacity(snap.tensor_count());
        for i in 0..snap.tensor_count() {
            snap.verify_tensor(i)?;
            let v = match snap.values(i) {
                Some(StoredValues::F32(v)) => Some(HostValues::F32(v.to_vec())),
                Some(StoredValues::F64(v)) => Some(HostValues::F64(v.to_vec())),
                Some(v) => Some(HostValues::Borrowed(v.to_tensor())),
                None => None,
            };
            values.push(v.ok_or_else(|| {
                Error::corrupt(&path, format!("tensor {i} has not the run's storage dtype"))
            })?);
        }
        (snap.meta().clone(), values)
    };
    meta.epoch = epoch;
    write_snapshot(&path, manifest.storage_dtype, &meta, values, fsync)?;
    Ok(())
}
