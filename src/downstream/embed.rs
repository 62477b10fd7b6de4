//! `mfd embed`: biological, technical and combined features of regions (BED over a genome) or of sequences (FASTA),
//! averaged over S shifted crops and both strands (mfd-spec.md 8.5-8.6), written as safetensors and TSV.
//!
//! Key decisions: the window (T + S bases) is centred on the region's (or sequence's) centre base, with N beyond
//! the sequence or contig (the reference pads VISTA elements with sampled dinucleotides; N is the model's neutral
//! input). "combined" is [bio, tech] (the reference's "full" order, mfd-spec.md 10.3). The GC fraction of each
//! region itself is written too, for GC-regressed enhancer baselines.

use crate::data::binfile::write_atomic;
use crate::downstream::genome::{read_fasta_records, Genome, IndexedFasta};
use crate::downstream::model::Inference;
use crate::downstream::seq::{code, gc_fraction, mean_groups, push_passes, Passes};
use crate::error::{IoContext, MfdError, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// Checkpoint (.safetensors) written by `mfd train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared dataset whose metadata built the model (default: the one in the checkpoint's config).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Regions (BED); their sequence comes from --genome, else from the dataset's genome.
    #[arg(long, conflicts_with = "fasta", required_unless_present = "fasta")]
    pub bed: Option<PathBuf>,
    /// Sequences (FASTA), each embedded around its centre.
    #[arg(long)]
    pub fasta: Option<PathBuf>,
    /// Indexed genome FASTA (.fai beside it) for --bed.
    #[arg(long)]
    pub genome: Option<PathBuf>,
    /// Output: OUT.safetensors and OUT.tsv (a .safetensors or .tsv extension on OUT is dropped).
    #[arg(long)]
    pub out: PathBuf,
    /// Shifted crops averaged per strand (the window has T + shifts bases).
    #[arg(long, default_value_t = 5)]
    pub shifts: usize,
    /// Forward strand only (default: forward and reverse complement).
    #[arg(long)]
    pub forward_only: bool,
    /// Sequences per trunk forward.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

/// Embeddings of N items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embedding {
    pub names: Vec<String>,
    /// Trunk width: features are 2C.
    pub c: usize,
    /// (N, 2C) pass-averaged features: technical [0, C), biological [C, 2C) (the model's order).
    pub features: Vec<f32>,
    /// GC fraction of each region / sequence (N excluded).
    pub gc: Vec<f32>,
}

impl Embedding {
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// (N, C) biological half.
    pub fn bio(&self) -> Vec<f32> {
        self.half(self.c)
    }
    /// (N, C) technical half.
    pub fn tech(&self) -> Vec<f32> {
        self.half(0)
    }
    /// (N, 2C) [bio, tech].
    pub fn combined(&self) -> Vec<f32> {
        let c = self.c;
        self.features.chunks(2 * c).flat_map(|r| r[c..].iter().chain(&r[..c]).copied()).collect()
    }
    fn half(&self, off: usize) -> Vec<f32> {
        let c = self.c;
        self.features.chunks(2 * c).flat_map(|r| r[off..off + c].iter().copied()).collect()
    }
}

/// Pass-averaged features (N, 2C) of windows of T + S base codes each.
pub fn embed_windows(inf: &mut Inference, windows: &[Vec<u8>], p: Passes) -> Result<Vec<f32>> {
    let (t, d) = (inf.t, 2 * inf.c);
    let mut out = Vec::with_capacity(windows.len() * d);
    // Chunks of whole windows, so the token buffer stays small for many regions.
    let per_chunk = (inf.batch.max(2) * 4 / p.count()).max(1);
    for chunk in windows.chunks(per_chunk) {
        let mut tokens = Vec::with_capacity(chunk.len() * p.count() * t);
        for w in chunk {
            push_passes(w, t, p, &mut tokens);
        }
        let f = inf.features(&tokens)?;
        out.extend(mean_groups(&f, d, p.count()));
    }
    Ok(out)
}

