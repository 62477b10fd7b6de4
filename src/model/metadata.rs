//! Metadata mapping config and the encoding of the experiment metadata table (mfd-spec.md 3.1-3.3, 3.5).
//!
//! The mapping config (TOML equivalent of the reference's YAML) names the metadata columns the hypernetworks use,
//! their type and their intermediate transform, and the two groups (biological, technical) with their `direct` and
//! `interact` variable lists. Encoding turns the class-ordered metadata table into one (O, D_v) f32 matrix per
//! variable, exactly as the reference: category values are split on commas and multi-hot encoded over the sorted
//! vocabulary (an empty field is the label "nan"), numbers are z-scored with the population std, dates become
//! their year, then a category. The learnable transforms live in `model::hypernet`.

use crate::error::{MfdError, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// How a column's raw text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VarType {
    #[serde(rename = "category")]
    Category,
    #[serde(rename = "float")]
    Float,
    #[serde(rename = "int")]
    Int,
    #[serde(rename = "date.year")]
    DateYear,
}

/// The learnable intermediate transform applied to a variable's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transform {
    /// MLP d -> 2k -> 2k -> k with ReLU (k = `dim`).
    #[serde(rename = "embed")]
    Embed,
    /// Linear d -> k with bias (k defaults to d).
    #[serde(rename = "linear")]
    Linear,
    /// The reference's old meaning: Linear(d -> d) with bias (architecture.md section 4).
    #[serde(rename = "multihot")]
    Multihot,
    /// Identity.
    #[serde(rename = "null")]
    Null,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    #[serde(rename = "type")]
    pub var_type: VarType,
    pub transform: Transform,
    /// Output width k of `embed` (required) or `linear` (optional; defaults to the input width).
    #[serde(default)]
    pub dim: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Variables whose transformed encodings are forwarded as the first columns of W.
    #[serde(default)]
    pub direct: Vec<String>,
    /// Variables concatenated and passed through the interaction MLP d_int -> 2 out_dim -> 2 out_dim -> C - d_dir.
    #[serde(default)]
    pub interact: Vec<String>,
    pub out_dim: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    pub variables: BTreeMap<String, Variable>,
    pub biological: Group,
    pub technical: Group,
}

/// The default mapping (the reference's sample config, mfd-spec.md 3.5), embedded so `mfd train` works anywhere.
pub const DEFAULT_MAPPING: &str = include_str!("../../configs/metadata_mapping.toml");

impl MappingConfig {
    pub fn parse(text: &str, source: &Path) -> Result<Self> {
        let cfg: MappingConfig = crate::toml_load::parse(text, source)?;
        cfg.validate(source)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::data::read_text_input(path)?;
        Self::parse(&text, path)
    }

    pub fn default_mapping() -> Self {
        Self::parse(DEFAULT_MAPPING, Path::new("configs/metadata_mapping.toml"))
            .expect("embedded mapping is valid (tested)")
    }

    fn validate(&self, source: &Path) -> Result<()> {
        for (gname, g) in [("biological", &self.biological), ("technical", &self.technical)] {
            for v in g.direct.iter().chain(&g.interact) {
                if !self.variables.contains_key(v) {
                    return Err(MfdError::input(
                        source,
                        None,
                        Some(gname),
                        format!("variable '{v}' is not defined in [variables]"),
                    ));
                }
            }
            if g.out_dim == 0 {
                return Err(MfdError::input(source, None, Some(&format!("{gname}.out_dim")), "must be > 0"));
            }
        }
        for (name, v) in &self.variables {
            if v.transform == Transform::Embed && v.dim.is_none() {
                return Err(MfdError::input(
                    source,
                    None,
                    Some(&format!("variables.{name}.dim")),
                    "required for transform = \"embed\"",
                ));
            }
            if v.dim == Some(0) {
                return Err(MfdError::input(source, None, Some(&format!("variables.{name}.dim")), "must be > 0"));
            }
        }
        Ok(())
    }

    /// Variables used by either group, in a stable order (sorted by name): one module per variable even when a
    /// variable appears in both lists of a group (the reference builds a set).
    pub fn used_variables(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .biological
            .direct
            .iter()
            .chain(&self.biological.interact)
            .chain(&self.technical.direct)
            .chain(&self.technical.interact)
            .collect();
        set.into_iter().cloned().collect()
    }
}

