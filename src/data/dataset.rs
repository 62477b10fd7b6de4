//! The memory-mapped reader of a prepared dataset directory (`manifest.toml`, `genome.bin`, `tiles-*.bin`,
//! `labels-*.bin`; see `manifest.rs` and `binfile.rs` for the on-disk contract).
//!
//! Key decision: everything the hot path relies on is checked once, at open, against the manifest (array
//! shapes, contig table, tile records), so the accessors afterwards are plain infallible slice reads of the
//! mapped files. `open` also checks the SHA-256 of every file the first time and writes `.verified` (the
//! manifest's checksum and every file's size and mtime); later opens re-read the checksums only when one of those
//! changed. `open_unverified` skips the checksums, `open_verified` always reads them.
//! `write_raw_dataset` writes a valid directory straight from memory, for tests and benchmarks.

use crate::data::binfile::{write_array, BinFile, DType, HEADER_LEN};
use crate::data::manifest::{
    label_row_bytes, sha256_file, verify_file, Contig, Counts, DataFile, Manifest, PrepareSettings, Shard, FORMAT,
    FORMAT_VERSION, MANIFEST_FILE, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL,
};
use crate::error::{IoContext, MfdError, Result};
use std::path::{Path, PathBuf};

/// Name of the genome file inside a dataset directory.
pub const GENOME_FILE: &str = "genome.bin";
/// u32 columns per tile record: (contig index, start bp, split, positives).
pub const TILE_COLUMNS: usize = 4;

/// One labelled tile, as stored in `tiles-*.bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRecord {
    /// Index into the manifest's contig table.
    pub contig: u32,
    /// 0-based start of the tile on its contig (bp).
    pub start: u32,
    /// `SPLIT_TRAIN`, `SPLIT_VAL` or `SPLIT_TEST`.
    pub split: u32,
    /// Number of positive classes of the tile.
    pub positives: u32,
}

/// One shard's mapped files and its place in the global tile order.
#[derive(Debug)]
struct ShardMaps {
    first_tile: u64,
    num_tiles: u64,
    tiles: BinFile,  // u32 (n, 4)
    labels: BinFile, // u8 (n, label_row_bytes)
}

/// An opened, shape-checked dataset directory.
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    genome: BinFile, // u8 (sum of contig lengths,)
    shards: Vec<ShardMaps>,
    num_tiles: u64,
    row_bytes: usize,
}

/// Marker of a dataset whose checksums were verified: the manifest's SHA-256 and each file's size and mtime.
pub const VERIFIED_FILE: &str = ".verified";

impl Dataset {
    /// Load the manifest, map every array and check all shapes against the manifest; then the checksums of every
    /// file, unless `.verified` says they were checked and no file changed size or mtime since.
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        let ds = Self::open_unverified(dir)?;
        let stamp = verified_stamp(&ds.dir, &ds.manifest)?;
        let marker = ds.dir.join(VERIFIED_FILE);
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(stamp.as_str()) {
            ds.verify()?;
            // Best effort: a read-only dataset is verified on every open instead.
            let tmp = ds.dir.join(format!("{VERIFIED_FILE}.{}.tmp", std::process::id()));
            if std::fs::write(&tmp, &stamp).is_err() || std::fs::rename(&tmp, &marker).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(ds)
    }

    /// Shapes only (no checksums): `mfd inspect` and tests of the checksum path.
    pub fn open_unverified(dir: impl AsRef<Path>) -> Result<Dataset> {
        let dir = dir.as_ref();
        let manifest = Manifest::load(dir)?;
        Self::open_with(dir, manifest)
    }

    /// `open` after checking every file's size and SHA-256 against the manifest.
    pub fn open_verified(dir: impl AsRef<Path>) -> Result<Dataset> {
        let dir = dir.as_ref();
        let manifest = Manifest::load(dir)?;
        // Checksums first: a corrupted file then reports "sha256" rather than whatever shape check it trips.
        verify_all(dir, &manifest)?;
        Self::open_with(dir, manifest)
    }

    /// Check the size and SHA-256 of every derived file and every shard file (reads them all).
    pub fn verify(&self) -> Result<()> {
        verify_all(&self.dir, &self.manifest)
    }