/// The T + S window centred on base `centre` of `seq` (codes), N outside it.
pub fn centred_window(seq: &[u8], centre: usize, t: usize, p: Passes) -> Vec<u8> {
    let start = centre as i64 - p.centre_offset(t) as i64;
    (0..p.window_len(t) as i64)
        .map(|i| {
            let k = start + i;
            if k >= 0 && (k as usize) < seq.len() {
                seq[k as usize]
            } else {
                crate::data::window::N_CODE
            }
        })
        .collect()
}

pub fn run(args: &EmbedArgs) -> Result<()> {
    let mut inf = Inference::load(&args.checkpoint, args.dataset.as_deref())?;
    inf.batch = crate::downstream::check_arg("--batch", args.batch, 1, 65_536)?.max(2);
    let shifts = crate::downstream::check_arg("--shifts", args.shifts, 1, 4096)?;
    let p = Passes { shifts, both_strands: !args.forward_only };
    let t = inf.t;
    let mut names = Vec::new();
    let mut windows = Vec::new();
    let mut gc = Vec::new();
    let mut coords = Vec::new();
    if let Some(bed) = &args.bed {
        let genome = match &args.genome {
            Some(g) => Genome::Fasta(IndexedFasta::open(g)?),
            None => {
                let dir = crate::train::load_model::checkpoint_config(&args.checkpoint, args.dataset.as_deref())?
                    .data
                    .dataset;
                Genome::Dataset(Box::new(crate::data::dataset::Dataset::open(&dir)?))
            }
        };
        for r in genome.read_regions(bed)? {
            let centre = (r.start + r.end) / 2;
            let ws = centre as i64 - p.centre_offset(t) as i64;
            windows.push(genome.fetch_codes(&r.chrom, ws, ws + p.window_len(t) as i64)?);
            gc.push(gc_fraction(&genome.fetch_codes(&r.chrom, r.start as i64, r.end as i64)?) as f32);
            coords.push(format!("{}\t{}\t{}", r.chrom, r.start, r.end));
            names.push(r.name);
        }
    } else if let Some(fa) = &args.fasta {
        for (name, seq) in read_fasta_records(fa)? {
            let codes: Vec<u8> = seq.iter().map(|&b| code(b)).collect();
            windows.push(centred_window(&codes, codes.len() / 2, t, p));
            gc.push(gc_fraction(&codes) as f32);
            coords.push(".\t.\t.".to_string());
            names.push(name);
        }
    }
    eprintln!("mfd: embedding {} sequences ({} passes each, T = {t})", windows.len(), p.count());
    let bar = indicatif::ProgressBar::new(windows.len() as u64);
    let mut features = Vec::new();
    for chunk in windows.chunks(256) {
        features.extend(embed_windows(&mut inf, chunk, p)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let emb = Embedding { names, c: inf.c, features, gc };
    let (st, tsv) = output_paths(&args.out);
    write_embedding(&st, &emb, p)?;
    write_tsv(&tsv, &emb, &coords)?;
    eprintln!("mfd: wrote {} and {}", st.display(), tsv.display());
    Ok(())
}

/// OUT.safetensors and OUT.tsv for `--out OUT`.
pub fn output_paths(out: &Path) -> (PathBuf, PathBuf) {
    let s = out.to_string_lossy();
    let stem = s.trim_end_matches(".safetensors").trim_end_matches(".tsv");
    (PathBuf::from(format!("{stem}.safetensors")), PathBuf::from(format!("{stem}.tsv")))
}

/// safetensors: `bio` (N, C), `tech` (N, C), `combined` (N, 2C) = [bio, tech], `gc` (N,); metadata `names` (a JSON
/// array), `c`, `shifts`, `strands`.
pub fn write_embedding(path: &Path, e: &Embedding, p: Passes) -> Result<()> {
    let (n, c) = (e.len(), e.c);
    let (bio, tech, comb) = (e.bio(), e.tech(), e.combined());
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "mfd-embedding-1".to_string());
    meta.insert("names".to_string(), serde_json::to_string(&e.names).map_err(|x| MfdError::other(x.to_string()))?);
    meta.insert("c".to_string(), c.to_string());
    meta.insert("shifts".to_string(), p.shifts.to_string());
    meta.insert("strands".to_string(), if p.both_strands { "2" } else { "1" }.to_string());
    let err = |x: safetensors::SafeTensorError| MfdError::input(path, None, None, format!("safetensors: {x}"));
    let views = vec![
        ("bio", TensorView::new(Dtype::F32, vec![n, c], bytemuck::cast_slice(&bio)).map_err(err)?),
        ("tech", TensorView::new(Dtype::F32, vec![n, c], bytemuck::cast_slice(&tech)).map_err(err)?),
        ("combined", TensorView::new(Dtype::F32, vec![n, 2 * c], bytemuck::cast_slice(&comb)).map_err(err)?),
        ("gc", TensorView::new(Dtype::F32, vec![n], bytemuck::cast_slice(&e.gc)).map_err(err)?),
    ];
    let bytes = safetensors::serialize(views, Some(meta)).map_err(err)?;
    write_atomic(path, &bytes)
}

/// Read an embedding written by `write_embedding`.
pub fn read_embedding(path: &Path) -> Result<Embedding> {
    let bytes = std::fs::read(path).at(path)?;
    let err = |x: safetensors::SafeTensorError| MfdError::input(path, None, None, format!("safetensors: {x}"));
    let st = SafeTensors::deserialize(&bytes).map_err(err)?;
    let (_, md) = SafeTensors::read_metadata(&bytes).map_err(err)?;
    let meta = md.metadata().clone().unwrap_or_default();
    let names: Vec<String> = meta
        .get("names")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| MfdError::input(path, None, Some("names"), "missing or not a JSON list in the metadata"))?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = st.tensor(name).map_err(|_| MfdError::input(path, None, Some(name), "tensor missing"))?;
        if t.dtype() != Dtype::F32 {
            return Err(MfdError::input(path, None, Some(name), "not F32"));
        }
        let v = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok((t.shape().to_vec(), v))
    };
    let (shape, bio) = get("bio")?;
    let (_, tech) = get("tech")?;
    let (_, gc) = get("gc")?;
    let [n, c] = shape[..] else {
        return Err(MfdError::input(path, None, Some("bio"), format!("shape {shape:?}, expected (N, C)")));
    };
    if n != names.len() || bio.len() != n * c || tech.len() != n * c || gc.len() != n {
        return Err(MfdError::input(path, None, None, "tensor shapes do not match the names"));
    }
    let mut features = Vec::with_capacity(n * 2 * c);
    for i in 0..n {
        features.extend_from_slice(&tech[i * c..(i + 1) * c]);
        features.extend_from_slice(&bio[i * c..(i + 1) * c]);
    }
    Ok(Embedding { names, c, features, gc })
}

