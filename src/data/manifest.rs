//! `manifest.toml`: the table of contents of a prepared dataset directory (written last by `mfd prepare`, so a
//! directory without it is not a dataset). It names every file with its SHA-256, the contig table, the class
//! order and the split rule. Format documented in docs/FORMATS.md.

use crate::data::binfile::write_atomic;
use crate::error::{IoContext, MfdError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FORMAT: &str = "mfd-dataset";
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always "mfd-dataset".
    pub format: String,
    pub version: u32,
    /// Tile (label bin) size in bp, 128.
    pub tile_size: u32,
    /// Number of classes (experiments) O.
    pub num_classes: u32,
    /// Bytes per label row: ceil(O / 64) * 8 (bit o of a row is byte o / 8, bit o % 8, LSB first).
    pub label_row_bytes: u32,
    /// Preparation settings used.
    pub settings: PrepareSettings,
    /// Input files with checksums.
    pub sources: Vec<SourceFile>,
    /// Contigs in FASTA order; `offset` is the contig's first base in genome.bin.
    pub contigs: Vec<Contig>,
    /// Experiment ids in class order (class i = classes[i]).
    pub classes: Vec<String>,
    pub counts: Counts,
    /// Derived files (genome.bin, metadata.tsv, classes.tsv) with checksums.
    pub files: Vec<DataFile>,
    /// Tile/label shards in global tile order.
    pub shards: Vec<Shard>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareSettings {
    /// A tile is positive for an experiment when a peak overlaps it by at least this many bp.
    pub min_overlap: u32,
    /// Tiles are kept when at least this many experiments are positive.
    pub min_positive: u32,
    /// Test contig names as given (matched with or without "chr").
    pub test_contigs: Vec<String>,
    /// Validation rule: "reference-blocks" (mfd-spec.md 6.3).
    pub val_rule: String,
    /// Fraction used by the validation rule (0.05).
    pub val_fraction: f64,
    /// Tiles per shard file.
    pub shard_tiles: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// "fasta", "peaks_table", "metadata", or "peaks:<experiment>".
    pub role: String,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contig {
    pub name: String,
    pub length: u64,
    pub offset: u64,
    /// Bases that were IUPAC ambiguity codes other than N (stored as N = 4).
    pub iupac_bases: u64,
    /// Bases that were N.
    pub n_bases: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub tiles: u64,
    pub train: u64,
    pub val: u64,
    pub test: u64,
    /// Positive (tile, class) pairs over all kept tiles.
    pub positives: u64,
    /// Peak records read from all peak files.
    pub peaks: u64,
    /// Peaks that made no kept tile positive (too little overlap, only in a contig's dropped partial last tile,
    /// or only on tiles not kept); the sum of classes.tsv's `peaks_unused`. Peaks on contigs absent from the
    /// FASTA are input errors, never counted here. Absent in manifests written before it existed: read as 0.
    #[serde(default)]
    pub peaks_unused: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub index: u32,
    /// Global index of the shard's first tile.
    pub first_tile: u64,
    pub num_tiles: u64,
    /// `tiles-NNNNN.bin`: u32 (num_tiles, 4) = (contig index, start bp, split 0 train / 1 val / 2 test, positives).
    pub tiles: DataFile,
    /// `labels-NNNNN.bin`: u8 (num_tiles, label_row_bytes) bitsets.
    pub labels: DataFile,
}

pub const SPLIT_TRAIN: u32 = 0;
pub const SPLIT_VAL: u32 = 1;
pub const SPLIT_TEST: u32 = 2;

impl Manifest {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(MfdError::input(
                &path,
                None,
                None,
                "missing: not a prepared dataset (or `mfd prepare` did not finish); HINT: run `mfd prepare`",
            ));
        }
        let text = std::fs::read_to_string(&path).at(&path)?;
        check_self_sum(&path, &text)?;
        let m: Manifest = crate::toml_load::parse(&text, &path)?;
        if m.format != FORMAT {
            return Err(MfdError::input(&path, None, Some("format"), format!("'{}', expected '{FORMAT}'", m.format)));
        }
        if m.version != FORMAT_VERSION {
            return Err(MfdError::input(
                &path,
                None,
                Some("version"),
                format!("{}, this build reads {FORMAT_VERSION}", m.version),
            ));
        }
        if m.tile_size as u64 != crate::data::peaks::TILE {
            return Err(MfdError::input(
                &path,
                None,
                Some("tile_size"),
                format!("{}, expected {} (the model predicts 128-bp tiles)", m.tile_size, crate::data::peaks::TILE),
            ));
        }
        if m.classes.len() != m.num_classes as usize {
            return Err(MfdError::input(
                &path,
                None,
                Some("classes"),
                format!("{} ids for num_classes = {}", m.classes.len(), m.num_classes),
            ));
        }
        if m.label_row_bytes as usize != label_row_bytes(m.num_classes as usize) {
            return Err(MfdError::input(&path, None, Some("label_row_bytes"), "does not match num_classes"));
        }
        Ok(m)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut text = toml::to_string(self).map_err(|e| MfdError::other(format!("serialising manifest: {e}")))?;
        let sum = sha256_hex(text.as_bytes());
        text.push_str(&format!("{SELF_SUM}{sum}\n"));
        write_atomic(dir.join(MANIFEST_FILE), text.as_bytes())
    }

    pub fn file(&self, name: &str) -> Option<&DataFile> {
        self.files.iter().find(|f| f.name == name)
    }

    pub fn contig_index(&self, name: &str) -> Option<usize> {
        self.contigs.iter().position(|c| c.name == name)
    }
}

