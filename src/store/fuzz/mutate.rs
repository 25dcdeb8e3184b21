//! The mutations: byte-level (bit flips, bytes set, truncation, duplicated
//! chunks, inserted bytes, interesting integers), JSON-aware (values
//! replaced, fields removed or duplicated) and file-level (a numbered file
//! removed or copied under another number).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Integers that make parsers of offsets and lengths go wrong.
const INTERESTING: [i64; 14] = [
    0,
    1,
    -1,
    7,
    8,
    64,
    -8,
    0x7f,
    0xffff,
    i32::MAX as i64,
    i32::MIN as i64,
    0x7fff_fff8,
    i64::MAX,
    i64::MIN,
];

/// One byte-level mutation of `data`, and its description.
fn mutate_bytes_once(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) -> String {
    let len = data.len();
    let pos = |rng: &mut ChaCha8Rng| {
        if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        }
    };
    if len == 0 {
        let n = rng.random_range(1..=64);
        data.extend((0..n).map(|_| rng.random::<u8>()));
        return format!("{n} random bytes into an empty file");
    }
    match rng.random_range(0..9u32) {
        0 => {
            let (i, bit) = (pos(rng), rng.random_range(0..8));
            data[i] ^= 1 << bit;
            format!("bit {bit} of byte {i} flipped")
        }
        1..=3 => {
            let i = pos(rng);
            let v = match rng.random_range(0..3u32) {
                0 => 0,
                1 => 0xff,
                _ => rng.random(),
            };
            data[i] = v;
            format!("byte {i} set to {v:#04x}")
        }
        4 => {
            let at = pos(rng);
            data.truncate(at);
            format!("truncated to {at} bytes")
        }
        5 => {
            let start = pos(rng);
            let n = rng.random_range(1..=(len - start).min(512));
            let chunk = data[start..start + n].to_vec();
            let at = rng.random_range(0..=len);
            data.splice(at..at, chunk);
            format!("{n} bytes from {start} duplicated at {at}")
        }
        6 => {
            let n = rng.random_range(1..=64);
            let at = rng.random_range(0..=len);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
            format!("{n} random bytes inserted at {at}")
        }
        7 if len >= 4 => {
            let i = rng.random_range(0..len / 4) * 4;
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())] as i32;
            data[i..i + 4].copy_from_slice(&v.to_le_bytes());
            format!("i32 at {i} set to {v}")
        }
        8 if len >= 8 => {
            let i = rng.random_range(0..len / 8) * 8;
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
            data[i..i + 8].copy_from_slice(&v.to_le_bytes());
            format!("i64 at {i} set to {v}")
        }
        _ => {
            let i = pos(rng);
            data[i] = data[i].wrapping_add(rng.random_range(1..=16));
            format!("byte {i} incremented")
        }
    }
}

/// A byte-level mutant: one mutation, or (one time in four) a stack of two
/// to six.
pub(super) fn mutate_bytes(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) -> String {
    let n = if rng.random_range(0..4u32) == 0 {
        rng.random_range(2..=6)
    } else {
        1
    };
    (0..n)
        .map(|_| mutate_bytes_once(rng, data))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Placeholder of a non-JSON token (`NaN`, `1e999`) in a value, replaced
/// in the serialized text.
const RAW: &str = "__fuzz_raw_token__";

/// A replacement for a JSON value: huge, negative, NaN-like, string, empty,
/// or a variation of `old`; a raw token to splice in the text when the
/// replacement is not JSON.
fn replacement(rng: &mut ChaCha8Rng, old: &Value) -> (Value, Option<&'static str>) {
    let v = match rng.random_range(0..30u32) {
        0 => Value::from(1e308),
        1 => Value::from(u64::MAX),
        2 => serde_json::from_str("9223372036854776121").unwrap_or(Value::Null), // 2^63 + 313
        3 => Value::from(1_000_000_000_000u64),
        4 => Value::from(4_000_000_000u64),
        5 => Value::from(u32::MAX),
        6 => Value::from(-1),
        7 => Value::from(-1e308),
        8 => Value::from(i64::MIN),
        9 => Value::from(0),
        10 => Value::from(0.5),
        11 => Value::from(5e-324),
        12 => Value::from("NaN"),
        13 => Value::from("inf"),
        14 => Value::from(""),
        15 => Value::from("x"),
        16 => Value::from("1"),
        17 => Value::from("a\u{0}b\n\u{1b}[31m\u{7f}\u{202e}"),
        18 => Value::from("é".repeat(20_000)),
        19 => Value::Null,
        20 => Value::Array(Vec::new()),
        21 => Value::Object(Default::default()),
        22 => Value::from(true),
        23 => Value::Array(vec![old.clone(), old.clone()]),
        24 => match old {
            Value::Number(n) => Value::from(-n.as_f64().unwrap_or(1.0)),
            _ => Value::from(-1),
        },
        25 => match old {
            Value::Number(n) => match n.as_u64() {
                Some(u) => Value::from(u.wrapping_add(1)),
                None => Value::from(n.as_f64().unwrap_or(0.0) * 1e300),
            },
            Value::String(s) => Value::from(format!("{s}x")),
            _ => Value::from(1),
        },
        26 => return (Value::from(RAW), Some("NaN")),
        27 => return (Value::from(RAW), Some("-Infinity")),
        28 => return (Value::from(RAW), Some("1e999")),
        _ => return (Value::from(RAW), Some("-0")),
    };
    (v, None)
}

/// The JSON pointers of every value inside `v` (not `v` itself).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        _ => {}
    }
}

