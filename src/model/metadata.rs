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
    /// An age as the ENCODE portal writes it ("14 years", "8 weeks", "90 or above", "unknown"), in years, z-scored;
    /// missing ages are 0 (the mean) and flagged in a second column `<name>:missing` (present when any is missing).
    #[serde(rename = "age.years")]
    AgeYears,
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
    /// Metadata columns to read, the first the table has (e.g. the ENCODE portal's name, then the reference's);
    /// empty: the variable's own name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
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

/// The mapping for the ENCODE portal's metadata.tsv (its column names; the reference's names as fallbacks).
pub const ENCODE_MAPPING: &str = include_str!("../../configs/encode_mapping.toml");

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

    /// The column of variable `name`: the first of `columns` present (`name` itself when empty).
    fn column(&self, name: &str, columns: &[String]) -> Result<usize> {
        let own = [name.to_string()];
        let wanted = if columns.is_empty() { &own[..] } else { columns };
        wanted.iter().find_map(|c| self.header.iter().position(|h| h == c)).ok_or_else(|| {
            MfdError::input(
                &self.source,
                Some(1),
                Some(name),
                format!(
                    "column used by the metadata mapping is missing (looked for {}); columns: {}",
                    wanted.join(" / "),
                    self.header.join(", ")
                ),
            )
        })
    }

    /// Encode one variable (see the module doc).
    pub fn encode(&self, name: &str, var: &Variable) -> Result<EncodedVar> {
        let col = self.column(name, &var.columns)?;
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
                let values = z_scores(&xs.iter().map(|&x| Some(x)).collect::<Vec<_>>());
                Ok(EncodedVar { name: name.to_string(), vocab: vec![name.to_string()], values })
            }
            VarType::AgeYears => {
                let mut ages = Vec::with_capacity(raw.len());
                for (i, s) in raw.iter().enumerate() {
                    ages.push(parse_age_years(s).map_err(|msg| {
                        MfdError::input(&self.source, Some(i as u64 + 2), Some(name), format!("'{s}': {msg}"))
                    })?);
                }
                let z = z_scores(&ages);
                if ages.iter().all(Option::is_some) {
                    return Ok(EncodedVar { name: name.to_string(), vocab: vec![name.to_string()], values: z });
                }
                let values = z.iter().zip(&ages).flat_map(|(&v, a)| [v, if a.is_none() { 1.0 } else { 0.0 }]).collect();
                Ok(EncodedVar {
                    name: name.to_string(),
                    vocab: vec![name.to_string(), format!("{name}:missing")],
                    values,
                })
            }
        }
    }
}