    fn open_with(dir: &Path, manifest: Manifest) -> Result<Dataset> {
        let mpath = dir.join(MANIFEST_FILE);
        let bad_manifest = |field: &str, msg: String| MfdError::input(&mpath, None, Some(field), msg);

        // Contig table: offsets contiguous from 0, total = genome length.
        let mut total = 0u64;
        for (i, c) in manifest.contigs.iter().enumerate() {
            if c.offset != total {
                return Err(bad_manifest(
                    &format!("contigs[{i}].offset"),
                    format!(
                        "contig '{}' starts at {}, expected {total} (contigs are stored back to back)",
                        c.name, c.offset
                    ),
                ));
            }
            total = total
                .checked_add(c.length)
                .ok_or_else(|| bad_manifest(&format!("contigs[{i}].length"), "total genome length overflows".into()))?;
        }

        let genome_entry =
            manifest.file(GENOME_FILE).ok_or_else(|| bad_manifest("files", format!("no entry for {GENOME_FILE}")))?;
        let genome = BinFile::open(dir.join(GENOME_FILE), "genome", DType::U8)?;
        if genome.shape() != [total] {
            return Err(MfdError::input(
                genome.path(),
                None,
                Some("header.shape"),
                format!("shape {:?}, but the manifest's contigs sum to [{total}] bases", genome.shape()),
            ));
        }
        check_bytes(&genome, genome_entry)?;

        // Shards: in global order, back to back, each (n, 4) tiles and (n, row_bytes) labels.
        let row_bytes = manifest.label_row_bytes as usize;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut next = 0u64;
        let mut per_split = [0u64; 3];
        for (i, s) in manifest.shards.iter().enumerate() {
            if s.index as usize != i || s.first_tile != next {
                return Err(bad_manifest(
                    &format!("shards[{i}]"),
                    format!("index {} first_tile {}, expected index {i} first_tile {next}", s.index, s.first_tile),
                ));
            }
            let tiles = BinFile::open(dir.join(&s.tiles.name), "tiles", DType::U32)?;
            check_shape(&tiles, &[s.num_tiles, TILE_COLUMNS as u64], "num_tiles")?;
            check_bytes(&tiles, &s.tiles)?;
            let labels = BinFile::open(dir.join(&s.labels.name), "labels", DType::U8)?;
            check_shape(&labels, &[s.num_tiles, row_bytes as u64], "num_tiles, label_row_bytes")?;
            check_bytes(&labels, &s.labels)?;
            let split_counts = check_tiles(&tiles, s.first_tile, &manifest.contigs)?;
            for (total, n) in per_split.iter_mut().zip(split_counts) {
                *total += n;
            }
            next += s.num_tiles;
            shards.push(ShardMaps { first_tile: s.first_tile, num_tiles: s.num_tiles, tiles, labels });
        }
        if next != manifest.counts.tiles {
            return Err(bad_manifest(
                "counts.tiles",
                format!("{} tiles, but the shards hold {next}", manifest.counts.tiles),
            ));
        }

        let c = &manifest.counts;
        for (name, want, got) in
            [("train", c.train, per_split[0]), ("val", c.val, per_split[1]), ("test", c.test, per_split[2])]
        {
            if want != got {
                return Err(bad_manifest(
                    &format!("counts.{name}"),
                    format!("{want}, but the tile records hold {got}"),
                ));
            }
        }
        Ok(Dataset { dir: dir.to_path_buf(), manifest, genome, shards, num_tiles: next, row_bytes })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn num_tiles(&self) -> u64 {
        self.num_tiles
    }

    /// Number of classes O.
    pub fn num_classes(&self) -> usize {
        self.manifest.num_classes as usize
    }

    /// Bytes per label row (ceil(O / 64) * 8).
    pub fn label_row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Tile (label bin) size in bp.
    pub fn tile_size(&self) -> u64 {
        self.manifest.tile_size as u64
    }

    /// Shard holding global tile `global` and the row inside it. Panics when `global >= num_tiles()`
    /// (indices come from the sampler, never from user text).
    fn locate(&self, global: u64) -> (&ShardMaps, usize) {
        assert!(global < self.num_tiles, "tile index {global} out of range (dataset has {} tiles)", self.num_tiles);
        let k = self.shards.partition_point(|s| s.first_tile + s.num_tiles <= global);
        let s = &self.shards[k];
        (s, (global - s.first_tile) as usize)
    }

    /// The tile record of global tile `global` (panics when out of range).
    pub fn tile(&self, global: u64) -> TileRecord {
        let (s, row) = self.locate(global);
        let b = &s.tiles.bytes()[row * TILE_COLUMNS * 4..(row + 1) * TILE_COLUMNS * 4];
        let col = |j: usize| u32::from_le_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]]);
        TileRecord { contig: col(0), start: col(1), split: col(2), positives: col(3) }
    }

    /// The label bitset of tile `global`: bit o is byte o / 8, bit o % 8 (LSB first). (label_row_bytes,)
    pub fn label_row(&self, global: u64) -> &[u8] {
        let (s, row) = self.locate(global);
        &s.labels.bytes()[row * self.row_bytes..(row + 1) * self.row_bytes]
    }

    /// Whether tile `global` is positive for `class` (panics when either is out of range).
    pub fn label(&self, global: u64, class: usize) -> bool {
        assert!(class < self.num_classes(), "class {class} out of range (O = {})", self.num_classes());
        get_bit(self.label_row(global), class)
    }

    /// Global indices of the tiles in `split`, ascending (genome order).
    pub fn split_indices(&self, split: u32) -> Vec<u64> {
        let mut out = Vec::new();
        for s in &self.shards {
            // Column 2 of each (n, 4) u32 record is the split.
            for (row, r) in s.tiles.bytes().chunks_exact(TILE_COLUMNS * 4).enumerate() {
                if u32::from_le_bytes([r[8], r[9], r[10], r[11]]) == split {
                    out.push(s.first_tile + row as u64);
                }
            }
        }
        out
    }

    /// Base codes of contig `contig` (A,C,G,T = 0..3, N = 4); panics when out of range.
    pub fn contig_codes(&self, contig: usize) -> &[u8] {
        let c = &self.manifest.contigs[contig];
        &self.genome.bytes()[c.offset as usize..(c.offset + c.length) as usize]
    }

    /// The whole concatenated genome (for upload to a device).
    pub fn genome(&self) -> &[u8] {
        self.genome.bytes()
    }
}

