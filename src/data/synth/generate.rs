//! The generation pass: calibrate (on the data, or on a pilot contig for `genome`), then stream every contig chunk by chunk, writing FASTA,
//! tile factors, labels, peaks, truth BEDs and variants as each chunk is made.
//!
//! Key decision: one pass, bounded memory. A chunk is seen with 128 bp of its neighbours (the tile windows
//! reach 64 bp out), so the next chunk is generated one step ahead and kept; nothing larger than a chunk, its
//! (tiles, O) label block and the buffered peaks is ever held.

use super::elements::{plan_contig, ContigPlan, ElementKind};
use super::experiments::{make_experiments, write_metadata, Experiment, Lab};
use super::factors::{tile_factors, FactorNorm, Layout, SeqView, KMERS, TILE, TN5};
use super::genome::{chunk_sequence, FastaWriter};
use super::labels::LabelModel;
use super::peaks_out::PeakWriter;
use super::presets::Preset;
use super::programs::Biology;
use super::realseq::{self, RealGenome};
use super::realvar::resolve_real;
use super::scan::Scanner;
use super::variants::{finalize, resolve, Variant};
use crate::data::binfile::{write_atomic, BinWriter, DType};
use crate::error::{IoContext, MfdError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::Path;

/// Plan index of the unwritten calibration contig.
pub const PILOT_INDEX: u64 = 1 << 32;
pub const TEST_CONTIGS: [&str; 2] = ["chr9", "chr10"];

/// What a run produced (printed by the CLI, used by tests).
#[derive(Debug, Clone)]
pub struct Summary {
    pub n_grid_tiles: u64,
    pub bases: u64,
    /// Positive rate of the generative y per experiment over all grid tiles.
    pub rates: Vec<f64>,
    pub peaks: Vec<u64>,
    pub n_variants: u64,
    pub held_out: Vec<String>,
}

/// The real-sequence side of a run (`chr20` presets): the windows, in preset contig order, and the PWM scanner
/// that makes their motif factors.
pub struct Real {
    pub genome: RealGenome,
    pub scanner: Scanner,
}

impl Real {
    fn load(p: &Preset, bio: &Biology) -> Result<Option<Real>> {
        let Some(rule) = &p.real else { return Ok(None) };
        if let Some((name, _)) = p.contigs.iter().find(|c| c.1 > p.chunk_bases) {
            // The scan and the variants see a whole contig as one chunk.
            return Err(MfdError::config("preset", format!("contig {name} is longer than chunk_bases")));
        }
        let genome = realseq::load(&realseq::fasta_path(p.fasta.as_deref()), &p.contigs, rule)?;
        Ok(Some(Real { genome, scanner: Scanner::new(&bio.motifs) }))
    }
}

/// The plan of contig `index`: planned elements and variants for generated sequence, an empty plan (no
/// elements, instances, gaps or IUPAC codes) for real sequence.
fn contig_plan(bio: &Biology, p: &Preset, seed: u64, index: u64, name: &str, len: u64, real: bool) -> ContigPlan {
    if !real {
        return plan_contig(bio, p, seed, index, name, len);
    }
    ContigPlan {
        index,
        name: name.to_string(),
        len,
        n_tiles: len / TILE,
        segments: Vec::new(),
        gaps: Vec::new(),
        elements: Vec::new(),
        instances: Vec::new(),
        prebroken: Vec::new(),
        iupac: Vec::new(),
        variants: Vec::new(),
    }
}

/// Factor rows of `tiles`: planted counts, or PWM scan strengths on real sequence.
fn factor_rows(lay: Layout, plan: &ContigPlan, view: SeqView, tiles: Range<u64>, real: Option<&Real>) -> Vec<f32> {
    let mut rows = tile_factors(lay, plan, view, tiles.clone());
    if let Some(r) = real {
        r.scanner.fill(lay, view, tiles, plan.len, &mut rows);
    }
    rows
}

/// Call `f(chunk_bases, view, tiles)` for every chunk of a contig; `view` covers the chunk +-128 bp. The bases
/// come from `seq` (real sequence) when given, else from the plan.
fn for_each_chunk(
    plan: &ContigPlan,
    seed: u64,
    chunk_bases: u64,
    seq: Option<&[u8]>,
    mut f: impl FnMut(&[u8], SeqView, Range<u64>) -> Result<()>,
) -> Result<()> {
    let n_chunks = plan.len.div_ceil(chunk_bases);
    let chunk = |c: u64| match seq {
        Some(s) => {
            let lo = (c * chunk_bases) as usize;
            s[lo..(lo + chunk_bases as usize).min(s.len())].to_vec()
        }
        None => chunk_sequence(plan, seed, c, chunk_bases),
    };
    let mut prev_tail: Vec<u8> = Vec::new();
    let mut cur = chunk(0);
    let mut ext = Vec::with_capacity(chunk_bases as usize + 2 * TILE as usize);
    for c in 0..n_chunks {
        let next = if c + 1 < n_chunks { chunk(c + 1) } else { Vec::new() };
        let lo = c * chunk_bases;
        let hi = lo + cur.len() as u64;
        ext.clear();
        ext.extend_from_slice(&prev_tail);
        ext.extend_from_slice(&cur);
        ext.extend_from_slice(&next[..next.len().min(TILE as usize)]);
        let view = SeqView { seq: &ext, lo: lo - prev_tail.len() as u64 };
        let tiles = lo / TILE..hi.div_ceil(TILE).min(plan.n_tiles);
        f(&cur, view, tiles)?;
        prev_tail = cur[cur.len().saturating_sub(TILE as usize)..].to_vec();
        cur = next;
    }
    Ok(())
}

fn buffered(path: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(1 << 20, File::create(path).at(path)?))
}

