//! The experiment metadata table of `mfd prepare`: a TSV with a header row whose first column is the experiment
//! id. Key decision: rows are kept as their original text (only reordered into class order and filtered to the
//! experiments of `peaks.tsv`), so `DATASET/metadata.tsv` is the user's table, not a re-serialisation; the
//! encoding of metadata columns for the hypernetworks happens later, from this file.

use crate::error::{MfdError, Result};
use std::collections::HashMap;
use std::path::Path;

/// The metadata rows of the dataset's classes, in class order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataTable {
    /// Header line (without line terminator).
    pub header: String,
    /// One line per class, in class order (without line terminator).
    pub rows: Vec<String>,
    /// Rows of the input that belong to no experiment of `peaks.tsv` (dropped, with a warning).
    pub dropped: usize,
}

impl MetadataTable {
    /// The table as TSV text: header, then rows, each ending in `\n`.
    pub fn to_tsv(&self) -> String {
        let mut s = String::with_capacity(self.header.len() + 1 + self.rows.iter().map(|r| r.len() + 1).sum::<usize>());
        s.push_str(&self.header);
        s.push('\n');
        for r in &self.rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }
}

/// Read `path` and select one row per experiment. `experiments` are (id, line in `peaks_table`) in class order.
/// Errors: no header; a row whose field count differs from the header's; an empty or duplicate id (both lines
/// named); an experiment without a row (named with its `peaks_table` line).
pub fn read_metadata(path: &Path, experiments: &[(String, u64)], peaks_table: &Path) -> Result<MetadataTable> {
    let text = crate::data::read_text_input(path)?;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i as u64 + 1, l.trim_end_matches('\r')));
    let header = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l,
            None => return Err(MfdError::input(path, None, None, "empty: expected a header row")),
        }
    };
    let columns: Vec<&str> = header.split('\t').collect();
    let id_field = columns[0];
    let mut by_id: HashMap<&str, (u64, &str)> = HashMap::new();
    for (ln, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != columns.len() {
            return Err(MfdError::input(
                path,
                Some(ln),
                None,
                format!("{} tab-separated fields, the header has {}", fields.len(), columns.len()),
            ));
        }
        let id = fields[0];
        if id.is_empty() {
            return Err(MfdError::input(path, Some(ln), Some(id_field), "empty experiment id"));
        }
        if let Some((first, _)) = by_id.get(id) {
            return Err(MfdError::input(
                path,
                Some(ln),
                Some(id_field),
                format!("duplicate experiment id '{}' (first at line {first})", crate::error::short(id)),
            ));
        }
        by_id.insert(id, (ln, line));
    }
    let mut rows = Vec::with_capacity(experiments.len());
    for (id, peaks_line) in experiments {
        let (_, line) = by_id.get(id.as_str()).ok_or_else(|| {
            MfdError::input(
                peaks_table,
                Some(*peaks_line),
                Some("experiment"),
                format!(
                    "experiment '{}' has no row in {} (first column '{}')",
                    crate::error::short(id),
                    path.display(),
                    crate::error::short(id_field)
                ),
            )
        })?;
        rows.push(line.to_string());
    }
    Ok(MetadataTable { header: header.to_string(), rows, dropped: by_id.len() - experiments.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exps(ids: &[&str]) -> Vec<(String, u64)> {
        ids.iter().enumerate().map(|(i, s)| (s.to_string(), i as u64 + 2)).collect()
    }

    #[test]
    fn selects_in_class_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.tsv");
        std::fs::write(&p, "id\tassay\nB\tx y\nA\tz\nC\tw\n").unwrap();
        let m = read_metadata(&p, &exps(&["A", "B"]), Path::new("peaks.tsv")).unwrap();
        assert_eq!(m.to_tsv(), "id\tassay\nA\tz\nB\tx y\n");
        assert_eq!(m.dropped, 1);
    }

    #[test]
    fn errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.tsv");
        std::fs::write(&p, "id\tassay\nA\tz\nA\tq\n").unwrap();
        let e = read_metadata(&p, &exps(&["A"]), Path::new("peaks.tsv")).unwrap_err().to_string();
        assert!(e.contains("meta.tsv:3 [field id]") && e.contains("first at line 2"), "{e}");
        std::fs::write(&p, "id\tassay\nA\tz\tq\n").unwrap();
        let e = read_metadata(&p, &exps(&["A"]), Path::new("peaks.tsv")).unwrap_err().to_string();
        assert!(e.contains("meta.tsv:2") && e.contains("3 tab-separated fields"), "{e}");
        std::fs::write(&p, "id\tassay\nA\tz\n").unwrap();
        let e = read_metadata(&p, &exps(&["A", "B"]), Path::new("peaks.tsv")).unwrap_err().to_string();
        assert!(e.contains("peaks.tsv:3 [field experiment]") && e.contains("'B' has no row"), "{e}");
    }
}
