//! The per-contig plan: isochore GC segments, N gaps, regulatory elements with planted motif instances,
//! "pre-broken" motif sites (for motif-creating variants), IUPAC codes and planned variant sites.
//!
//! Key decisions: the plan is small (a few hundred bytes per element) and a pure function of (seed, contig),
//! so the sequence itself can be generated chunk by chunk later without ever holding a contig. Planting is
//! GC-neutral: the background bases of an element are drawn with a GC probability chosen so that the element's
//! expected GC (motif bases included) equals its isochore's GC.

use super::presets::Preset;
use super::programs::Biology;
use crate::rng::Rng;

pub const TAG_SEGMENTS: u64 = 1;
pub const TAG_GAPS: u64 = 2;
pub const TAG_ELEMENTS: u64 = 3;
pub const TAG_PREBROKEN: u64 = 4;
pub const TAG_IUPAC: u64 = 5;
pub const TAG_VARIANTS: u64 = 6;

/// Isochore GC ~ Beta(a, b) with mean 0.41 and sd 0.05.
const GC_BETA: (f64, f64) = (39.26, 56.50);
/// Minimum distance (bp) of GC-only and neutral variants, IUPAC codes and pre-broken sites from any motif.
pub const CLEAR_BP: u64 = 20;
/// Nominal element length (bp).
const ELEMENT_LEN: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKind {
    /// Carries the program motifs of its active tissues (and sometimes shared motifs).
    Active,
    /// Carries only shared motifs (CTCF, NRF1): active everywhere.
    Shared,
    /// Carries only decoy motifs (weight 0 in every tissue).
    Decoy,
    /// No motif at all (GC-compensated background only).
    Empty,
}

