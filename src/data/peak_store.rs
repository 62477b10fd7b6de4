//! The peak store of `mfd prepare`: peaks arrive in file order, are buffered in memory up to a threshold, spill
//! to bucket files inside the dataset's temp directory, and come back one contig bucket at a time, sorted.
//!
//! Key decision: peaks are bucketed by (contig, start / `bucket_bp`). A bucket holds every peak that *starts* in
//! its range, so sorting each bucket and reading the buckets of a contig in order yields that contig's peaks sorted
//! by (start, end, class), exactly the order the label sweep needs. Memory is then at most `limit` buffered peaks
//! while reading and one bucket while labelling (~2 M peaks, 26 MB, per 8 Mb at genome-preset density), whatever
//! the total number of peaks; the disk holds 12 bytes per spilled peak until its bucket is read. Spill files are raw
//! native-endian records (they never leave the process) and are deleted as soon as they are read.

use crate::data::peaks::Peak;
use crate::error::{IoContext, MfdError, Result};
use rayon::slice::ParallelSliceMut;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bucket width in bp (8 Mb: ~30 buckets on chr1).
pub const BUCKET_BP: u64 = 1 << 23;
/// Default peaks buffered in memory before a spill (16 M peaks = 192 MB).
pub const DEFAULT_SPILL_PEAKS: u64 = 1 << 24;

/// Per-(contig, bucket) peaks, partly in memory and partly in `dir/c<contig>-b<bucket>.bin`.
pub struct PeakStore {
    dir: PathBuf,
    bucket_bp: u64,
    limit: u64,
    /// (contig, bucket) -> buffered peaks.
    mem: Vec<Vec<Vec<Peak>>>,
    /// Peaks buffered in `mem`, all buckets.
    held: u64,
    /// (contig, bucket) -> peaks in its spill file.
    on_disk: Vec<Vec<u64>>,
    /// Spills done so far.
    pub spills: u64,
}

impl PeakStore {
    /// A store for contigs of `lengths` bp, spilling to `dir` (created on the first spill) once `limit` peaks are
    /// buffered (`limit` >= 1).
    pub fn new(dir: PathBuf, lengths: &[u64], bucket_bp: u64, limit: u64) -> Self {
        // A peak may start at the contig end (an empty peak), hence `len / bucket_bp + 1` buckets.
        let buckets = |len: u64| (len / bucket_bp + 1) as usize;
        PeakStore {
            dir,
            bucket_bp,
            limit: limit.max(1),
            mem: lengths.iter().map(|&l| vec![Vec::new(); buckets(l)]).collect(),
            held: 0,
            on_disk: lengths.iter().map(|&l| vec![0; buckets(l)]).collect(),
            spills: 0,
        }
    }

    /// Add one peak of `contig` (its start lies within the contig, checked by the parser).
    pub fn push(&mut self, contig: u32, p: Peak) -> Result<()> {
        let b = (p.start as u64 / self.bucket_bp) as usize;
        self.mem[contig as usize][b].push(p);
        self.held += 1;
        if self.held >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn path(&self, c: usize, b: usize) -> PathBuf {
        self.dir.join(format!("c{c}-b{b}.bin"))
    }

    /// Append every non-empty buffer to its bucket file and free the buffers.
    fn spill(&mut self) -> Result<()> {
        if self.spills == 0 {
            std::fs::create_dir_all(&self.dir).at(&self.dir)?;
        }
        for c in 0..self.mem.len() {
            for b in 0..self.mem[c].len() {
                if self.mem[c][b].is_empty() {
                    continue;
                }
                // Taken, not cleared: the capacity is freed, so memory stays bounded by `limit`.
                let v = std::mem::take(&mut self.mem[c][b]);
                let path = self.path(c, b);
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).at(&path)?;
                f.write_all(bytemuck::cast_slice(&v)).at(&path)?;
                self.on_disk[c][b] += v.len() as u64;
            }
        }
        self.held = 0;
        self.spills += 1;
        Ok(())
    }