/// Bit `o` of a label row (byte o / 8, bit o % 8, LSB first).
pub fn get_bit(row: &[u8], o: usize) -> bool {
    row[o / 8] >> (o % 8) & 1 == 1
}

/// Set bit `o` of a label row.
pub fn set_bit(row: &mut [u8], o: usize) {
    row[o / 8] |= 1 << (o % 8);
}

/// The content `.verified` must have for the directory as it is now.
fn verified_stamp(dir: &Path, m: &Manifest) -> Result<String> {
    let mpath = dir.join(MANIFEST_FILE);
    let (_, msum) = sha256_file(&mpath)?;
    let mut s = format!("manifest {msum}\n");
    let names = m.files.iter().map(|f| &f.name).chain(m.shards.iter().flat_map(|x| [&x.tiles.name, &x.labels.name]));
    for name in names {
        let p = dir.join(name);
        let md = std::fs::metadata(&p).at(&p)?;
        let mtime = md.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
        s.push_str(&format!("{name} {} {}.{:09}\n", md.len(), mtime.as_secs(), mtime.subsec_nanos()));
    }
    Ok(s)
}

fn verify_all(dir: &Path, m: &Manifest) -> Result<()> {
    for f in &m.files {
        verify_file(dir, f)?;
    }
    for s in &m.shards {
        verify_file(dir, &s.tiles)?;
        verify_file(dir, &s.labels)?;
    }
    Ok(())
}

fn check_shape(f: &BinFile, want: &[u64], what: &str) -> Result<()> {
    if f.shape() != want {
        return Err(MfdError::input(
            f.path(),
            None,
            Some("header.shape"),
            format!("shape {:?}, the manifest ({what}) says {want:?}; HINT: re-run `mfd prepare`", f.shape()),
        ));
    }
    Ok(())
}

/// The mapped length must equal the manifest's byte count (cheap; catches a swapped file before any checksum).
fn check_bytes(f: &BinFile, entry: &DataFile) -> Result<()> {
    let len = (HEADER_LEN + f.bytes().len()) as u64;
    if len != entry.bytes {
        return Err(MfdError::input(
            f.path(),
            None,
            Some("bytes"),
            format!("{len} bytes, manifest says {}; HINT: re-run `mfd prepare`", entry.bytes),
        ));
    }
    Ok(())
}