/// Z-scores with the population std of the present values; missing values (and a constant column, which is 0/0
/// in the reference) give 0.
fn z_scores(xs: &[Option<f64>]) -> Vec<f32> {
    let present: Vec<f64> = xs.iter().flatten().copied().collect();
    let n = present.len().max(1) as f64;
    let mean = present.iter().sum::<f64>() / n;
    let std = (present.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    xs.iter().map(|x| x.filter(|_| std > 0.0).map_or(0.0, |x| ((x - mean) / std) as f32)).collect()
}

/// An age in years from the ENCODE portal's forms: "14 years", "8 weeks", "3 days", "6 months", a range
/// "20-25 years" (its midpoint), "90 or above" (90), a bare number (years); None for "unknown", "" or "nan".
pub fn parse_age_years(s: &str) -> std::result::Result<Option<f64>, String> {
    let t = s.trim().to_ascii_lowercase();
    if matches!(t.as_str(), "" | "unknown" | "nan" | "na" | "n/a" | "not reported") {
        return Ok(None);
    }
    let bad =
        || "not an age (expected e.g. '14 years', '8 weeks', '20-25 years', '90 or above', 'unknown')".to_string();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (t[..i].trim(), t[i..].trim()),
        None => (t.as_str(), ""),
    };
    let (num, unit) = match unit.strip_prefix("or above").or_else(|| unit.strip_prefix("or older")) {
        Some(rest) => (num, rest.trim()),
        None => (num, unit),
    };
    let years_per_unit = match unit.trim_end_matches('s') {
        "" | "year" => 1.0,
        "month" => 1.0 / 12.0,
        "week" => 7.0 / 365.25,
        "day" => 1.0 / 365.25,
        "hour" => 1.0 / (365.25 * 24.0),
        _ => return Err(bad()),
    };
    let parse = |x: &str| x.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    let value = match num.split_once('-') {
        Some((a, b)) => (parse(a).ok_or_else(bad)? + parse(b).ok_or_else(bad)?) / 2.0,
        None => parse(num).ok_or_else(bad)?,
    };
    Ok(Some(value * years_per_unit))
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
            .encode(
                "organ",
                &Variable { var_type: VarType::Category, transform: Transform::Multihot, dim: None, columns: vec![] },
            )
            .unwrap();
        assert_eq!(v.vocab, vec!["blood", "liver", "nan"]);
        assert_eq!(v.values, vec![1., 1., 0., 1., 0., 0., 0., 0., 1.]);
        let y = t
            .encode(
                "date",
                &Variable { var_type: VarType::DateYear, transform: Transform::Linear, dim: None, columns: vec![] },
            )
            .unwrap();
        assert_eq!(y.vocab, vec!["2012", "2016"]);
        assert_eq!(y.values, vec![1., 0., 0., 1., 1., 0.]);
    }

    #[test]
    fn numbers_are_z_scored_with_population_std() {
        let (_d, t) = table(&["E1\ta\t1\t2012", "E2\ta\t2\t2012", "E3\ta\t3\t2012"]);
        let v = t
            .encode(
                "age",
                &Variable { var_type: VarType::Float, transform: Transform::Null, dim: None, columns: vec![] },
            )
            .unwrap();
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
            .encode(
                "age",
                &Variable { var_type: VarType::Float, transform: Transform::Null, dim: None, columns: vec![] },
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata.tsv:2") && e.contains("age"), "{e}");
        let e = t
            .encode(
                "date",
                &Variable { var_type: VarType::DateYear, transform: Transform::Null, dim: None, columns: vec![] },
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata.tsv:3") && e.contains("date"), "{e}");
        let e = t
            .encode(
                "lab",
                &Variable { var_type: VarType::Category, transform: Transform::Null, dim: None, columns: vec![] },
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn ages_in_the_portal_forms() {
        let y = |s: &str| parse_age_years(s).unwrap();
        assert_eq!(y("14 years"), Some(14.0));
        assert_eq!(y("1 year"), Some(1.0));
        assert_eq!(y("90 or above"), Some(90.0));
        assert_eq!(y("90 or above years"), Some(90.0));
        assert_eq!(y("8 weeks"), Some(8.0 * 7.0 / 365.25));
        assert_eq!(y("6 months"), Some(0.5));
        assert_eq!(y("20-25 years"), Some(22.5));
        assert_eq!(y(" 37 "), Some(37.0));
        for missing in ["unknown", "Unknown", "", "nan"] {
            assert_eq!(y(missing), None, "{missing:?}");
        }
        for bad in ["old", "14 eons", "-3 years", "x-5 years", "inf years"] {
            assert!(parse_age_years(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encode_mapping_on_a_portal_table() {
        let m = MappingConfig::parse(ENCODE_MAPPING, Path::new("configs/encode_mapping.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metadata.tsv");
        std::fs::write(
            &p,
            "File accession\tAssay\tBiosample term name\tExperiment target\tLab\tExperiment date released\tBiosample age\n\
             ENCFF1\tTF ChIP-seq\tK562\tCTCF-human\tMichael Snyder, Stanford\t2012-02-08\t53 years\n\
             ENCFF2\tDNase-seq\tliver\t\tJohn Stam, UW\t2016-12-01\t90 or above\n\
             ENCFF3\tATAC-seq\theart left ventricle\t\tMichael Snyder, Stanford\t2020-05-01\tunknown\n",
        )
        .unwrap();
        let classes: Vec<String> = ["ENCFF1", "ENCFF2", "ENCFF3"].map(String::from).to_vec();
        let t = MetadataTable::load(&p, &classes).unwrap();
        for name in m.used_variables() {
            t.encode(&name, &m.variables[&name]).unwrap();
        }
        let age = t.encode("age", &m.variables["age"]).unwrap();
        assert_eq!(age.vocab, vec!["age", "age:missing"]);
        assert_eq!((age.values[0], age.values[2]), (-1.0, 1.0)); // 53 and 90 z-scored over the two present
        assert_eq!(&age.values[4..], &[0.0, 1.0]);
        let target = t.encode("target", &m.variables["target"]).unwrap();
        assert_eq!(target.vocab, vec!["CTCF-human", "nan"]);
        // A table without the column names the variable and what was looked for.
        let e = t.encode("x", &Variable { columns: vec!["Lab2".into()], ..m.variables["lab"].clone() }).unwrap_err();
        assert!(e.to_string().contains("looked for Lab2"), "{e}");
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