    /// Number of buckets of contig `c`.
    pub fn buckets(&self, c: usize) -> usize {
        self.mem[c].len()
    }

    /// All peaks of bucket `b` of contig `c`, sorted; removes them from the store (and its spill file from disk).
    pub fn take_bucket(&mut self, c: usize, b: usize) -> Result<Vec<Peak>> {
        let mem = std::mem::take(&mut self.mem[c][b]);
        self.held -= mem.len() as u64;
        let n = std::mem::take(&mut self.on_disk[c][b]) as usize;
        let mut out = mem;
        if n > 0 {
            let path = self.path(c, b);
            let mut disk = vec![Peak { start: 0, end: 0, class: 0 }; n];
            let mut f = std::fs::File::open(&path).at(&path)?;
            f.read_exact(bytemuck::cast_slice_mut(&mut disk)).at(&path)?;
            if f.read(&mut [0u8; 1]).at(&path)? != 0 {
                return Err(MfdError::other(format!("{}: spill file longer than {n} peaks", path.display())));
            }
            drop(f);
            std::fs::remove_file(&path).at(&path)?;
            disk.extend_from_slice(&out);
            out = disk;
        }
        out.par_sort_unstable();
        Ok(out)
    }

    /// The buckets of contig `c` in order, as the batch source `peaks::label_contig` reads.
    pub fn contig_batches(&mut self, c: usize) -> impl FnMut() -> Result<Option<Vec<Peak>>> + '_ {
        let mut b = 0usize;
        move || {
            if b == self.buckets(c) {
                return Ok(None);
            }
            b += 1;
            self.take_bucket(c, b - 1).map(Some)
        }
    }

    /// Remove the spill directory (when something spilled).
    pub fn close(self) -> Result<()> {
        remove_dir(&self.dir, self.spills)
    }
}

fn remove_dir(dir: &Path, spills: u64) -> Result<()> {
    if spills > 0 && dir.exists() {
        std::fs::remove_dir_all(dir).at(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random_peaks(rng: &mut Rng, lengths: &[u64], n: usize) -> Vec<(u32, Peak)> {
        (0..n)
            .map(|_| {
                let c = rng.below(lengths.len() as u64) as u32;
                let len = lengths[c as usize];
                let s = rng.below(len + 1);
                let e = s + rng.below(len - s + 1).min(700);
                (c, Peak { start: s as u32, end: e as u32, class: rng.below(5) as u32 })
            })
            .collect()
    }

    #[test]
    fn spilled_buckets_read_back_in_sorted_order() {
        let lengths = [5_000u64, 1_024, 3];
        let mut rng = Rng::new(3);
        let peaks = random_peaks(&mut rng, &lengths, 3_000);
        let dir = tempfile::tempdir().unwrap();
        for (bucket, limit) in [(1024u64, 1u64), (1024, 97), (1 << 23, 500), (256, u64::MAX)] {
            let spill = dir.path().join(format!("spill-{bucket}-{limit}"));
            let mut store = PeakStore::new(spill.clone(), &lengths, bucket, limit);
            for &(c, p) in &peaks {
                store.push(c, p).unwrap();
            }
            assert_eq!(store.spills > 0, limit < 3_000, "bucket {bucket} limit {limit}");
            for c in 0..lengths.len() {
                let mut want: Vec<Peak> = peaks.iter().filter(|x| x.0 == c as u32).map(|x| x.1).collect();
                want.sort_unstable();
                let mut got = Vec::new();
                let mut next = store.contig_batches(c);
                while let Some(batch) = next().unwrap() {
                    got.extend(batch);
                }
                assert_eq!(got, want, "contig {c}, bucket {bucket}, limit {limit}");
            }
            // Every spill file was deleted as it was read; close removes the directory.
            if spill.exists() {
                assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
            }
            store.close().unwrap();
            assert!(!spill.exists());
        }
    }
}