/// One variable encoded over the O classes.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedVar {
    pub name: String,
    /// Column labels: the sorted vocabulary for categories and years, `[name]` for numbers.
    pub vocab: Vec<String>,
    /// (O, D) row-major.
    pub values: Vec<f32>,
}

impl EncodedVar {
    pub fn width(&self) -> usize {
        self.vocab.len()
    }
}

/// The class-ordered metadata table as read from a prepared dataset's metadata.tsv.
#[derive(Debug, Clone)]
pub struct MetadataTable {
    pub header: Vec<String>,
    /// One row per class, in class order; row[0] is the experiment id.
    pub rows: Vec<Vec<String>>,
    source: std::path::PathBuf,
}

impl MetadataTable {
    /// Read a TSV whose first column is the experiment id, check its rows follow `classes` exactly.
    pub fn load(path: &Path, classes: &[String]) -> Result<Self> {
        let text = crate::data::read_text_input(path)?;
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, head) = lines.next().ok_or_else(|| MfdError::input(path, Some(1), None, "empty metadata file"))?;
        let header: Vec<String> = head.split('\t').map(|s| s.trim_end_matches('\r').to_string()).collect();
        let mut rows = Vec::new();
        for (i, line) in lines {
            let fields: Vec<String> = line.split('\t').map(|s| s.trim_end_matches('\r').to_string()).collect();
            if fields.len() != header.len() {
                return Err(MfdError::input(
                    path,
                    Some(i as u64 + 1),
                    None,
                    format!("{} fields, header has {}", fields.len(), header.len()),
                ));
            }
            rows.push(fields);
        }
        if rows.len() != classes.len() {
            return Err(MfdError::input(
                path,
                None,
                None,
                format!("{} rows for {} classes; HINT: re-run `mfd prepare`", rows.len(), classes.len()),
            ));
        }
        for (i, (row, class)) in rows.iter().zip(classes).enumerate() {
            if &row[0] != class {
                return Err(MfdError::input(
                    path,
                    Some(i as u64 + 2),
                    Some(&header[0]),
                    format!("'{}' where class {i} is '{}'", crate::error::short(&row[0]), crate::error::short(class)),
                ));
            }
        }
        Ok(MetadataTable { header, rows, source: path.to_path_buf() })
    }

    pub fn num_classes(&self) -> usize {
        self.rows.len()
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            MfdError::input(
                &self.source,
                Some(1),
                Some(name),
                format!("column used by the metadata mapping is missing; columns: {}", self.header.join(", ")),
            )
        })
    }

    /// Encode one variable (see the module doc).
    pub fn encode(&self, name: &str, var: &Variable) -> Result<EncodedVar> {
        let col = self.column(name)?;
        let raw: Vec<&str> = self.rows.iter().map(|r| r[col].as_str()).collect();
        match var.var_type {
            VarType::Category => Ok(multi_hot(name, &raw, |s| s.split(',').map(str::to_string).collect())),
            VarType::DateYear => {
                let mut years = Vec::with_capacity(raw.len());
                for (i, s) in raw.iter().enumerate() {
                    years.push(parse_year(s).ok_or_else(|| {
                        MfdError::input(
                            &self.source,
                            Some(i as u64 + 2),
                            Some(name),
                            format!("'{}' is not a date (YYYY or YYYY-MM-DD)", crate::error::short(s)),
                        )
                    })?);
                }
                let years: Vec<String> = years.iter().map(|y| y.to_string()).collect();
                let refs: Vec<&str> = years.iter().map(String::as_str).collect();
                Ok(multi_hot(name, &refs, |s| vec![s.to_string()]))
            }
            VarType::Float | VarType::Int => {
                let mut xs = Vec::with_capacity(raw.len());
                for (i, s) in raw.iter().enumerate() {
                    let v = s.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                        MfdError::input(
                            &self.source,
                            Some(i as u64 + 2),
                            Some(name),
                            format!(
                                "'{}' is not a finite number (numeric metadata used by the model may not be missing)",
                                crate::error::short(s)
                            ),
                        )
                    })?;
                    xs.push(v);
                }
                let n = xs.len() as f64;
                let mean = xs.iter().sum::<f64>() / n;
                let std = (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
                // A constant column z-scores to 0/0 in the reference (NaN); we use 0, and say so in the docs.
                let values = xs.iter().map(|x| if std > 0.0 { ((x - mean) / std) as f32 } else { 0.0 }).collect();
                Ok(EncodedVar { name: name.to_string(), vocab: vec![name.to_string()], values })
            }
        }
    }
}