/// The last line of a manifest: a TOML comment with the SHA-256 of the text before it, so that an edited
/// manifest is refused on load (manifests written before it existed have none and are read as they are).
const SELF_SUM: &str = "# manifest-sha256 ";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

fn check_self_sum(path: &Path, text: &str) -> Result<()> {
    let body_end = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let Some(sum) = text[body_end..].strip_prefix(SELF_SUM) else { return Ok(()) };
    let got = sha256_hex(&text.as_bytes()[..body_end]);
    if sum.trim() != got {
        return Err(MfdError::input(
            path,
            Some(text[..body_end].lines().count() as u64 + 1),
            Some("manifest-sha256"),
            "the manifest was changed after `mfd prepare` wrote it (checksum mismatch); HINT: re-run `mfd prepare`",
        ));
    }
    Ok(())
}

/// Bytes per label row for `o` classes: whole 64-bit words, so rows can be read as u64 on any device.
pub fn label_row_bytes(o: usize) -> usize {
    o.div_ceil(64) * 8
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).at(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).at(path)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, format!("{:x}", h.finalize())))
}

/// Check a derived file against its manifest entry (size first, then SHA-256).
pub fn verify_file(dir: &Path, f: &DataFile) -> Result<()> {
    let path = dir.join(&f.name);
    let (bytes, sha) = sha256_file(&path)?;
    if bytes != f.bytes {
        return Err(MfdError::input(
            &path,
            None,
            Some("bytes"),
            format!("{bytes} bytes, manifest says {}; HINT: re-run `mfd prepare`", f.bytes),
        ));
    }
    if sha != f.sha256 {
        return Err(MfdError::input(&path, None, Some("sha256"), format!("checksum mismatch (got {sha}, manifest {}); HINT: the file changed after prepare, re-run `mfd prepare`", f.sha256)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let file = |name: &str| DataFile { name: name.into(), bytes: 1, sha256: "00".into() };
        Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            tile_size: 128,
            num_classes: 2,
            label_row_bytes: 8,
            settings: PrepareSettings {
                min_overlap: 64,
                min_positive: 1,
                test_contigs: vec!["chr9".into()],
                val_rule: "reference-blocks".into(),
                val_fraction: 0.05,
                shard_tiles: 16,
            },
            sources: vec![],
            contigs: vec![Contig { name: "chr1".into(), length: 1000, offset: 0, iupac_bases: 0, n_bases: 0 }],
            classes: vec!["E0".into(), "E1".into()],
            counts: Counts { tiles: 3, train: 3, val: 0, test: 0, positives: 4, peaks: 5, peaks_unused: 1 },
            files: vec![file("genome.bin")],
            shards: vec![Shard {
                index: 0,
                first_tile: 0,
                num_tiles: 3,
                tiles: file("tiles-00000.bin"),
                labels: file("labels-00000.bin"),
            }],
        }
    }

    /// Rewrite `dir`'s manifest with `edit` applied to its text, without its checksum line (as an old manifest).
    fn edit(dir: &Path, edit: impl Fn(&str) -> String) {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with(SELF_SUM)).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, edit(&body)).unwrap();
    }

    #[test]
    fn an_edited_manifest_is_refused_and_tile_size_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        manifest().save(dir.path()).unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().last().unwrap().starts_with(SELF_SUM), "{text}");
        std::fs::write(&path, text.replace("tile_size = 128", "tile_size = 0")).unwrap();
        let e = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("manifest-sha256") && e.contains("changed after"), "{e}");
        // Without the checksum line (an old manifest) the value itself is refused, by name.
        edit(dir.path(), |t| t.to_string());
        let e = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("[field tile_size]") && e.contains("expected 128"), "{e}");
    }

    /// 1-based line of the first line of `text` starting with `prefix`.
    fn line_of(text: &str, prefix: &str) -> usize {
        text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
    }

    #[test]
    fn round_trip_and_old_manifests_without_peaks_unused() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest();
        m.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
        edit(dir.path(), |t| t.replace("peaks_unused = 1\n", ""));
        assert_eq!(Manifest::load(dir.path()).unwrap().counts.peaks_unused, 0);
    }

    #[test]
    fn load_errors_name_the_right_line() {
        let dir = tempfile::tempdir().unwrap();
        manifest().save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        let text: String = text.lines().filter(|l| !l.starts_with(SELF_SUM)).map(|l| format!("{l}\n")).collect();
        // An error spanning from the start of a line (unknown key) and one inside a line (wrong type).
        let unknown = text.replace("tile_size = 128\n", "tile_size = 128\nbogus = 1\n");
        let want = line_of(&unknown, "bogus");
        edit(dir.path(), |_| unknown.clone());
        let e = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("manifest.toml:{want} [field bogus]")), "{e}");
        let typed = text.replace("num_classes = 2", "num_classes = \"two\"");
        let want = line_of(&typed, "num_classes");
        edit(dir.path(), |_| typed.clone());
        let e = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("manifest.toml:{want} [field num_classes]")), "{e}");
    }
}