fn write_tsv(path: &Path, e: &Embedding, coords: &[String]) -> Result<()> {
    let c = e.c;
    let mut s = String::from("name\tchrom\tstart\tend\tgc");
    for k in 0..c {
        s.push_str(&format!("\tbio_{k}"));
    }
    for k in 0..c {
        s.push_str(&format!("\ttech_{k}"));
    }
    s.push('\n');
    for (i, row) in e.features.chunks(2 * c).enumerate() {
        s.push_str(&format!("{}\t{}\t{}", e.names[i], coords[i], e.gc[i]));
        for v in row[c..].iter().chain(&row[..c]) {
            s.push_str(&format!("\t{v}"));
        }
        s.push('\n');
    }
    write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_embedding_checks_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.safetensors");
        let e = Embedding {
            names: vec!["a".into(), "b".into()],
            c: 1,
            features: vec![1.0, 2.0, 3.0, 4.0],
            gc: vec![0.5; 2],
        };
        write_embedding(&p, &e, Passes { shifts: 1, both_strands: false }).unwrap();
        assert_eq!(read_embedding(&p).unwrap(), e);
        // A scalar `bio` (a damaged header) is an error naming the tensor, not an index panic.
        let one = 1f32.to_le_bytes();
        let meta = HashMap::from([("names".to_string(), "[\"a\"]".to_string())]);
        let views: Vec<(&str, TensorView)> = ["bio", "tech", "gc"]
            .into_iter()
            .map(|n| (n, TensorView::new(Dtype::F32, if n == "bio" { vec![] } else { vec![1] }, &one).unwrap()))
            .collect();
        std::fs::write(&p, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
        let err = read_embedding(&p).unwrap_err().to_string();
        assert!(err.contains("[field bio]") && err.contains("expected (N, C)"), "{err}");
    }
}
