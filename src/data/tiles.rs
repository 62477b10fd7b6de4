//! Kept tiles of `mfd prepare`: the tile/label shard writer and the train/val/test split rule.
//!
//! Key decision: label rows stream into `labels-NNNNN.bin` as tiles are kept, while the 16-byte tile records
//! (contig, start, split, positives) stay in memory (~256 MB for 16 M tiles), because the validation rule
//! (mfd-spec.md 6.3) needs the final train count before any split can be written; tile shards are written last.

use crate::data::binfile::{write_array, BinFile, BinWriter, DType};
use crate::data::manifest::{self, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL};
use crate::error::Result;
use std::path::{Path, PathBuf};

/// Name of label shard `s`.
pub fn labels_name(s: usize) -> String {
    format!("labels-{s:05}.bin")
}

/// Name of tile shard `s`.
pub fn tiles_name(s: usize) -> String {
    format!("tiles-{s:05}.bin")
}

/// Test contigs match with or without a leading "chr" on either side ("chr9" ~ "9").
pub fn is_test_contig(name: &str, tests: &[String]) -> bool {
    let bare = |s: &str| s.strip_prefix("chr").unwrap_or(s).to_string();
    tests.iter().any(|t| bare(t) == bare(name))
}

/// Add 1 to `counts[o]` for every set bit o of a label row (bit o = byte o/8, bit o%8; rows are whole u64s).
pub fn count_bits(row: &[u8], counts: &mut [u64]) {
    for (wi, word) in row.chunks_exact(8).enumerate() {
        let mut bits = u64::from_le_bytes(word.try_into().expect("chunks_exact(8) yields 8 bytes"));
        while bits != 0 {
            counts[wi * 64 + bits.trailing_zeros() as usize] += 1;
            bits &= bits - 1;
        }
    }
}

/// Receives kept tiles in genome order: label rows go to shard files, tile records stay in memory.
pub struct TileSink {
    dir: PathBuf,
    row_bytes: usize,
    shard_tiles: u64,
    writer: Option<BinWriter>,
    /// (first tile, tiles) of every finished label shard.
    shards: Vec<(u64, u64)>,
    /// (n, 4) records: contig, start, split (train or test until `assign_val`), positives.
    pub tiles: Vec<[u32; 4]>,
    /// Per class, positive kept tiles on non-test contigs (train + val).
    pub pos_nontest: Vec<u64>,
    /// Per class, positive kept tiles on test contigs.
    pub pos_test: Vec<u64>,
}

impl TileSink {
    pub fn new(dir: &Path, o: usize, shard_tiles: u64) -> Self {
        TileSink {
            dir: dir.to_path_buf(),
            row_bytes: manifest::label_row_bytes(o),
            shard_tiles,
            writer: None,
            shards: Vec::new(),
            tiles: Vec::new(),
            pos_nontest: vec![0; o],
            pos_test: vec![0; o],
        }
    }

    /// Append one kept tile: `rec` = (contig, start, SPLIT_TRAIN or SPLIT_TEST, positives), `row` its labels.
    pub fn push(&mut self, rec: [u32; 4], row: &[u8]) -> Result<()> {
        if self.writer.is_none() {
            let path = self.dir.join(labels_name(self.shards.len()));
            self.writer = Some(BinWriter::create(path, "labels", DType::U8)?);
        }
        let w = self.writer.as_mut().expect("writer created above");
        w.write(row)?;
        self.tiles.push(rec);
        count_bits(row, if rec[2] == SPLIT_TEST { &mut self.pos_test } else { &mut self.pos_nontest });
        if w.len() == self.shard_tiles * self.row_bytes as u64 {
            self.close_shard()?;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let n = w.len() / self.row_bytes as u64;
            w.finish(&[n, self.row_bytes as u64])?;
            let first = self.shards.last().map_or(0, |&(f, n)| f + n);
            self.shards.push((first, n));
        }
        Ok(())
    }

    /// Close the last label shard; returns (first tile, tiles) per shard.
    pub fn finish_labels(&mut self) -> Result<Vec<(u64, u64)>> {
        self.close_shard()?;
        Ok(self.shards.clone())
    }
}

/// The validation rule of mfd-spec.md 6.3: `L = n_train / 10`, `v = floor(val_fraction * (n_train + n_test) / 10)`.
pub fn val_blocks(n_train: u64, n_test: u64, val_fraction: f64) -> (u64, u64) {
    (n_train / 10, (val_fraction * (n_train + n_test) as f64 / 10.0).floor() as u64)
}