/// Every tile record must name a known contig, start inside it and carry a known split. Returns the number of
/// tiles per split (train, val, test).
fn check_tiles(tiles: &BinFile, first_tile: u64, contigs: &[Contig]) -> Result<[u64; 3]> {
    let data = tiles.data::<u32>()?;
    let mut per_split = [0u64; 3];
    for (row, r) in data.chunks_exact(TILE_COLUMNS).enumerate() {
        let bad = |field: &str, msg: String| {
            MfdError::input(
                tiles.path(),
                None,
                Some(field),
                format!("record {row} (tile {}): {msg}", first_tile + row as u64),
            )
        };
        let Some(c) = contigs.get(r[0] as usize) else {
            return Err(bad("contig", format!("contig index {} but the manifest has {} contigs", r[0], contigs.len())));
        };
        if r[1] as u64 >= c.length {
            return Err(bad("start", format!("start {} outside contig '{}' of length {}", r[1], c.name, c.length)));
        }
        if r[2] > SPLIT_TEST {
            return Err(bad("split", format!("split {} (0 train, 1 val, 2 test)", r[2])));
        }
        per_split[r[2] as usize] += 1;
    }
    Ok(per_split)
}

/// A tile to write with `write_raw_dataset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTile {
    pub contig: u32,
    pub start: u32,
    pub split: u32,
}

/// Test/bench helper: write a valid dataset directory straight from memory, without `mfd prepare`.
///
/// `contigs` are (name, base codes 0..=4); `labels` is (tiles.len(), label_row_bytes(classes.len())) bitsets
/// (see `set_bit`); the positives column and all counts are computed. Tiles are cut into shards of
/// `shard_tiles`. Settings record the defaults (test contigs chr9/chr10, reference validation blocks), but the
/// splits are whatever `tiles` says. No metadata or source files are written. The manifest is written last.
pub fn write_raw_dataset(
    dir: &Path,
    contigs: &[(String, Vec<u8>)],
    tiles: &[RawTile],
    labels: &[u8],
    classes: &[String],
    shard_tiles: u64,
) -> Result<Manifest> {
    let row_bytes = label_row_bytes(classes.len());
    if labels.len() != tiles.len() * row_bytes {
        return Err(MfdError::Shape {
            op: "write_raw_dataset",
            msg: format!("labels has {} bytes, expected {} tiles x {row_bytes}", labels.len(), tiles.len()),
        });
    }
    if shard_tiles == 0 {
        return Err(MfdError::other("write_raw_dataset: shard_tiles must be > 0"));
    }
    std::fs::create_dir_all(dir).at(dir)?;

    // Genome: contigs back to back.
    let mut genome = Vec::new();
    let mut table = Vec::with_capacity(contigs.len());
    for (name, codes) in contigs {
        if let Some(&c) = codes.iter().find(|&&c| c > 4) {
            return Err(MfdError::other(format!("write_raw_dataset: contig '{name}' holds base code {c} (> 4)")));
        }
        let n_bases = codes.iter().filter(|&&c| c == 4).count() as u64;
        table.push(Contig {
            name: name.clone(),
            length: codes.len() as u64,
            offset: genome.len() as u64,
            iupac_bases: 0,
            n_bases,
        });
        genome.extend_from_slice(codes);
    }
    let genome_path = dir.join(GENOME_FILE);
    write_array(&genome_path, "genome", &[genome.len() as u64], &genome)?;
    let genome_file = data_file(dir, GENOME_FILE)?;

    // Tiles and labels, sharded.
    let mut counts =
        Counts { tiles: tiles.len() as u64, train: 0, val: 0, test: 0, positives: 0, peaks: 0, peaks_unused: 0 };
    let mut shards = Vec::new();
    for (k, chunk) in tiles.chunks(shard_tiles as usize).enumerate() {
        let first = k * shard_tiles as usize;
        let mut records = Vec::with_capacity(chunk.len() * TILE_COLUMNS);
        for (i, t) in chunk.iter().enumerate() {
            let Some(c) = table.get(t.contig as usize) else {
                return Err(MfdError::other(format!(
                    "write_raw_dataset: tile {} names contig {}",
                    first + i,
                    t.contig
                )));
            };
            if t.start as u64 >= c.length || t.split > SPLIT_TEST {
                return Err(MfdError::other(format!("write_raw_dataset: tile {} is invalid: {t:?}", first + i)));
            }
            let row = &labels[(first + i) * row_bytes..(first + i + 1) * row_bytes];
            let positives: u32 = row.iter().map(|b| b.count_ones()).sum();
            counts.positives += positives as u64;
            match t.split {
                SPLIT_TRAIN => counts.train += 1,
                SPLIT_VAL => counts.val += 1,
                _ => counts.test += 1,
            }
            records.extend_from_slice(&[t.contig, t.start, t.split, positives]);
        }
        let tiles_name = format!("tiles-{k:05}.bin");
        let labels_name = format!("labels-{k:05}.bin");
        let n = chunk.len() as u64;
        write_array(dir.join(&tiles_name), "tiles", &[n, TILE_COLUMNS as u64], &records)?;
        let label_bytes = &labels[first * row_bytes..(first + chunk.len()) * row_bytes];
        write_array(dir.join(&labels_name), "labels", &[n, row_bytes as u64], label_bytes)?;
        shards.push(Shard {
            index: k as u32,
            first_tile: first as u64,
            num_tiles: n,
            tiles: data_file(dir, &tiles_name)?,
            labels: data_file(dir, &labels_name)?,
        });
    }

    let manifest = Manifest {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        tile_size: 128,
        num_classes: classes.len() as u32,
        label_row_bytes: row_bytes as u32,
        settings: PrepareSettings {
            min_overlap: 64,
            min_positive: 1,
            test_contigs: vec!["chr9".into(), "chr10".into()],
            val_rule: "reference-blocks".into(),
            val_fraction: 0.05,
            shard_tiles,
        },
        sources: Vec::new(),
        contigs: table,
        classes: classes.to_vec(),
        counts,
        files: vec![genome_file],
        shards,
    };
    manifest.save(dir)?;
    Ok(manifest)
}