fn parse_year(s: &str) -> Option<i32> {
    let y = s.trim().get(..4)?;
    let year: i32 = y.parse().ok()?;
    let rest = &s.trim()[4..];
    (rest.is_empty() || rest.starts_with('-') || rest.starts_with('/')).then_some(year)
}

/// Multi-hot over the sorted set of pieces; an empty field counts as the piece "nan" (the reference's NaN label).
fn multi_hot(name: &str, raw: &[&str], pieces: impl Fn(&str) -> Vec<String>) -> EncodedVar {
    let per_row: Vec<Vec<String>> = raw
        .iter()
        .map(|s| if s.is_empty() || *s == "NaN" || *s == "nan" { vec!["nan".to_string()] } else { pieces(s) })
        .collect();
    let vocab: Vec<String> = per_row.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let d = vocab.len();
    let mut values = vec![0f32; raw.len() * d];
    for (i, row) in per_row.iter().enumerate() {
        for p in row {
            let j = vocab.binary_search(p).expect("piece is in the vocabulary built from the same rows");
            values[i * d + j] = 1.0;
        }
    }
    EncodedVar { name: name.to_string(), vocab, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&str]) -> (tempfile::TempDir, MetadataTable) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metadata.tsv");
        let mut text = String::from("File_accession\torgan\tage\tdate\n");
        for r in rows {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(&p, text).unwrap();
        let classes: Vec<String> = rows.iter().map(|r| r.split('\t').next().unwrap().to_string()).collect();
        let t = MetadataTable::load(&p, &classes).unwrap();
        (dir, t)
    }

    #[test]
    fn category_is_comma_split_multi_hot_over_sorted_vocab() {
        let (_d, t) = table(&["E1\tliver,blood\t1\t2012-03-04", "E2\tblood\t2\t2016-01-01", "E3\t\t3\t2012"]);
        let v = t
            .encode("organ", &Variable { var_type: VarType::Category, transform: Transform::Multihot, dim: None })
            .unwrap();
        assert_eq!(v.vocab, vec!["blood", "liver", "nan"]);
        assert_eq!(v.values, vec![1., 1., 0., 1., 0., 0., 0., 0., 1.]);
        let y = t
            .encode("date", &Variable { var_type: VarType::DateYear, transform: Transform::Linear, dim: None })
            .unwrap();
        assert_eq!(y.vocab, vec!["2012", "2016"]);
        assert_eq!(y.values, vec![1., 0., 0., 1., 1., 0.]);
    }

    #[test]
    fn numbers_are_z_scored_with_population_std() {
        let (_d, t) = table(&["E1\ta\t1\t2012", "E2\ta\t2\t2012", "E3\ta\t3\t2012"]);
        let v = t.encode("age", &Variable { var_type: VarType::Float, transform: Transform::Null, dim: None }).unwrap();
        let s = (2.0f64 / 3.0).sqrt();
        let want = [-1.0 / s, 0.0, 1.0 / s];
        for (a, b) in v.values.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6);
        }
    }

    #[test]
    fn bad_values_name_file_line_and_column() {
        let (_d, t) = table(&["E1\ta\tx\t2012", "E2\ta\t2\tlast year"]);
        let e = t
            .encode("age", &Variable { var_type: VarType::Float, transform: Transform::Null, dim: None })
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata.tsv:2") && e.contains("age"), "{e}");
        let e = t
            .encode("date", &Variable { var_type: VarType::DateYear, transform: Transform::Null, dim: None })
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata.tsv:3") && e.contains("date"), "{e}");
        let e = t
            .encode("lab", &Variable { var_type: VarType::Category, transform: Transform::Null, dim: None })
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn default_mapping_parses_and_unknown_keys_fail() {
        let m = MappingConfig::default_mapping();
        assert_eq!(m.biological.direct, vec!["proc_target"]);
        assert!(m.used_variables().contains(&"Library_lab".to_string()));
        let bad = DEFAULT_MAPPING.replacen("out_dim = 256", "outdim = 256", 1);
        assert!(MappingConfig::parse(&bad, Path::new("m.toml")).is_err());
    }
}
