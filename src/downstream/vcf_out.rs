//! VCF output of `mfd vep`: one record per scored allele (a multi-allelic input record gives one record per ALT), in
//! input order, so a coordinate-sorted input gives a sorted, tabix-ready output; the VEPs are INFO fields declared
//! in the header. Written bgzip-compressed (BGZF blocks and the end-of-file block, what `tabix -p vcf` needs) unless
//! the name ends in `.vcf`.

use crate::downstream::genome::Genome;
use crate::downstream::model::{Inference, Scale};
use crate::downstream::vcf::Variant;
use crate::downstream::vep::{ClassReduce, VepScores};
use crate::error::{IoContext, MfdError, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Output format of `mfd vep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Tsv,
    Vcf { bgzip: bool },
}

impl OutFormat {
    /// `--format` when given (tsv or vcf), else from the name: `.vcf.gz`/`.vcf.bgz` bgzip VCF, `.vcf` plain VCF,
    /// anything else TSV. A VCF is bgzip-compressed unless its name ends in `.vcf`.
    pub fn parse(arg: Option<&str>, out: &Path) -> Result<Self> {
        let name = out.to_string_lossy().to_ascii_lowercase();
        let plain = name.ends_with(".vcf");
        let vcf_name = plain || name.ends_with(".vcf.gz") || name.ends_with(".vcf.bgz");
        match arg {
            None if vcf_name => Ok(OutFormat::Vcf { bgzip: !plain }),
            None | Some("tsv") => Ok(OutFormat::Tsv),
            Some("vcf") => Ok(OutFormat::Vcf { bgzip: !plain }),
            Some(o) => Err(MfdError::config("--format", format!("'{o}': expected tsv or vcf"))),
        }
    }
}

/// The output file: plain or BGZF.
pub enum Sink {
    Plain(BufWriter<std::fs::File>),
    Bgzf(Box<noodles_bgzf::io::Writer<BufWriter<std::fs::File>>>),
}

impl Sink {
    pub fn create(path: &Path, bgzip: bool) -> Result<Self> {
        let f = BufWriter::new(std::fs::File::create(path).at(path)?);
        Ok(if bgzip { Sink::Bgzf(Box::new(noodles_bgzf::io::Writer::new(f))) } else { Sink::Plain(f) })
    }

    /// Flush everything (and the BGZF end-of-file block) to disk.
    pub fn finish(self, path: &Path) -> Result<()> {
        let f = match self {
            Sink::Plain(w) => w,
            Sink::Bgzf(w) => w.finish().at(path)?,
        };
        let f = f.into_inner().map_err(|e| MfdError::io(path, e.into_error()))?;
        f.sync_all().at(path)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Bgzf(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Bgzf(w) => w.flush(),
        }
    }
}

/// The VCF header: INFO lines (one value, or one per class with `per-class`), the genome's contigs, the classes.
pub fn header(inf: &Inference, reduce: ClassReduce, scale: Scale, genome: &Genome) -> String {
    let mut s = format!("##fileformat=VCFv4.2\n##source=mfd vep {}\n", env!("CARGO_PKG_VERSION"));
    let (number, over) = match reduce {
        ClassReduce::PerClass => (inf.o.to_string(), "per class, in ##mfd_classes order".to_string()),
        ClassReduce::Mean => ("1".into(), format!("mean over {} classes", inf.o)),
        ClassReduce::MaxAbs => ("1".into(), format!("largest absolute value (signed) over {} classes", inf.o)),
    };
    let sc = if scale == Scale::Logit { "logit" } else { "probability" };
    for (id, what) in [
        ("MFD_VEP", "Combined VEP: head(alt) - head(ref)"),
        ("MFD_VEP_BIO", "Biological VEP: head(tech_ref, bio_alt) - head(ref)"),
        ("MFD_VEP_TECH", "Technical VEP: head(tech_alt, bio_ref) - head(ref)"),
    ] {
        s.push_str(&format!(
            "##INFO=<ID={id},Number={number},Type=Float,Description=\"{what}, {sc} scale, {over}\">\n"
        ));
    }
    for (id, half) in [("MFD_DZ_BIO", "biological"), ("MFD_DZ_TECH", "technical")] {
        s.push_str(&format!(
            "##INFO=<ID={id},Number=1,Type=Float,Description=\"L2 norm of the {half} feature change alt - ref\">\n"
        ));
    }
    s.push_str(
        "##INFO=<ID=MFD_ALLELE,Number=1,Type=Integer,Description=\"Index of this ALT in the input record (1-based)\">\n",
    );
    for (name, len) in genome.contigs() {
        s.push_str(&format!("##contig=<ID={name},length={len}>\n"));
    }
    s.push_str(&format!("##mfd_classes={}\n", inf.classes.join(",")));
    s.push_str("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n");
    s
}

/// One record: the allele's REF/ALT, the VEPs as INFO.
pub fn record(v: &Variant, sc: &VepScores, reduce: ClassReduce, c: usize) -> String {
    let id = if v.id.is_empty() { "." } else { v.id.as_str() };
    let mut s = format!("{}\t{}\t{id}\t{}\t{}\t.\t.\t", v.chrom, v.pos, v.reference, v.alt);
    for (key, x) in [("MFD_VEP", &sc.combined), ("MFD_VEP_BIO", &sc.bio), ("MFD_VEP_TECH", &sc.tech)] {
        s.push_str(key);
        s.push('=');
        if reduce == ClassReduce::PerClass {
            let vals: Vec<String> = x.iter().map(|y| format!("{y:.6e}")).collect();
            s.push_str(&vals.join(","));
        } else {
            s.push_str(&format!("{:.6e}", reduce.apply(x)));
        }
        s.push(';');
    }
    let l2 = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    s.push_str(&format!(
        "MFD_DZ_BIO={:.6e};MFD_DZ_TECH={:.6e};MFD_ALLELE={}\n",
        l2(&sc.d_features[c..]),
        l2(&sc.d_features[..c]),
        v.allele
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_flag_or_name() {
        let p = |s: &str| Path::new(s).to_path_buf();
        assert_eq!(OutFormat::parse(None, &p("a.tsv")).unwrap(), OutFormat::Tsv);
        assert_eq!(OutFormat::parse(None, &p("a.vcf.gz")).unwrap(), OutFormat::Vcf { bgzip: true });
        assert_eq!(OutFormat::parse(None, &p("a.VCF")).unwrap(), OutFormat::Vcf { bgzip: false });
        assert_eq!(OutFormat::parse(Some("vcf"), &p("a.out")).unwrap(), OutFormat::Vcf { bgzip: true });
        assert_eq!(OutFormat::parse(Some("tsv"), &p("a.vcf.gz")).unwrap(), OutFormat::Tsv);
        assert!(OutFormat::parse(Some("bcf"), &p("a")).unwrap_err().to_string().contains("--format"));
    }
}
