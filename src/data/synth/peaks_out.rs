//! narrowPeak output: runs of consecutive positive tiles become one peak [128a, 128b), so `mfd prepare` with
//! min_overlap 64 recovers y exactly. Peaks are buffered in memory and appended to their files in batches,
//! opening one file at a time: any O works under a 1024 open-file limit, and memory stays bounded.
//!
//! Columns: chrom, start, end, name, score = round(1000 * max p), ".", signalValue = 20 * max p,
//! pValue = -log10(1 - max p) (capped at 300), qValue = 0.8 * pValue, summit = offset of the centre of the
//! run's most probable tile. Files of every 5th experiment start with a `track` line. Held-out experiments get
//! peaks on the test contigs only.

use crate::error::{IoContext, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

const TILE: u64 = 128;

#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    end: u64,
    best_p: f32,
    best_tile: u64,
}

#[derive(Debug, Clone, Copy)]
struct Peak {
    contig: u32,
    run: Run,
}

pub struct PeakWriter {
    paths: Vec<PathBuf>,
    ids: Vec<String>,
    /// Per experiment: write peaks on this contig?
    enabled: Vec<bool>,
    held_out: Vec<bool>,
    open: Vec<Option<Run>>,
    buffer: Vec<Vec<Peak>>,
    buffered: usize,
    flush_at: usize,
    contig_names: Vec<String>,
    contig: u32,
    /// Peaks written per experiment.
    pub counts: Vec<u64>,
}

impl PeakWriter {
    /// Create every file (empty, or with a `track` line) under `dir`.
    pub fn create(dir: PathBuf, ids: &[String], held_out: &[bool], flush_at: usize) -> Result<Self> {
        std::fs::create_dir_all(&dir).at(&dir)?;
        let mut paths = Vec::with_capacity(ids.len());
        for (o, id) in ids.iter().enumerate() {
            let path = dir.join(format!("{id}.narrowPeak"));
            let header = if o % 5 == 0 {
                format!("track type=narrowPeak name=\"{id}\" description=\"mfd synth peaks\"\n")
            } else {
                String::new()
            };
            std::fs::write(&path, header).at(&path)?;
            paths.push(path);
        }
        let o = ids.len();
        Ok(PeakWriter {
            paths,
            ids: ids.to_vec(),
            enabled: vec![true; o],
            held_out: held_out.to_vec(),
            open: vec![None; o],
            buffer: vec![Vec::new(); o],
            buffered: 0,
            flush_at,
            contig_names: Vec::new(),
            contig: 0,
            counts: vec![0; o],
        })
    }

    pub fn begin_contig(&mut self, name: &str, is_test: bool) {
        self.contig_names.push(name.to_string());
        self.contig = (self.contig_names.len() - 1) as u32;
        for (en, &h) in self.enabled.iter_mut().zip(&self.held_out) {
            *en = is_test || !h;
        }
    }

    /// Feed tiles `first_tile..` (contig-local) with their (n, O) labels y and probabilities p.
    pub fn push(&mut self, first_tile: u64, y: &[u8], p: &[f32]) -> Result<()> {
        let o = self.ids.len();
        // Row-major walk ((n, O) input): tile by tile, every experiment's open run advances together.
        for (i, (yrow, prow)) in y.chunks(o).zip(p.chunks(o)).enumerate() {
            let k = first_tile + i as u64;
            for j in 0..o {
                if !self.enabled[j] {
                    continue;
                }
                match (&mut self.open[j], yrow[j]) {
                    (Some(r), 1) => {
                        r.end = k + 1;
                        if prow[j] > r.best_p {
                            r.best_p = prow[j];
                            r.best_tile = k;
                        }
                    }
                    (None, 1) => self.open[j] = Some(Run { start: k, end: k + 1, best_p: prow[j], best_tile: k }),
                    (Some(_), _) => self.close(j),
                    (None, _) => {}
                }
            }
        }
        if self.buffered >= self.flush_at {
            self.flush()?;
        }
        Ok(())
    }

    fn close(&mut self, j: usize) {
        if let Some(run) = self.open[j].take() {
            self.buffer[j].push(Peak { contig: self.contig, run });
            self.buffered += 1;
        }
    }

    /// Close runs at the end of a contig.
    pub fn end_contig(&mut self) {
        for j in 0..self.ids.len() {
            self.close(j);
        }
    }

    /// Append buffered peaks to their files (one file open at a time).
    pub fn flush(&mut self) -> Result<()> {
        for j in 0..self.ids.len() {
            if self.buffer[j].is_empty() {
                continue;
            }
            let mut text = String::with_capacity(self.buffer[j].len() * 80);
            for pk in &self.buffer[j] {
                let r = pk.run;
                self.counts[j] += 1;
                let p = r.best_p as f64;
                let pval = (-(1.0 - p).max(1e-300).log10()).min(300.0);
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}_peak{}\t{}\t.\t{:.5}\t{:.5}\t{:.5}\t{}\n",
                    self.contig_names[pk.contig as usize],
                    r.start * TILE,
                    r.end * TILE,
                    self.ids[j],
                    self.counts[j],
                    (1000.0 * p).round().clamp(0.0, 1000.0) as u32,
                    20.0 * p,
                    pval,
                    0.8 * pval,
                    (r.best_tile - r.start) * TILE + TILE / 2,
                ));
            }
            let path = &self.paths[j];
            let mut f = OpenOptions::new().append(true).open(path).at(path)?;
            f.write_all(text.as_bytes()).at(path)?;
            self.buffer[j].clear();
        }
        self.buffered = 0;
        Ok(())
    }

    /// Flush everything; returns peaks per experiment.
    pub fn finish(mut self) -> Result<Vec<u64>> {
        self.end_contig();
        self.flush()?;
        Ok(self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_and_held_out_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let ids = vec!["E1".to_string(), "E2".to_string()];
        let mut w = PeakWriter::create(dir.path().join("peaks"), &ids, &[false, true], 1).unwrap();
        w.begin_contig("chr1", false);
        // tiles 0..6, two experiments interleaved (n, O)
        let y = [0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0];
        let p = [0.1, 0.9, 0.8, 0.7, 0.9, 0.2, 0.1, 0.1, 0.6, 0.1, 0.7, 0.1];
        w.push(0, &y, &p).unwrap();
        w.push(6, &[1, 1], &[0.95, 0.9]).unwrap(); // run continues across calls
        w.end_contig();
        w.begin_contig("chr9", true);
        w.push(0, &[1, 1], &[0.5, 0.5]).unwrap();
        let counts = w.finish().unwrap();
        assert_eq!(counts, vec![3, 1]);
        let e1 = std::fs::read_to_string(dir.path().join("peaks/E1.narrowPeak")).unwrap();
        let lines: Vec<&str> = e1.lines().collect();
        assert!(lines[0].starts_with("track"));
        assert!(lines[1].starts_with("chr1\t128\t384\tE1_peak1\t900\t."), "{}", lines[1]);
        assert!(lines[2].starts_with("chr1\t512\t896\t"));
        assert!(lines[2].ends_with("\t320"), "{}", lines[2]);
        assert!(lines[3].starts_with("chr9\t0\t128\t"));
        assert_eq!(lines[3].split('\t').count(), 10);
        let e2 = std::fs::read_to_string(dir.path().join("peaks/E2.narrowPeak")).unwrap();
        assert_eq!(e2.lines().count(), 1);
        assert!(e2.starts_with("chr9\t0\t128\t"));
    }
}