/// Turn train tiles (column 2 = SPLIT_TRAIN) into validation ones: the train tile of rank k (genome order) is
/// validation iff `k mod L < v` (none when L = 0). Test tiles are untouched.
pub fn assign_val(tiles: &mut [[u32; 4]], val_fraction: f64) {
    let n_test = tiles.iter().filter(|t| t[2] == SPLIT_TEST).count() as u64;
    let n_train = tiles.len() as u64 - n_test;
    let (l, v) = val_blocks(n_train, n_test, val_fraction);
    if l == 0 {
        return;
    }
    for (k, t) in tiles.iter_mut().filter(|t| t[2] != SPLIT_TEST).enumerate() {
        t[2] = if (k as u64) % l < v { SPLIT_VAL } else { SPLIT_TRAIN };
    }
}

/// Write `tiles` as `tiles-NNNNN.bin` shards matching the label shards `(first, n)`.
pub fn write_tile_shards(dir: &Path, tiles: &[[u32; 4]], shards: &[(u64, u64)]) -> Result<()> {
    for (s, &(first, n)) in shards.iter().enumerate() {
        let chunk = &tiles[first as usize..(first + n) as usize];
        write_array(dir.join(tiles_name(s)), "tiles", &[n, 4], bytemuck::cast_slice::<[u32; 4], u32>(chunk))?;
    }
    Ok(())
}

/// Per class, positive validation tiles, read back from the finished label shards (val is ~5% of tiles).
pub fn val_positives(dir: &Path, tiles: &[[u32; 4]], shards: &[(u64, u64)], o: usize) -> Result<Vec<u64>> {
    let row_bytes = manifest::label_row_bytes(o);
    let mut counts = vec![0u64; o];
    for (s, &(first, n)) in shards.iter().enumerate() {
        let shard = &tiles[first as usize..(first + n) as usize];
        if !shard.iter().any(|t| t[2] == SPLIT_VAL) {
            continue;
        }
        let f = BinFile::open(dir.join(labels_name(s)), "labels", DType::U8)?;
        let rows = f.bytes();
        for (i, _) in shard.iter().enumerate().filter(|(_, t)| t[2] == SPLIT_VAL) {
            count_bits(&rows[i * row_bytes..(i + 1) * row_bytes], &mut counts);
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_split_arithmetic() {
        // The reference toy set: 10,000 tiles, 904 on test contigs -> train 8,590 / val 506 / test 904.
        let mut tiles: Vec<[u32; 4]> = (0..10_000u32)
            .map(|i| [0, i * 128, if (5_000..5_904).contains(&i) { SPLIT_TEST } else { SPLIT_TRAIN }, 1])
            .collect();
        assert_eq!(val_blocks(9_096, 904, 0.05), (909, 50));
        assign_val(&mut tiles, 0.05);
        let count = |s: u32| tiles.iter().filter(|t| t[2] == s).count();
        assert_eq!((count(SPLIT_TRAIN), count(SPLIT_VAL), count(SPLIT_TEST)), (8_590, 506, 904));
        // Ten blocks of 50 at the start of each 909-tile run, then 6 from the remainder block.
        let val_ranks: Vec<usize> = tiles
            .iter()
            .filter(|t| t[2] != SPLIT_TEST)
            .enumerate()
            .filter(|(_, t)| t[2] == SPLIT_VAL)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(&val_ranks[..3], &[0, 1, 2]);
        assert_eq!(val_ranks[50], 909);
        assert_eq!(&val_ranks[500..], &[9_090, 9_091, 9_092, 9_093, 9_094, 9_095]);
    }

    #[test]
    fn small_sets_have_no_val() {
        let mut tiles = vec![[0, 0, SPLIT_TRAIN, 1]; 9];
        assign_val(&mut tiles, 0.05);
        assert!(tiles.iter().all(|t| t[2] == SPLIT_TRAIN));
    }

    #[test]
    fn test_contig_matching_and_bits() {
        let t = vec!["chr9".to_string(), "10".to_string()];
        assert!(is_test_contig("9", &t) && is_test_contig("chr9", &t) && is_test_contig("chr10", &t));
        assert!(!is_test_contig("chr19", &t) && !is_test_contig("chr1", &t));
        let mut counts = vec![0u64; 70];
        let mut row = vec![0u8; 16];
        row[0] = 0b101;
        row[8] = 0b10; // class 65
        count_bits(&row, &mut counts);
        assert_eq!((counts[0], counts[1], counts[2], counts[65]), (1, 0, 1, 1));
    }
}
