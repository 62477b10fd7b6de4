//! Sequence generation chunk by chunk from a `ContigPlan`, and the FASTA + samtools .fai writer.
//!
//! Key decision: each chunk has its own RNG stream `(seed, contig, chunk)`, so a chunk is a pure function of the
//! plan and can be regenerated or computed in any order; memory is one chunk, never a contig. Background bases
//! are i.i.d. given the local GC probability (isochore GC, or the element's compensated GC inside elements);
//! planted sites, N gaps and IUPAC codes are then written over it.

use super::elements::ContigPlan;
use crate::error::{IoContext, Result};
use crate::rng::Rng;
use std::io::Write;
use std::path::PathBuf;

pub const TAG_SEQ: u64 = 7;
pub const LINE_BASES: u64 = 60;

/// The bases [chunk * chunk_bases, min(+chunk_bases, len)) of a contig, uppercase ASCII.
pub fn chunk_sequence(plan: &ContigPlan, seed: u64, chunk: u64, chunk_bases: u64) -> Vec<u8> {
    let lo = chunk * chunk_bases;
    let hi = (lo + chunk_bases).min(plan.len);
    let n = (hi - lo) as usize;
    // 1. Per-base GC threshold (probability scaled to 2^31).
    let mut thr = vec![0u32; n];
    let scale = (1u64 << 31) as f64;
    for s in &plan.segments {
        let (a, b) = (s.start.max(lo), s.end.min(hi));
        if a < b {
            thr[(a - lo) as usize..(b - lo) as usize].fill((s.gc * scale) as u32);
        }
    }
    let first = plan.elements.partition_point(|e| e.end <= lo);
    for e in plan.elements[first..].iter().take_while(|e| e.start < hi) {
        let (a, b) = (e.start.max(lo), e.end.min(hi));
        thr[(a - lo) as usize..(b - lo) as usize].fill((e.bg_gc * scale) as u32);
    }
    // 2. Background: 32 random bits per base, 31 for the GC draw and 1 for which of the pair.
    let mut rng = Rng::derive(seed, &[TAG_SEQ, plan.index, chunk]);
    let mut seq = vec![0u8; n];
    let mut i = 0;
    while i < n {
        let r = rng.next_u64();
        for half in [r as u32, (r >> 32) as u32] {
            if i < n {
                let gc = (half >> 1) < thr[i];
                let pick = half & 1 == 1;
                seq[i] = match (gc, pick) {
                    (true, true) => b'G',
                    (true, false) => b'C',
                    (false, true) => b'T',
                    (false, false) => b'A',
                };
                i += 1;
            }
        }
    }
    // 3. Overlays: planted instances, pre-broken sites, N gaps, IUPAC codes.
    let mut put = |start: u64, bases: &[u8]| {
        for (k, &b) in bases.iter().enumerate() {
            let x = start + k as u64;
            if (lo..hi).contains(&x) {
                seq[(x - lo) as usize] = b;
            }
        }
    };
    let first = plan.instances.partition_point(|s| s.end() <= lo);
    for s in plan.instances[first..].iter().take_while(|s| s.start < hi) {
        put(s.start, &s.bases);
    }
    let first = plan.prebroken.partition_point(|s| s.start + s.bases.len() as u64 <= lo);
    for s in plan.prebroken[first..].iter().take_while(|s| s.start < hi) {
        put(s.start, &s.bases);
    }
    for &(s, e) in &plan.gaps {
        let (a, b) = (s.max(lo), e.min(hi));
        if a < b {
            seq[(a - lo) as usize..(b - lo) as usize].fill(b'N');
        }
    }
    for &(x, code) in &plan.iupac {
        if (lo..hi).contains(&x) {
            seq[(x - lo) as usize] = code;
        }
    }
    seq
}

/// Streaming FASTA writer (60 bases per line) that records the samtools .fai fields.
pub struct FastaWriter<W: Write> {
    out: W,
    path: PathBuf,
    offset: u64,
    column: u64,
    fai: Vec<(String, u64, u64)>,
    cur: Option<(String, u64, u64)>,
}

