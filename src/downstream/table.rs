//! Minimal TSV tables with a header line, for the inputs of `enrich` and `enhancer`: columns by name, numeric
//! parsing with errors naming the file, line and column.

use crate::downstream::genome::read_text;
use crate::error::{MfdError, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub header: Vec<String>,
    /// Rows and their 1-based line numbers.
    pub rows: Vec<(u64, Vec<String>)>,
}

impl Table {
    /// Read a TSV (gzip allowed); lines starting with `##` are skipped, a leading `#` on the header is dropped.
    pub fn read(path: &Path) -> Result<Table> {
        let text = read_text(path)?;
        let mut header: Option<Vec<String>> = None;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with("##") {
                continue;
            }
            let cols: Vec<String> = line.split('\t').map(str::to_string).collect();
            match &header {
                None => header = Some(cols.into_iter().map(|c| c.trim_start_matches('#').to_string()).collect()),
                Some(h) => {
                    if cols.len() != h.len() {
                        return Err(MfdError::input(
                            path,
                            Some(i as u64 + 1),
                            None,
                            format!("{} columns, the header has {}", cols.len(), h.len()),
                        ));
                    }
                    rows.push((i as u64 + 1, cols));
                }
            }
        }
        let header = header.ok_or_else(|| MfdError::input(path, None, None, "empty table (no header)"))?;
        Ok(Table { path: path.to_path_buf(), header, rows })
    }

    /// Index of column `name`.
    pub fn col(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| MfdError::input(&self.path, Some(1), Some(name), "no such column in the header"))
    }

    /// Column `k` parsed as f64 (`NA`, `nan` and empty parse to NaN).
    pub fn f64_col(&self, k: usize) -> Result<Vec<f64>> {
        self.rows
            .iter()
            .map(|(ln, r)| {
                let s = r[k].trim();
                if s.is_empty() || s.eq_ignore_ascii_case("na") || s.eq_ignore_ascii_case("nan") {
                    return Ok(f64::NAN);
                }
                s.parse().map_err(|_| {
                    MfdError::input(
                        &self.path,
                        Some(*ln),
                        Some(&self.header[k]),
                        format!("not a number: '{}'", crate::error::short(s)),
                    )
                })
            })
            .collect()
    }
}

/// numpy's default (linear) quantile of sorted finite values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_columns_and_quantiles() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.tsv");
        std::fs::write(&p, "##meta\n#a\tb\n1\tx\nNA\ty\n").unwrap();
        let t = Table::read(&p).unwrap();
        assert_eq!(t.header, vec!["a", "b"]);
        let a = t.f64_col(t.col("a").unwrap()).unwrap();
        assert_eq!(a[0], 1.0);
        assert!(a[1].is_nan());
        let e = t.f64_col(1).unwrap_err().to_string();
        assert!(e.contains(":3") && e.contains("b"), "{e}");
        assert!(t.col("zz").is_err());
        // A long offending cell (and column name) is clipped: the line still says what was expected.
        let long = "x".repeat(100_000);
        std::fs::write(&p, format!("a\t{long}\n{long}\t1\n")).unwrap();
        let t = Table::read(&p).unwrap();
        let e = t.f64_col(0).unwrap_err().to_string();
        assert!(e.len() < 300 && e.contains("not a number") && e.contains(":2"), "{e}");
        let e = t.f64_col(t.col(&long).unwrap()).map(|_| ()).map_err(|e| e.to_string());
        assert!(e.is_ok(), "{e:?}");
        std::fs::write(&p, "a\tb\n1\n").unwrap();
        assert!(Table::read(&p).unwrap_err().to_string().contains(":2"));
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.5), 2.5);
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 4.0);
        assert!((quantile_sorted(&s, 0.9) - 3.7).abs() < 1e-12);
    }
}