/// At most this many tiles (evenly strided) enter the b_o bisection.
const CALIBRATION_TILES: usize = 150_000;

/// Calibrate normalisation constants and b_o on the pilot contig, or on the dataset's own contigs.
fn calibrate(
    bio: &Biology,
    p: &Preset,
    seed: u64,
    lay: Layout,
    exps: &mut [Experiment],
    real: Option<&Real>,
) -> Result<FactorNorm> {
    let plans: Vec<ContigPlan> = match p.pilot_bases {
        Some(n) => vec![plan_contig(bio, p, seed, PILOT_INDEX, "pilot", n)],
        None => p
            .contigs
            .iter()
            .enumerate()
            .map(|(i, (n, l))| contig_plan(bio, p, seed, i as u64, n, *l, real.is_some()))
            .collect(),
    };
    let total_tiles: u64 = plans.iter().map(|pl| pl.n_tiles).sum();
    let stride = (total_tiles as usize).div_ceil(CALIBRATION_TILES).max(1);
    let f = lay.width();
    let mut rows = Vec::new();
    let mut seen = 0usize;
    for (ci, plan) in plans.iter().enumerate() {
        let seq = real.map(|r| &r.genome.seqs[ci][..]);
        for_each_chunk(plan, seed, p.chunk_bases, seq, |_, view, tiles| {
            for row in factor_rows(lay, plan, view, tiles, real).chunks(f) {
                if seen.is_multiple_of(stride) {
                    rows.extend_from_slice(row);
                }
                seen += 1;
            }
            Ok(())
        })?;
    }
    let norm = FactorNorm::fit(lay, &rows);
    let b = LabelModel { lay, norm: norm.clone(), w: &bio.w, exps, temperature: p.temperature }.calibrate(&rows);
    for (e, b) in exps.iter_mut().zip(b) {
        e.b = b;
    }
    Ok(norm)
}

/// Dense (tiles, O) truth matrices, written for tiny and bench.
struct Dense {
    z_bio: BinWriter,
    z_tech: BinWriter,
    p: BinWriter,
    y: BinWriter,
}