impl<W: Write> FastaWriter<W> {
    pub fn new(out: W, path: PathBuf) -> Self {
        FastaWriter { out, path, offset: 0, column: 0, fai: Vec::new(), cur: None }
    }

    pub fn begin(&mut self, name: &str) -> Result<()> {
        self.end()?;
        let header = format!(">{name}\n");
        self.out.write_all(header.as_bytes()).at(&self.path)?;
        self.offset += header.len() as u64;
        self.cur = Some((name.to_string(), 0, self.offset));
        self.column = 0;
        Ok(())
    }

    pub fn write(&mut self, mut seq: &[u8]) -> Result<()> {
        while !seq.is_empty() {
            let take = ((LINE_BASES - self.column) as usize).min(seq.len());
            self.out.write_all(&seq[..take]).at(&self.path)?;
            self.column += take as u64;
            self.offset += take as u64;
            if let Some(c) = self.cur.as_mut() {
                c.1 += take as u64;
            }
            if self.column == LINE_BASES {
                self.out.write_all(b"\n").at(&self.path)?;
                self.offset += 1;
                self.column = 0;
            }
            seq = &seq[take..];
        }
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        if let Some(c) = self.cur.take() {
            if self.column > 0 {
                self.out.write_all(b"\n").at(&self.path)?;
                self.offset += 1;
                self.column = 0;
            }
            self.fai.push(c);
        }
        Ok(())
    }

    /// Close the last contig; returns the writer and the .fai text.
    pub fn finish(mut self) -> Result<(W, String)> {
        self.end()?;
        let mut fai = String::new();
        for (name, len, off) in &self.fai {
            fai.push_str(&format!("{name}\t{len}\t{off}\t{LINE_BASES}\t{}\n", LINE_BASES + 1));
        }
        self.out.flush().at(&self.path)?;
        Ok((self.out, fai))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::elements::plan_contig;
    use crate::data::synth::presets::preset;
    use crate::data::synth::programs::Biology;

    #[test]
    fn fasta_lines_and_fai() {
        let mut w = FastaWriter::new(Vec::new(), PathBuf::from("x.fa"));
        w.begin("a").unwrap();
        w.write(&[b'A'; 70]).unwrap();
        w.write(&[b'C'; 50]).unwrap();
        w.begin("bb").unwrap();
        w.write(&[b'G'; 5]).unwrap();
        let (bytes, fai) = w.finish().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], ">a");
        assert_eq!(lines[1].len(), 60);
        assert_eq!(lines[2].len(), 60);
        assert_eq!(lines[3], ">bb");
        assert_eq!(fai, "a\t120\t3\t60\t61\nbb\t5\t129\t60\t61\n");
        assert_eq!(&text[129..134], "GGGGG");
    }

    #[test]
    fn chunks_tile_the_contig_and_keep_plants() {
        let bio = Biology::new().unwrap();
        let p = preset("tiny").unwrap();
        let plan = plan_contig(&bio, &p, 9, 1, "chr2", 700_013);
        let mut whole = Vec::new();
        for c in 0..plan.len.div_ceil(p.chunk_bases) {
            whole.extend(chunk_sequence(&plan, 9, c, p.chunk_bases));
        }
        assert_eq!(whole.len() as u64, plan.len);
        for s in &plan.instances {
            assert_eq!(&whole[s.start as usize..s.end() as usize], &s.bases[..]);
        }
        let (gs, ge) = plan.gaps[0];
        assert!(whole[gs as usize..ge as usize].iter().all(|&b| b == b'N'));
        let acgt = whole.iter().filter(|b| b"ACGT".contains(b)).count();
        let gc = whole.iter().filter(|b| b"GC".contains(b)).count() as f64 / acgt as f64;
        assert!((0.33..0.49).contains(&gc), "{gc}");
        assert_eq!(whole, {
            let mut again = Vec::new();
            for c in 0..plan.len.div_ceil(p.chunk_bases) {
                again.extend(chunk_sequence(&plan, 9, c, p.chunk_bases));
            }
            again
        });
    }
}