fn data_file(dir: &Path, name: &str) -> Result<DataFile> {
    let (bytes, sha256) = sha256_file(&dir.join(name))?;
    Ok(DataFile { name: name.to_string(), bytes, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(dir: &Path) -> Manifest {
        let contigs =
            vec![("chr1".to_string(), vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 0]), ("chr2".to_string(), vec![3; 300])];
        let tiles = [
            RawTile { contig: 0, start: 0, split: SPLIT_TRAIN },
            RawTile { contig: 1, start: 0, split: SPLIT_VAL },
            RawTile { contig: 1, start: 128, split: SPLIT_TRAIN },
        ];
        let classes: Vec<String> = (0..70).map(|i| format!("ENCFF{i:03}")).collect();
        let mut labels = vec![0u8; 3 * 16];
        set_bit(&mut labels[0..16], 0);
        set_bit(&mut labels[16..32], 69);
        set_bit(&mut labels[16..32], 8);
        write_raw_dataset(dir, &contigs, &tiles, &labels, &classes, 2).unwrap()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let m = tiny(dir.path());
        assert_eq!(m.shards.len(), 2);
        let ds = Dataset::open_verified(dir.path()).unwrap();
        assert_eq!(ds.num_tiles(), 3);
        assert_eq!(ds.num_classes(), 70);
        assert_eq!(ds.label_row_bytes(), 16);
        assert_eq!(ds.tile(1), TileRecord { contig: 1, start: 0, split: SPLIT_VAL, positives: 2 });
        assert_eq!(ds.tile(2), TileRecord { contig: 1, start: 128, split: SPLIT_TRAIN, positives: 0 });
        assert!(ds.label(0, 0) && !ds.label(0, 1));
        assert!(ds.label(1, 69) && ds.label(1, 8) && !ds.label(1, 0));
        assert_eq!(ds.split_indices(SPLIT_TRAIN), vec![0, 2]);
        assert_eq!(ds.split_indices(SPLIT_TEST), Vec::<u64>::new());
        assert_eq!(ds.contig_codes(0), &[0, 1, 2, 3, 4, 0, 1, 2, 3, 0]);
        assert_eq!(ds.contig_codes(1).len(), 300);
        assert_eq!(ds.manifest().counts.positives, 3);
        assert_eq!(ds.manifest().contigs[0].n_bases, 1);
    }

    #[test]
    fn bad_tile_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let m = tiny(dir.path());
        // Rewrite shard 1's tiles (same size) with a contig index out of range.
        write_array(dir.path().join(&m.shards[1].tiles.name), "tiles", &[1, 4], &[7u32, 0, 0, 0]).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tiles-00001.bin") && err.contains("contig") && err.contains("tile 2"), "{err}");
    }
}