/// Write the whole dataset into `dir` (which must exist and be empty).
pub fn generate(p: &Preset, seed: u64, dir: &Path) -> Result<Summary> {
    let bio = Biology::new()?;
    let lay = Layout { n_motifs: bio.n_motifs() };
    let (labs, mut exps) = make_experiments(&bio, p, seed);
    let real = Real::load(p, &bio)?;
    let real = real.as_ref();
    let norm = calibrate(&bio, p, seed, lay, &mut exps, real)?;
    let model = LabelModel { lay, norm: norm.clone(), w: &bio.w, exps: &exps, temperature: p.temperature };
    let o = exps.len();
    let relevant: Vec<usize> = (0..bio.n_motifs()).filter(|&m| bio.w.iter().any(|r| r[m] > 0.0)).collect();
    let truth = dir.join("truth");
    std::fs::create_dir_all(&truth).at(&truth)?;

    let fa_path = dir.join("genome.fa");
    let mut fasta = FastaWriter::new(buffered(&fa_path)?, fa_path.clone());
    let mut factors = BinWriter::create(truth.join("tile_factors.bin"), "tfactors", DType::F32)?;
    let mut dense = if p.dense_truth {
        Some(Dense {
            z_bio: BinWriter::create(truth.join("z_bio.bin"), "zbio", DType::F32)?,
            z_tech: BinWriter::create(truth.join("z_tech.bin"), "ztech", DType::F32)?,
            p: BinWriter::create(truth.join("p.bin"), "prob", DType::F32)?,
            y: BinWriter::create(truth.join("y.bin"), "ylabel", DType::U8)?,
        })
    } else {
        None
    };
    let inst_path = truth.join("motif_instances.bed");
    let mut inst_bed = buffered(&inst_path)?;
    let el_path = truth.join("elements.bed");
    let mut el_bed = buffered(&el_path)?;
    let ids: Vec<String> = exps.iter().map(|e| e.id.clone()).collect();
    let held: Vec<bool> = exps.iter().map(|e| e.held_out).collect();
    let mut peaks = PeakWriter::create(dir.join("peaks"), &ids, &held, p.peak_flush)?;
    let mut deltas = BinWriter::create(truth.join("variant_deltas.bin"), "vdeltas", DType::F32)?;
    let mut vcf_body = String::new();
    let mut vtsv = String::from(
        "id\tchrom\tpos\tref\talt\tclass\tmotif_id\ttf\ttile_row\tmean_dz_bio\tmin_dz_bio\tmax_dz_bio\t\
         mean_dz_tech\tmax_abs_dz_tech\n",
    );

    let total: u64 = p.contigs.iter().map(|c| c.1).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg:>6} [{bar:40}] {bytes}/{total_bytes} {elapsed} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut positives = vec![0u64; o];
    let mut tile_offset = 0u64;
    let mut contig_rows = Vec::new();
    let mut n_variants = 0u64;
    for (ci, (name, len)) in p.contigs.iter().enumerate() {
        bar.set_message(name.clone());
        let plan = contig_plan(&bio, p, seed, ci as u64, name, *len, real.is_some());
        let seq = real.map(|r| &r.genome.seqs[ci][..]);
        write_plan_beds(&bio, &plan, &mut inst_bed, &inst_path, &mut el_bed, &el_path)?;
        fasta.begin(name)?;
        peaks.begin_contig(name, TEST_CONTIGS.contains(&name.as_str()));
        let mut vars: Vec<Variant> = Vec::new();
        for_each_chunk(&plan, seed, p.chunk_bases, seq, |chunk, view, tiles| {
            fasta.write(chunk)?;
            let rows = factor_rows(lay, &plan, view, tiles.clone(), real);
            factors.write(&rows)?;
            let lab = model.chunk(&rows, seed, ci as u64, tiles.start, dense.is_some());
            if let Some(d) = dense.as_mut() {
                d.z_bio.write(&lab.z_bio)?;
                d.z_tech.write(&lab.z_tech)?;
                d.p.write(&lab.p)?;
                d.y.write(&lab.y)?;
            }
            for row in lab.y.chunks(o) {
                for (c, &y) in positives.iter_mut().zip(row) {
                    *c += y as u64;
                }
            }
            peaks.push(tiles.start, &lab.y, &lab.p)?;
            match real {
                Some(r) => {
                    let per_class = p.variants_per_class / p.real.as_ref().map_or(1, |w| w.all.len().max(1));
                    let v = resolve_real(&model, &r.scanner, view, &rows, &relevant, seed, ci as u64, per_class);
                    vars.extend(v);
                }
                None => resolve(&plan, &model, view, &rows, tiles, &mut vars),
            }
            bar.inc(chunk.len() as u64);
            Ok(())
        })?;
        peaks.end_contig();
        finalize(&mut vars);
        for v in &vars {
            n_variants += 1;
            write_variant(&bio, name, tile_offset, n_variants, v, &mut vcf_body, &mut vtsv);
            deltas.write(&v.dz_bio)?;
            deltas.write(&v.dz_tech)?;
        }
        contig_rows.push((name.clone(), *len, tile_offset, plan.n_tiles));
        tile_offset += plan.n_tiles;
    }
    bar.finish_and_clear();

    // Close everything in dependency order; the caller renames the directory only after all of this succeeded.
    let (out, fai) = fasta.finish()?;
    out.into_inner().map_err(|e| crate::error::MfdError::io(&fa_path, e.into_error()))?.sync_all().at(&fa_path)?;
    write_atomic(dir.join("genome.fa.fai"), fai.as_bytes())?;
    let f = lay.width() as u64;
    factors.finish(&[tile_offset, f])?;
    if let Some(d) = dense {
        for w in [d.z_bio, d.z_tech, d.p, d.y] {
            w.finish(&[tile_offset, o as u64])?;
        }
    }
    inst_bed.flush().at(&inst_path)?;
    el_bed.flush().at(&el_path)?;
    deltas.finish(&[n_variants, 2, o as u64])?;
    let n_peaks = peaks.finish()?;

    let mut table = String::from("experiment\tpath\n");
    for id in &ids {
        table.push_str(&format!("{id}\tpeaks/{id}.narrowPeak\n"));
    }
    write_atomic(dir.join("peaks.tsv"), table.as_bytes())?;
    write_metadata(&dir.join("metadata.tsv"), &bio, &labs, &exps, &n_peaks)?;
    write_atomic(dir.join("variants.vcf"), vcf_text(p, &vcf_body).as_bytes())?;
    write_atomic(truth.join("variants.tsv"), vtsv.as_bytes())?;
    let rates: Vec<f64> = positives.iter().map(|&c| c as f64 / tile_offset.max(1) as f64).collect();
    let mut params = params_json(p, seed, &bio, lay, &norm, &labs, &exps, &contig_rows, &rates, &n_peaks);
    params["source"] = source_json(real);
    let text = serde_json::to_string_pretty(&params).map_err(|e| crate::error::MfdError::other(e.to_string()))?;
    write_atomic(truth.join("params.json"), text.as_bytes())?;
    Ok(Summary {
        n_grid_tiles: tile_offset,
        bases: total,
        rates,
        peaks: n_peaks,
        n_variants,
        held_out: exps.iter().filter(|e| e.held_out).map(|e| e.id.clone()).collect(),
    })
}