impl ElementKind {
    pub fn name(self) -> &'static str {
        match self {
            ElementKind::Active => "active",
            ElementKind::Shared => "shared",
            ElementKind::Decoy => "decoy",
            ElementKind::Empty => "empty",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub gc: f64,
}

#[derive(Debug, Clone)]
pub struct Element {
    pub start: u64,
    pub end: u64,
    pub kind: ElementKind,
    /// Tissues whose program motifs were planted (sorted).
    pub tissues: Vec<usize>,
    /// GC probability of the element's background bases (GC compensation).
    pub bg_gc: f64,
}

/// A planted motif occurrence. `bases` are on the genome's + strand.
#[derive(Debug, Clone)]
pub struct Instance {
    pub start: u64,
    pub motif: usize,
    pub minus: bool,
    pub bases: Vec<u8>,
    /// PWM log-odds score (nats) of the sampled site against the background.
    pub score: f32,
    /// Element index within the contig.
    pub element: usize,
}

impl Instance {
    pub fn end(&self) -> u64 {
        self.start + self.bases.len() as u64
    }
    /// Integer centre used for tile counting.
    pub fn center(&self) -> u64 {
        self.start + self.bases.len() as u64 / 2
    }
}

/// A motif site with its most informative base replaced by the least likely one: not an instance (not counted),
/// but one SNV (`pos` -> `fix`) turns it into one.
#[derive(Debug, Clone)]
pub struct PreBroken {
    pub start: u64,
    pub motif: usize,
    pub bases: Vec<u8>,
    pub pos: u64,
    pub fix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantClass {
    MotifBreaking,
    MotifCreating,
    GcOnly,
    Neutral,
}

impl VariantClass {
    pub fn name(self) -> &'static str {
        match self {
            VariantClass::MotifBreaking => "motif_breaking",
            VariantClass::MotifCreating => "motif_creating",
            VariantClass::GcOnly => "gc_only",
            VariantClass::Neutral => "neutral",
        }
    }
}

/// A variant site chosen at plan time; GC-only and neutral sites get their final base in the chunk pass.
#[derive(Debug, Clone)]
pub struct PlannedVariant {
    pub pos: u64,
    pub class: VariantClass,
    /// Motif broken or created.
    pub motif: Option<usize>,
    /// Alternative base when known at plan time (breaking, creating).
    pub alt: Option<u8>,
}

#[derive(Debug, Clone)]
pub struct ContigPlan {
    pub index: u64,
    pub name: String,
    pub len: u64,
    /// Tiles on the grid: floor(len / 128) (a partial last tile is not labelled).
    pub n_tiles: u64,
    pub segments: Vec<Segment>,
    /// Sorted, disjoint N runs [start, end).
    pub gaps: Vec<(u64, u64)>,
    pub elements: Vec<Element>,
    /// Sorted by start.
    pub instances: Vec<Instance>,
    pub prebroken: Vec<PreBroken>,
    /// Sorted (position, IUPAC letter).
    pub iupac: Vec<(u64, u8)>,
    /// Sorted by position.
    pub variants: Vec<PlannedVariant>,
}

pub fn complement(b: u8) -> u8 {
    match b {
        b'A' => b'T',
        b'C' => b'G',
        b'G' => b'C',
        b'T' => b'A',
        other => other,
    }
}

/// Sorted, merged "keep clear" intervals with an overlap query.
#[derive(Debug, Default)]
pub struct Mask {
    iv: Vec<(u64, u64)>,
}

impl Mask {
    pub fn new(mut iv: Vec<(u64, u64)>) -> Self {
        iv.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(iv.len());
        for (s, e) in iv {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        Mask { iv: out }
    }

    /// True when [lo, hi) touches no interval.
    pub fn is_clear(&self, lo: u64, hi: u64) -> bool {
        let i = self.iv.partition_point(|&(_, e)| e <= lo);
        self.iv.get(i).is_none_or(|&(s, _)| s >= hi)
    }
}

/// One site of `motif` drawn column by column from its PFM sharpened to the power `sharpness` (1 = the JASPAR
/// frequencies; larger values move the draws toward the consensus).
fn sample_site(bio: &Biology, motif: usize, minus: bool, sharpness: f64, rng: &mut Rng) -> Vec<u8> {
    let mut bases: Vec<u8> = bio.probs[motif]
        .iter()
        .map(|p| {
            let w = p.map(|x| x.powf(sharpness));
            b"ACGT"[rng.categorical(&w)]
        })
        .collect();
    if minus {
        bases.reverse();
        for b in &mut bases {
            *b = complement(*b);
        }
    }
    bases
}

/// Log-odds (nats) of + strand `bases` for `motif` read on its own strand.
fn site_score(bio: &Biology, motif: usize, bases: &[u8], minus: bool) -> f32 {
    let bg = [0.295, 0.205, 0.205, 0.295];
    let lo = bio.motifs[motif].log_odds(bg);
    let n = bases.len();
    let mut s = 0.0;
    for (j, row) in lo.iter().enumerate() {
        let b = if minus { complement(bases[n - 1 - j]) } else { bases[j] };
        let k = b"ACGT".iter().position(|&x| x == b).unwrap_or(0);
        s += row[k];
    }
    s as f32
}

/// Column of highest information content of a motif.
pub fn best_column(bio: &Biology, motif: usize) -> usize {
    let ic = bio.motifs[motif].information();
    (0..ic.len()).fold(0, |best, j| if ic[j] > ic[best] { j } else { best })
}

fn gc_count(bases: &[u8]) -> usize {
    bases.iter().filter(|&&b| b == b'G' || b == b'C').count()
}

fn segments(len: u64, rng: &mut Rng) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let end = (pos + rng.range_i64(50_000, 300_000) as u64).min(len);
        out.push(Segment { start: pos, end, gc: rng.beta(GC_BETA.0, GC_BETA.1) });
        pos = end;
    }
    out
}

fn gaps(p: &Preset, len: u64, rng: &mut Rng) -> Vec<(u64, u64)> {
    let mut g = Vec::new();
    if p.end_n > 0 && len > 4 * p.end_n {
        g.push((0, p.end_n));
        g.push((len - p.end_n, len));
    }
    let n = (len / p.gap_every).max(1);
    for _ in 0..n {
        let glen = (rng.range_i64(p.gap_len.0 as i64, p.gap_len.1 as i64) as u64).min(len / 10);
        let start = len / 10 + rng.below((len * 8 / 10).saturating_sub(glen).max(1));
        g.push((start, start + glen));
    }
    Mask::new(g).iv
}

