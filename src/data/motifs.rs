//! JASPAR position frequency matrices. The repository ships a few dozen JASPAR 2024 CORE vertebrate matrices
//! (`src/data/motifs/jaspar2024_core_vertebrates.txt`, provenance in its header and tests/data/PROVENANCE.md);
//! the synthetic generator plants them, and tests and downstream analyses scan with them.

use crate::error::{MfdError, Result};
use std::path::Path;

const BUILTIN_JASPAR: &str = include_str!("motifs/jaspar2024_core_vertebrates.txt");

/// One motif: counts per position, columns in A, C, G, T order.
#[derive(Debug, Clone, PartialEq)]
pub struct Motif {
    /// JASPAR matrix id with version, e.g. "MA0139.2".
    pub id: String,
    /// Transcription factor name, e.g. "CTCF".
    pub name: String,
    /// (len, 4) counts, A C G T.
    pub counts: Vec<[f64; 4]>,
}

impl Motif {
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// (len, 4) probabilities with a pseudocount of `pseudo` per base.
    pub fn probabilities(&self, pseudo: f64) -> Vec<[f64; 4]> {
        self.counts
            .iter()
            .map(|c| {
                let total: f64 = c.iter().sum::<f64>() + 4.0 * pseudo;
                [(c[0] + pseudo) / total, (c[1] + pseudo) / total, (c[2] + pseudo) / total, (c[3] + pseudo) / total]
            })
            .collect()
    }

    /// Information content (bits) per position against a uniform background.
    pub fn information(&self) -> Vec<f64> {
        self.probabilities(0.01)
            .iter()
            .map(|p| 2.0 + p.iter().map(|&q| if q > 0.0 { q * q.log2() } else { 0.0 }).sum::<f64>())
            .collect()
    }

    /// (len, 4) log-odds against `background` (A, C, G, T), pseudocount 0.8 split by background.
    pub fn log_odds(&self, background: [f64; 4]) -> Vec<[f64; 4]> {
        self.counts
            .iter()
            .map(|c| {
                let total: f64 = c.iter().sum::<f64>() + 0.8;
                let mut out = [0.0; 4];
                for b in 0..4 {
                    out[b] = ((c[b] + 0.8 * background[b]) / total / background[b]).ln();
                }
                out
            })
            .collect()
    }
}

/// Parse JASPAR text format: `>ID NAME` then rows `A [ n n ... ]`, `C [...]`, `G [...]`, `T [...]`.
/// `#` lines and blank lines are skipped. `source` is used in error messages.
pub fn parse_jaspar(text: &str, source: &Path) -> Result<Vec<Motif>> {
    let mut motifs: Vec<Motif> = Vec::new();
    let mut rows: Vec<(u64, Vec<f64>)> = Vec::new();
    let mut header: Option<(u64, String, String)> = None;

    fn finish(
        header: &Option<(u64, String, String)>,
        rows: &mut Vec<(u64, Vec<f64>)>,
        motifs: &mut Vec<Motif>,
        source: &Path,
    ) -> Result<()> {
        let Some((line, id, name)) = header else { return Ok(()) };
        if rows.len() != 4 {
            return Err(MfdError::input(
                source,
                Some(*line),
                Some("matrix"),
                format!("motif {id} has {} rows, expected 4 (A, C, G, T)", rows.len()),
            ));
        }
        let len = rows[0].1.len();
        if len == 0 || rows.iter().any(|(_, r)| r.len() != len) {
            return Err(MfdError::input(
                source,
                Some(rows[0].0),
                Some("matrix"),
                format!("motif {id}: rows differ in length or are empty"),
            ));
        }
        let counts = (0..len).map(|j| [rows[0].1[j], rows[1].1[j], rows[2].1[j], rows[3].1[j]]).collect();
        motifs.push(Motif { id: id.clone(), name: name.clone(), counts });
        rows.clear();
        Ok(())
    }

    for (i, raw) in text.lines().enumerate() {
        let lineno = i as u64 + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('>') {
            finish(&header, &mut rows, &mut motifs, source)?;
            let mut parts = rest.split_whitespace();
            let id =
                parts.next().ok_or_else(|| MfdError::input(source, Some(lineno), Some("id"), "empty motif header"))?;
            let name = parts.collect::<Vec<_>>().join(" ");
            header = Some((lineno, id.to_string(), if name.is_empty() { id.to_string() } else { name }));
            continue;
        }
        if header.is_none() {
            return Err(MfdError::input(source, Some(lineno), None, "matrix row before any '>' header"));
        }
        let expect = ['A', 'C', 'G', 'T'][rows.len().min(3)];
        let base = line.chars().next().unwrap_or(' '); // non-empty: blank lines were skipped
        if rows.len() >= 4 || base != expect {
            return Err(MfdError::input(
                source,
                Some(lineno),
                Some("row"),
                format!("expected row '{expect}', found '{base}'"),
            ));
        }
        let body = line[1..].trim().trim_start_matches('[').trim_end_matches(']');
        let vals = body
            .split_whitespace()
            .map(|t| t.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0))
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| {
                MfdError::input(source, Some(lineno), Some("count"), "counts must be non-negative numbers")
            })?;
        rows.push((lineno, vals));
    }
    finish(&header, &mut rows, &mut motifs, source)?;
    Ok(motifs)
}

/// The motifs shipped with mfd.
pub fn builtin() -> Vec<Motif> {
    parse_jaspar(BUILTIN_JASPAR, Path::new("src/data/motifs/jaspar2024_core_vertebrates.txt"))
        .expect("built-in JASPAR file parses (checked by a test)")
}

/// Built-in motif by TF name (case-insensitive).
pub fn builtin_by_name(name: &str) -> Option<Motif> {
    builtin().into_iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses() {
        let m = builtin();
        assert_eq!(m.len(), 36);
        let ctcf = builtin_by_name("CTCF").unwrap();
        assert!(ctcf.id.starts_with("MA0139"));
        assert!(ctcf.len() >= 15);
        let ic: f64 = ctcf.information().iter().sum();
        assert!(ic > 10.0, "{ic}");
    }

    #[test]
    fn bad_rows_are_errors() {
        let e = parse_jaspar(">X x\nA [1 2]\nC [1 2]\nG [1]\nT [1 2]\n", Path::new("m.txt")).unwrap_err();
        assert!(e.to_string().contains("m.txt"));
        let e = parse_jaspar(">X x\nA [1 2]\nC [1 z]\n", Path::new("m.txt")).unwrap_err();
        assert!(e.to_string().contains("m.txt:3"), "{e}");
    }
}
