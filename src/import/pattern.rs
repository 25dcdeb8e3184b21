//! Epochs from file names: a pattern with one `{}` (the epoch's digits) and
//! `*` (any text).

use super::*;

/// A file-name pattern with one `{}` (the epoch's digits) and `*` (any text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EpochPattern {
    pub(super) text: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Literal(Vec<u8>),
    Any,
    Digits,
}

impl EpochPattern {
    pub(super) fn parse(text: &str) -> Result<EpochPattern> {
        let invalid =
            |reason: String| Error::invalid("epoch pattern", format!("'{text}' {reason}"));
        if text.contains('/') {
            return Err(invalid(
                "contains '/'; it matches file names, not paths".into(),
            ));
        }
        let holes = text.matches("{}").count();
        if holes != 1 {
            return Err(invalid(format!(
                "has {holes} '{{}}'; it needs exactly one where the epoch's digits are, e.g. 'model_{{}}.safetensors'"
            )));
        }
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let piece = match bytes[i] {
                b'*' => Some((Piece::Any, 1)),
                b'{' if bytes.get(i + 1) == Some(&b'}') => Some((Piece::Digits, 2)),
                _ => None,
            };
            match piece {
                Some((p, len)) => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(p);
                    i += len;
                }
                None => {
                    lit.push(bytes[i]);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(EpochPattern {
            text: text.to_string(),
            pieces,
        })
    }

    /// The epoch in `path`'s file name.
    pub(super) fn epoch_of(&self, path: &Path) -> Result<u64> {
        let name = path.file_name().unwrap_or_else(|| OsStr::new(""));
        let digits = matches(&self.pieces, name.as_encoded_bytes()).ok_or_else(|| {
            bad(
                path,
                format!(
                    "its file name does not match the epoch pattern '{}'",
                    self.text
                ),
            )
        })?;
        digits
            .iter()
            .try_fold(0u64, |acc, d| {
                acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "its epoch {} does not fit 64 bits",
                        String::from_utf8_lossy(digits)
                    ),
                )
            })
    }
}

/// Matches `name` against `pieces`; returns the digits of the `{}` piece.
/// `*` takes the shortest text that lets the rest match, `{}` the longest
/// run of digits. States that failed are remembered, so the work is at most
/// pieces × length² whatever the name.
pub(super) fn matches<'a>(pieces: &[Piece], name: &'a [u8]) -> Option<&'a [u8]> {
    /// Whether `pieces[i..]` match `name[at..]`, with the digits' range when
    /// the `{}` piece is among them.
    pub(super) fn go(
        pieces: &[Piece],
        name: &[u8],
        i: usize,
        at: usize,
        failed: &mut HashSet<(usize, usize)>,
    ) -> Option<Option<(usize, usize)>> {
        if failed.contains(&(i, at)) {
            return None;
        }
        let found = match pieces.get(i) {
            None => (at == name.len()).then_some(None),
            Some(Piece::Literal(l)) => {
                if name[at..].starts_with(l) {
                    go(pieces, name, i + 1, at + l.len(), failed)
                } else {
                    None
                }
            }
            Some(Piece::Any) => (at..=name.len()).find_map(|k| go(pieces, name, i + 1, k, failed)),
            Some(Piece::Digits) => {
                let run = name[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                (1..=run).rev().find_map(|k| {
                    go(pieces, name, i + 1, at + k, failed).map(|_| Some((at, at + k)))
                })
            }
        };
        if found.is_none() {
            failed.insert((i, at));
        }
        found
    }
    let mut failed = HashSet::new();
    let (a, b) = go(pieces, name, 0, 0, &mut failed)??;
    Some(&name[a..b])
}