fn segment_gc(segs: &[Segment], pos: u64) -> f64 {
    let i = segs.partition_point(|s| s.end <= pos).min(segs.len() - 1);
    segs[i].gc
}

/// Motifs to plant in one element of `kind` active in `tissues`.
fn element_motifs(bio: &Biology, kind: ElementKind, tissues: &[usize], rng: &mut Rng) -> Vec<usize> {
    let mut ms = Vec::new();
    let pick = |v: &[usize], rng: &mut Rng| v[rng.below(v.len() as u64) as usize];
    match kind {
        ElementKind::Active => {
            for &t in tissues {
                for _ in 0..rng.range_i64(1, 3) {
                    ms.push(pick(&bio.programs[t], rng));
                }
            }
            if rng.bernoulli(0.3) {
                ms.push(pick(&bio.shared, rng));
            }
        }
        ElementKind::Shared => {
            for _ in 0..rng.range_i64(1, 2) {
                ms.push(pick(&bio.shared, rng));
            }
        }
        ElementKind::Decoy => {
            for _ in 0..rng.range_i64(1, 3) {
                ms.push(pick(&bio.decoys, rng));
            }
        }
        ElementKind::Empty => {}
    }
    ms
}

/// Plan one contig (`index` = FASTA order; the pilot uses its own index).
pub fn plan_contig(bio: &Biology, p: &Preset, seed: u64, index: u64, name: &str, len: u64) -> ContigPlan {
    let segs = segments(len, &mut Rng::derive(seed, &[TAG_SEGMENTS, index]));
    let gaps = gaps(p, len, &mut Rng::derive(seed, &[TAG_GAPS, index]));
    let gap_mask = Mask::new(gaps.iter().map(|&(s, e)| (s.saturating_sub(100), e + 100)).collect());

    // 1. Elements with planted instances.
    let mut rng = Rng::derive(seed, &[TAG_ELEMENTS, index]);
    let n_tissues = bio.tissues.len() as u64;
    let mut elements = Vec::new();
    let mut instances: Vec<Instance> = Vec::new();
    let mut pos = p.element_spacing / 2;
    loop {
        pos += (p.element_spacing as f64 * rng.uniform(0.5, 1.5)) as u64;
        let u = rng.f64();
        let kind = match u {
            _ if u < 0.60 => ElementKind::Active,
            _ if u < 0.70 => ElementKind::Shared,
            _ if u < 0.85 => ElementKind::Decoy,
            _ => ElementKind::Empty,
        };
        let mut tissues = Vec::new();
        if kind == ElementKind::Active {
            let k = [1, 1, 1, 2, 2, 3][rng.below(6) as usize];
            while tissues.len() < k {
                let t = rng.below(n_tissues) as usize;
                if !tissues.contains(&t) {
                    tissues.push(t);
                }
            }
            tissues.sort_unstable();
        }
        let motifs = element_motifs(bio, kind, &tissues, &mut rng);
        let need: u64 = motifs.iter().map(|&m| bio.motifs[m].len() as u64 + 6).sum();
        let elen = ELEMENT_LEN.max(need + 60);
        if pos + elen + 1_000 > len {
            break;
        }
        if !gap_mask.is_clear(pos, pos + elen) {
            continue;
        }
        let e_idx = elements.len();
        // Place instances left to right at random spacings inside the element (no overlaps by construction).
        let slack = elen - 20 - need;
        let mut cuts: Vec<u64> = (0..motifs.len()).map(|_| rng.below(slack + 1)).collect();
        cuts.sort_unstable();
        let mut cursor = pos + 10;
        let mut prev_cut = 0;
        let mut motif_gc = 0usize;
        let mut motif_bases = 0usize;
        for (m, cut) in motifs.iter().zip(cuts) {
            cursor += cut - prev_cut + 3;
            prev_cut = cut;
            let minus = rng.bernoulli(0.5);
            let bases = sample_site(bio, *m, minus, p.site_sharpness, &mut rng);
            motif_gc += gc_count(&bases);
            motif_bases += bases.len();
            let score = site_score(bio, *m, &bases, minus);
            let inst = Instance { start: cursor, motif: *m, minus, bases, score, element: e_idx };
            cursor = inst.end() + 3;
            instances.push(inst);
        }
        // GC compensation: the element's expected GC equals its isochore's GC.
        let g = segment_gc(&segs, pos);
        let bg_len = (elen as usize - motif_bases) as f64;
        let bg_gc = ((g * elen as f64 - motif_gc as f64) / bg_len).clamp(0.05, 0.95);
        elements.push(Element { start: pos, end: pos + elen, kind, tissues, bg_gc });
        pos += elen;
    }
    instances.sort_by_key(|i| i.start);

    let n_tiles = len / 128;
    let grid_end = n_tiles * 128;
    let mut clear: Vec<(u64, u64)> = gaps.iter().map(|&(s, e)| (s.saturating_sub(CLEAR_BP), e + CLEAR_BP)).collect();
    clear.extend(elements.iter().map(|e| (e.start.saturating_sub(CLEAR_BP), e.end + CLEAR_BP)));
    clear.push((grid_end.saturating_sub(300), u64::MAX));
    let total_len: u64 = p.contigs.iter().map(|c| c.1).sum();
    let share = |n: usize| ((n as u64 * len).div_ceil(total_len)) as usize;

    // 2. Pre-broken sites for motif-creating variants, in element-free background.
    let mut rng = Rng::derive(seed, &[TAG_PREBROKEN, index]);
    let weighted: Vec<usize> = bio.programs.iter().flatten().chain(bio.shared.iter()).copied().collect();
    let mut prebroken: Vec<PreBroken> = Vec::new();
    let mut tries = 0;
    while prebroken.len() < share(p.variants_per_class) && tries < 100_000 && grid_end > 10_000 {
        tries += 1;
        let m = weighted[rng.below(weighted.len() as u64) as usize];
        let mlen = bio.motifs[m].len() as u64;
        let start = rng.below(grid_end - mlen - 100) + 50;
        let mask = Mask::new(clear.clone());
        if !mask.is_clear(start.saturating_sub(CLEAR_BP), start + mlen + CLEAR_BP) {
            continue;
        }
        let minus = rng.bernoulli(0.5);
        let mut bases = sample_site(bio, m, minus, p.site_sharpness, &mut rng);
        let j = best_column(bio, m);
        let probs = &bio.probs[m][j];
        let (worst, best) = (argmin(probs), argmax(probs));
        let off = if minus { mlen as usize - 1 - j } else { j };
        let orient = |k: usize| if minus { complement(b"ACGT"[k]) } else { b"ACGT"[k] };
        bases[off] = orient(worst);
        prebroken.push(PreBroken { start, motif: m, bases, pos: start + off as u64, fix: orient(best) });
        clear.push((start.saturating_sub(CLEAR_BP), start + mlen + CLEAR_BP));
    }
    prebroken.sort_by_key(|s| s.start);

    // 3. IUPAC codes, away from elements, sites and gaps.
    let mut rng = Rng::derive(seed, &[TAG_IUPAC, index]);
    let mask = Mask::new(clear.clone());
    let mut iupac = Vec::new();
    for _ in 0..p.iupac_per_contig * 20 {
        if iupac.len() >= p.iupac_per_contig || grid_end < 1_000 {
            break;
        }
        let x = rng.below(grid_end);
        if mask.is_clear(x.saturating_sub(CLEAR_BP), x + CLEAR_BP) {
            iupac.push((x, b"RYSWKMBDHV"[rng.below(10) as usize]));
        }
    }
    iupac.sort_unstable();
    iupac.dedup_by_key(|x| x.0);
    clear.extend(iupac.iter().map(|&(x, _)| (x.saturating_sub(CLEAR_BP), x + CLEAR_BP)));

    // 4. Variant sites.
    let mut rng = Rng::derive(seed, &[TAG_VARIANTS, index]);
    let mut variants = Vec::new();
    let breakable: Vec<&Instance> = instances.iter().filter(|i| weighted.contains(&i.motif)).collect();
    let mut used = std::collections::HashSet::new();
    for _ in 0..share(p.variants_per_class) * 4 {
        if variants.len() >= share(p.variants_per_class) || breakable.is_empty() {
            break;
        }
        let inst = breakable[rng.below(breakable.len() as u64) as usize];
        let j = best_column(bio, inst.motif);
        let off = if inst.minus { inst.bases.len() - 1 - j } else { j };
        let pos = inst.start + off as u64;
        if pos >= grid_end || !used.insert(pos) {
            continue;
        }
        // Least likely base on the motif's strand (second least if that is the sampled base).
        let probs = bio.probs[inst.motif][j];
        let reff = if inst.minus { complement(inst.bases[off]) } else { inst.bases[off] };
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by(|&a, &b| probs[a].total_cmp(&probs[b]));
        let k = order.into_iter().find(|&k| b"ACGT"[k] != reff).unwrap_or(0);
        let alt = if inst.minus { complement(b"ACGT"[k]) } else { b"ACGT"[k] };
        variants.push(PlannedVariant {
            pos,
            class: VariantClass::MotifBreaking,
            motif: Some(inst.motif),
            alt: Some(alt),
        });
    }
    for s in &prebroken {
        used.insert(s.pos);
        variants.push(PlannedVariant {
            pos: s.pos,
            class: VariantClass::MotifCreating,
            motif: Some(s.motif),
            alt: Some(s.fix),
        });
    }
    // GC-only and neutral: positions at least CLEAR_BP + 32 from anything (the chunk pass may step up to 32 bp).
    let mut inst_clear = clear.clone();
    inst_clear.extend(instances.iter().map(|i| (i.start.saturating_sub(CLEAR_BP), i.end() + CLEAR_BP)));
    let mask = Mask::new(inst_clear);
    for class in [VariantClass::GcOnly, VariantClass::Neutral] {
        let mut n = 0;
        for _ in 0..share(p.variants_per_class) * 50 {
            if n >= share(p.variants_per_class) || grid_end < 1_000 {
                break;
            }
            let x = rng.below(grid_end - 64);
            if mask.is_clear(x.saturating_sub(CLEAR_BP), x + 32 + CLEAR_BP) && used.insert(x) {
                variants.push(PlannedVariant { pos: x, class, motif: None, alt: None });
                n += 1;
            }
        }
    }
    variants.sort_by_key(|v| v.pos);

    ContigPlan {
        index,
        name: name.to_string(),
        len,
        n_tiles,
        segments: segs,
        gaps,
        elements,
        instances,
        prebroken,
        iupac,
        variants,
    }
}