/// A JSON-aware mutant of `data` (one to three edits of values, removed or
/// duplicated fields and elements), or `None` when `data` is not JSON.
pub(super) fn mutate_json(rng: &mut ChaCha8Rng, data: &[u8]) -> Option<(Vec<u8>, String)> {
    let mut doc: Value = serde_json::from_slice(data).ok()?;
    let mut what = Vec::new();
    let mut raw = None;
    for _ in 0..rng.random_range(1..=3) {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let p = all[rng.random_range(0..all.len())].clone();
        let (parent_ptr, key) = p.rsplit_once('/')?;
        let op = rng.random_range(0..10u32);
        let parent = doc.pointer_mut(parent_ptr)?;
        match (op, parent) {
            (0, Value::Object(m)) => {
                m.remove(key);
                what.push(format!("{p} removed"));
            }
            (0, Value::Array(a)) => {
                if let Ok(i) = key.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
                what.push(format!("{p} removed"));
            }
            (1, Value::Array(a)) => {
                if let Some(v) = key.parse::<usize>().ok().and_then(|i| a.get(i)).cloned() {
                    let n = rng.random_range(1..=3);
                    a.extend(std::iter::repeat_n(v, n));
                }
                what.push(format!("{p} duplicated"));
            }
            (1, Value::Object(m)) => {
                m.insert("fuzz_unknown_field".into(), Value::from(1));
                what.push(format!("unknown field beside {p}"));
            }
            (_, parent) => {
                let old = match parent {
                    Value::Object(m) => m.get(key).cloned(),
                    Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)).cloned(),
                    _ => None,
                }
                .unwrap_or(Value::Null);
                let (new, token) = replacement(rng, &old);
                if let Some(t) = token {
                    if raw.is_some() {
                        continue; // one raw token per mutant
                    }
                    raw = Some(t);
                }
                let shown = token.map_or_else(|| short(&new), str::to_string);
                *doc.pointer_mut(&p)? = new;
                what.push(format!("{p} = {shown}"));
            }
        }
    }
    let mut text = if rng.random_bool(0.5) {
        serde_json::to_string_pretty(&doc).ok()?
    } else {
        serde_json::to_string(&doc).ok()?
    };
    if let Some(t) = raw {
        text = text.replacen(&format!("\"{RAW}\""), t, 1);
    }
    Some((text.into_bytes(), what.join("; ")))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(40).collect::<String>(),
            s.len()
        )
    } else {
        s
    }
}

/// What one mutant does to the seed directory.
pub(super) enum Change {
    /// `rel` gets these bytes.
    Write(String, Vec<u8>),
    /// `rel` is removed.
    Remove(String),
    /// `from` is copied to the new file `to`.
    Copy(String, String),
}

/// Draws the mutation of iteration `iter`: the seed, the file, the change.
pub(super) fn draw(
    rng: &mut ChaCha8Rng,
    files: &[(String, u32)],
    read: impl Fn(&str) -> Vec<u8>,
) -> (Change, String) {
    let total: u32 = files.iter().map(|f| f.1).sum();
    let mut pick = rng.random_range(0..total);
    let (rel, _) = files
        .iter()
        .find(|f| {
            if pick < f.1 {
                true
            } else {
                pick -= f.1;
                false
            }
        })
        .unwrap_or(&files[0]);
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let numbered = file.len() == 12
        && file.ends_with(".arrow")
        && file.as_bytes()[..6].iter().all(u8::is_ascii_digit);
    let op = rng.random_range(0..100u32);
    if numbered && op < 3 {
        return (Change::Remove(rel.clone()), format!("{rel}: removed"));
    }
    if numbered && op < 6 {
        let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
        let to = format!("{dir}/{:06}.arrow", rng.random_range(0..12u32));
        if files.iter().all(|f| f.0 != to) {
            return (
                Change::Copy(rel.clone(), to.clone()),
                format!("{rel}: copied to {to}"),
            );
        }
    }
    let mut data = read(rel);
    if file.ends_with(".json") && op < 70 {
        if let Some((bytes, what)) = mutate_json(rng, &data) {
            return (Change::Write(rel.clone(), bytes), format!("{rel}: {what}"));
        }
    }
    if op >= 98 {
        return (
            Change::Write(rel.clone(), Vec::new()),
            format!("{rel}: emptied"),
        );
    }
    let what = mutate_bytes(rng, &mut data);
    (Change::Write(rel.clone(), data), format!("{rel}: {what}"))
}