fn write_plan_beds(
    bio: &Biology,
    plan: &ContigPlan,
    inst: &mut impl Write,
    inst_path: &Path,
    el: &mut impl Write,
    el_path: &Path,
) -> Result<()> {
    for (i, e) in plan.elements.iter().enumerate() {
        let tissues: Vec<&str> = e.tissues.iter().map(|&t| bio.tissues[t].name).collect();
        let active = match e.kind {
            ElementKind::Shared => "all".to_string(),
            _ if tissues.is_empty() => "none".to_string(),
            _ => tissues.join(","),
        };
        writeln!(el, "{}\t{}\t{}\t{}_e{}\t{}\t{}", plan.name, e.start, e.end, plan.name, i, e.kind.name(), active)
            .at(el_path)?;
    }
    for s in &plan.instances {
        let m = &bio.motifs[s.motif];
        writeln!(
            inst,
            "{}\t{}\t{}\t{}\t{:.3}\t{}\t{}\t{}_e{}",
            plan.name,
            s.start,
            s.end(),
            m.id,
            s.score,
            if s.minus { '-' } else { '+' },
            m.name,
            plan.name,
            s.element
        )
        .at(inst_path)?;
    }
    Ok(())
}

fn write_variant(
    bio: &Biology,
    chrom: &str,
    tile_offset: u64,
    n: u64,
    v: &Variant,
    vcf: &mut String,
    tsv: &mut String,
) {
    let id = format!("synv{n:06}");
    let (mid, tf) =
        v.motif.map_or((".".to_string(), ".".to_string()), |m| (bio.motifs[m].id.clone(), bio.motifs[m].name.clone()));
    let info = match v.motif {
        Some(_) => format!("CLASS={};MOTIF={mid};TF={tf}", v.class.name()),
        None => format!("CLASS={}", v.class.name()),
    };
    let (r, a) = (v.reff as char, v.alt as char);
    vcf.push_str(&format!("{chrom}\t{}\t{id}\t{r}\t{a}\t.\tPASS\t{info}\n", v.pos + 1));
    let stats = |d: &[f32]| {
        let n = d.len().max(1) as f32;
        let mean = d.iter().sum::<f32>() / n;
        let min = d.iter().copied().fold(f32::INFINITY, f32::min);
        let max = d.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (mean, min, max)
    };
    let (bm, bmin, bmax) = stats(&v.dz_bio);
    let (tm, tmin, tmax) = stats(&v.dz_tech);
    tsv.push_str(&format!(
        "{id}\t{chrom}\t{}\t{r}\t{a}\t{}\t{mid}\t{tf}\t{}\t{bm:.5}\t{bmin:.5}\t{bmax:.5}\t{tm:.5}\t{:.5}\n",
        v.pos + 1,
        v.class.name(),
        tile_offset + v.tile,
        tmax.abs().max(tmin.abs()),
    ));
}