fn argmin(p: &[f64; 4]) -> usize {
    (0..4).fold(0, |b, k| if p[k] < p[b] { k } else { b })
}

fn argmax(p: &[f64; 4]) -> usize {
    (0..4).fold(0, |b, k| if p[k] > p[b] { k } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::presets::preset;

    #[test]
    fn mask_queries() {
        let m = Mask::new(vec![(10, 20), (15, 30), (50, 60)]);
        assert!(m.is_clear(0, 10));
        assert!(!m.is_clear(0, 11));
        assert!(m.is_clear(30, 50));
        assert!(!m.is_clear(29, 31));
        assert!(m.is_clear(60, 100));
    }

    #[test]
    fn plan_is_consistent() {
        let bio = Biology::new().unwrap();
        let p = preset("tiny").unwrap();
        let plan = plan_contig(&bio, &p, 5, 0, "chr1", 800_037);
        assert!(plan.elements.len() > 300, "{}", plan.elements.len());
        for w in plan.instances.windows(2) {
            assert!(w[0].end() <= w[1].start, "instances overlap");
        }
        let gaps = Mask::new(plan.gaps.clone());
        for i in &plan.instances {
            assert!(gaps.is_clear(i.start, i.end()));
            let e = &plan.elements[i.element];
            assert!(e.start <= i.start && i.end() <= e.end);
        }
        let n_break = plan.variants.iter().filter(|v| v.class == VariantClass::MotifBreaking).count();
        assert!(n_break > 5);
        // Same inputs, same plan.
        let again = plan_contig(&bio, &p, 5, 0, "chr1", 800_037);
        assert_eq!(again.instances.len(), plan.instances.len());
        assert_eq!(again.variants.len(), plan.variants.len());
    }
}