fn vcf_text(p: &Preset, body: &str) -> String {
    let mut s = String::from("##fileformat=VCFv4.2\n##source=mfd synth\n##reference=genome.fa\n");
    for (name, len) in &p.contigs {
        s.push_str(&format!("##contig=<ID={name},length={len}>\n"));
    }
    s.push_str(
        "##INFO=<ID=CLASS,Number=1,Type=String,Description=\"Effect class: motif_breaking, motif_creating, gc_only or neutral\">\n\
         ##INFO=<ID=MOTIF,Number=1,Type=String,Description=\"JASPAR matrix id of the motif broken or created\">\n\
         ##INFO=<ID=TF,Number=1,Type=String,Description=\"Transcription factor of that motif\">\n\
         #CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n",
    );
    s.push_str(body);
    s
}

/// params.json `source`: where the sequence came from and what the motif factors are.
fn source_json(real: Option<&Real>) -> serde_json::Value {
    use serde_json::json;
    match real {
        None => json!({"kind": "generated", "motif_factor": "planted instance count"}),
        Some(r) => json!({
            "kind": "real",
            "fasta": r.genome.path.display().to_string(),
            "chrom": r.genome.chrom,
            "windows": r.genome.windows,
            "motif_factor": "PWM scan strength: SCALE * max(0, rel - REL_FLOOR) / (1 - REL_FLOOR) of the best site",
            "scan_background": super::scan::BACKGROUND,
            "scan_rel_floor": super::scan::REL_FLOOR,
            "scan_scale": super::scan::SCALE,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn params_json(
    p: &Preset,
    seed: u64,
    bio: &Biology,
    lay: Layout,
    norm: &FactorNorm,
    labs: &[Lab],
    exps: &[Experiment],
    contigs: &[(String, u64, u64, u64)],
    rates: &[f64],
    n_peaks: &[u64],
) -> serde_json::Value {
    use serde_json::json;
    let motif_ids = |v: &[usize]| v.iter().map(|&m| bio.motifs[m].id.clone()).collect::<Vec<_>>();
    let experiments: Vec<serde_json::Value> = exps
        .iter()
        .zip(rates.iter().zip(n_peaks))
        .map(|(e, (r, np))| {
            json!({
                "id": e.id, "tissue": bio.tissues[e.tissue].name, "biosample": e.biosample, "assay": e.assay,
                "target": e.target.map(|m| bio.motifs[m].id.clone()),
                "lab": labs[e.lab].name, "year": e.year, "held_out": e.held_out,
                "s_a": e.s_a, "gamma": e.gamma, "theta_gc": e.theta_gc, "theta_gc2": e.theta_gc2,
                "phi": e.phi, "b": e.b, "target_rate": e.target_rate, "realised_rate": r, "n_peaks": np,
                "frip": e.frip, "spot2": e.spot2,
            })
        })
        .collect();
    json!({
        "format": "mfd-synth-truth",
        "version": 1,
        "preset": p.name,
        "preset_version": p.version,
        "seed": seed,
        "tile_size": TILE,
        "window_flank": super::factors::FLANK,
        "temperature": p.temperature,
        "test_contigs": TEST_CONTIGS,
        "contigs": contigs.iter().map(|(n, l, off, nt)| json!({"name": n, "length": l, "tile_offset": off, "n_tiles": nt})).collect::<Vec<_>>(),
        "n_grid_tiles": contigs.iter().map(|c| c.3).sum::<u64>(),
        "dense_truth": p.dense_truth,
        "motifs": bio.motifs.iter().map(|m| json!({"id": m.id, "name": m.name, "len": m.len()})).collect::<Vec<_>>(),
        "tissues": bio.tissues.iter().zip(&bio.programs).map(|(t, prog)| json!({
            "name": t.name, "program": motif_ids(prog), "biosamples": t.biosamples})).collect::<Vec<_>>(),
        "shared": motif_ids(&bio.shared),
        "decoys": motif_ids(&bio.decoys),
        "w": bio.w,
        "kmers": KMERS.iter().map(|k| String::from_utf8_lossy(&k[..]).to_string()).collect::<Vec<_>>(),
        "tn5_kmer": String::from_utf8_lossy(&KMERS[TN5][..]),
        "factor_columns": lay.names(bio),
        "factor_norm": norm,
        "rho": super::experiments::RHO,
        "labs": labs,
        "kmer_owner_lab": (0..KMERS.len()).filter(|&q| q != TN5).map(|q| labs[super::experiments::kmer_owner(q, labs.len())].name.clone()).collect::<Vec<_>>(),
        "held_out": exps.iter().filter(|e| e.held_out).map(|e| e.id.clone()).collect::<Vec<_>>(),
        "experiments": experiments,
    })
}
