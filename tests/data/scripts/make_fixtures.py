#!/usr/bin/env python3
"""Derive the real-format test fixtures under tests/data/ from extracted package files, and check them.

Called by make_fixtures.sh (which downloads and unpacks the packages); standard library only.
Key decision: every fixture lives on ONE contig, a 1.04 Mb slice of real GRCh37 chr20 named
`chr20_36680000` (0-based offset 36,680,000 in its name), so the sequence, the peaks and the variants all
agree and all coordinates are shifted by -OFFSET. Files copied verbatim (format edge cases) are not shifted.
Every check's result is written between the CHECKS markers of tests/data/PROVENANCE.md.
"""
import argparse
import gzip
import hashlib
import os
import shutil
import sys

CHROM = "20"  # contig name in vt's 20.fa.gz and 01_IN.vcf.gz
OFFSET = 36_680_000  # 0-based start of the slice in GRCh37 chr20
LENGTH = 1_040_000  # slice length (bp): holds 3 CTCF summits, 7 blood regions, 9 vt variants
CONTIG = f"chr20_{OFFSET}"
LINE = 60  # FASTA bases per line
BLOOD_CELLS = ["Mono", "CD4", "CD8", "Nkcell", "Bcell", "Ery"]  # column order of the gimmemotifs table
BLOOD_MIN = 0.3  # a region belongs to a cell type's peak set when its relative value is > this
GZIPPED = "Ery"  # this cell type's peak file is written gzip-compressed (a reader edge case)

# Metadata columns of mfd-spec.md 3.1 (in that order) plus Experiment_accession.
META_COLS = ["File_accession", "Biosample_term_name", "Biosample_organ_slims", "Biosample_system_slims",
             "Biosample_developmental_slims", "Biosample_organism", "proc_Assay_lvl1", "proc_target",
             "Experiment_date_released", "Library_lab", "spot2_score", "five_percent_narrowpeaks_count", "frip",
             "reproducible_peaks", "proc_age_bin", "proc_age_bin_units", "proc_Biosample_life_stage",
             "Experiment_accession"]
BLOOD_BIO = "blood,bodily fluid"
# Per experiment: (id, peak file, term, organ, system, dev, assay, target, date*, lab*, spot2*, 5%np*, frip*,
# reprod*, age, age units, life stage, ENCSR); Biosample_organism (Homo sapiens) is added when writing.
# Starred columns are synthetic (see PROVENANCE.md). The two CTCF ids are real ENCODE file accessions from
# borzoi-pytorch targets.txt (checked below); the blood ids are not.
EXPERIMENTS = [
    ("ENCFF279CYY", "peaks/gm12878_ctcf.bed", "GM12878", BLOOD_BIO, "immune system", "mesoderm", "ChIP-seq",
     "CTCF", "2011-02-07", "Bradley Bernstein, Broad", "", "31250", "0.21", "41876", "53", "year", "adult",
     "ENCSR000AKB"),
    ("ENCFF578TBN", "peaks/gm12878_ctcf.bed", "GM12878", BLOOD_BIO, "immune system", "mesoderm", "ChIP-seq",
     "CTCF", "2012-03-29", "Richard Myers, HAIB", "", "28904", "0.17", "38112", "53", "year", "adult",
     "ENCSR000DZN"),
    ("blood_Mono", "peaks/blood_Mono.narrowPeak", "CD14-positive monocyte", BLOOD_BIO, "immune system",
     "mesoderm", "DNase-seq", "Accessible DNA", "2016-11-14", "John Stam, UW", "0.58", "98211", "", "", "37",
     "year", "adult", ""),
    ("blood_CD4", "peaks/blood_CD4.narrowPeak", "CD4-positive, alpha-beta T cell", BLOOD_BIO, "immune system",
     "mesoderm", "DNase-seq", "Accessible DNA", "2016-11-14", "John Stam, UW", "0.49", "87630", "", "", "37",
     "year", "adult", ""),
    ("blood_CD8", "peaks/blood_CD8.narrowPeak", "CD8-positive, alpha-beta T cell", BLOOD_BIO, "immune system",
     "mesoderm", "DNase-seq", "Accessible DNA", "2017-01-30", "John Stam, UW", "0.44", "80544", "", "", "37",
     "year", "adult", ""),
    ("blood_Nkcell", "peaks/blood_Nkcell.narrowPeak", "natural killer cell", BLOOD_BIO, "immune system",
     "mesoderm", "DNase-seq", "Accessible DNA", "2017-01-30", "John Stam, UW", "0.52", "91377", "", "", "37",
     "year", "adult", ""),
    ("blood_Bcell", "peaks/blood_Bcell.narrowPeak", "B cell", BLOOD_BIO, "immune system", "mesoderm",
     "DNase-seq", "Accessible DNA", "2016-11-14", "John Stam, UW", "0.47", "84902", "", "", "37", "year",
     "adult", ""),
    ("blood_Ery", "peaks/blood_Ery.narrowPeak.gz", "erythroblast", BLOOD_BIO, "immune system", "mesoderm",
     "ATAC-seq", "Accessible DNA", "2020-06-02", "Michael Snyder, Stanford", "", "61873", "0.32", "55410",
     "-1", "unknown", "unknown", ""),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def write_atomic(path, data):
    """Write bytes to path via a temporary file and a rename."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_fasta_gz(path):
    """The single record of a (b)gzip FASTA as (name, sequence)."""
    name, parts = None, []
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith(">"):
                if name is not None:
                    sys.exit(f"{path}: more than one record")
                name = line[1:].split()[0]
            else:
                parts.append(line.strip())
    return name, "".join(parts)


def write_fasta(out_dir, seq, checks):
    """chr20_slice.fa (60 bases per line) and its .fai, then an independent re-read check of the index."""
    header = f">{CONTIG} GRCh37 chr20:{OFFSET + 1}-{OFFSET + LENGTH} (1-based, inclusive)\n"
    lines = [seq[i:i + LINE] for i in range(0, len(seq), LINE)]
    fa = os.path.join(out_dir, "chr20_slice.fa")
    write_atomic(fa, (header + "\n".join(lines) + "\n").encode())
    fai = f"{CONTIG}\t{len(seq)}\t{len(header)}\t{LINE}\t{LINE + 1}\n"
    write_atomic(fa + ".fai", fai.encode())
    # Re-read: the .fai fields must agree with a fresh scan of the written file, and a random-access read
    # through the index at several offsets must return the slice's bases.
    raw = open(fa, "rb").read()
    body = raw[len(header):].split(b"\n")
    ok = (raw.count(b">") == 1 and body[-1] == b"" and all(len(x) == LINE for x in body[:-2])
          and 0 < len(body[-2]) <= LINE and sum(len(x) for x in body) == len(seq))
    name, length, offset, lb, lw = fai.split()
    probes = [0, 1, 59, 60, 61, 12345, len(seq) - 1]
    for p in probes:
        pos = int(offset) + (p // int(lb)) * int(lw) + p % int(lb)
        ok = ok and chr(raw[pos]) == seq[p]
    checks.append(f"FASTA: 1 contig `{name}`, {length} bp, {len(lines)} lines of <= {LINE} bases; .fai fields "
                  f"re-derived from the written file and {len(probes)} indexed random reads: "
                  f"{'OK' if ok else 'FAILED'}")
    counts = {b: seq.count(b) for b in "ACGTN"}
    other = len(seq) - sum(counts.values())
    gc = (counts["G"] + counts["C"]) / max(1, len(seq) - counts["N"])
    checks.append(f"FASTA content: A {counts['A']}, C {counts['C']}, G {counts['G']}, T {counts['T']}, "
                  f"N {counts['N']}, other {other}; GC {gc:.4f}; all upper case: {seq == seq.upper()}")
    return ok


def in_slice(start, end):
    """0-based half-open [start, end) inside the slice (GRCh37 coordinates)."""
    return OFFSET <= start < end <= OFFSET + LENGTH


def make_ctcf(gimme, seq, out_dir, checks):
    """GM12878 CTCF top-500 summits (BED3, hg19) that fall in the slice, shifted, in source order."""
    bed = os.path.join(gimme, "data/examples/Gm12878.CTCF.top500.w200.bed")
    fa = os.path.join(gimme, "data/examples/Gm12878.CTCF.top500.w200.fa")
    ref = {}
    name = None
    for line in open(fa):
        if line.startswith(">"):
            name = line[1:].strip()
            ref[name] = ""
        else:
            ref[name] += line.strip()
    rows, match = [], 0
    for line in open(bed):
        c, s, e = line.split()[:3]
        s, e = int(s), int(e)
        if c == "chr20" and in_slice(s, e):
            rows.append(f"{CONTIG}\t{s - OFFSET}\t{e - OFFSET}\n")
            match += ref.get(f"{c}:{s}-{e}", "").upper() == seq[s - OFFSET:e - OFFSET]
    write_atomic(os.path.join(out_dir, "peaks/gm12878_ctcf.bed"), "".join(rows).encode())
    checks.append(f"CTCF summits: {len(rows)} of the 500 lie in the slice; their sequences in gimmemotifs' "
                  f"Gm12878.CTCF.top500.w200.fa equal the slice bases: {match}/{len(rows)}")
    return len(rows), match == len(rows)


def make_blood(gimme, out_dir, checks):
    """One narrowPeak per blood cell type: the slice's regions whose relative value is > BLOOD_MIN."""
    path = os.path.join(gimme, "data/examples/hg19.blood.most_variable.10k.txt")
    rows = []
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        if head[1:] != BLOOD_CELLS:
            sys.exit(f"{path}: unexpected header {head}")
        for line in f:
            loc, *vals = line.rstrip("\n").split("\t")
            c, span = loc.split(":")
            s, e = (int(x) for x in span.split("-"))
            if c == "chr20" and in_slice(s, e):
                rows.append((s, e, loc, vals))
    rows.sort()
    counts = {}
    for j, cell in enumerate(BLOOD_CELLS):
        out = []
        for s, e, loc, vals in rows:
            v = float(vals[j])
            if v > BLOOD_MIN:
                score = min(1000, int(round(v * 200)))
                # narrowPeak: name = hg19 locus, signalValue = relative value as printed in the source,
                # pValue/qValue unknown (-1), summit at the centre of the 200-bp region.
                out.append(f"{CONTIG}\t{s - OFFSET}\t{e - OFFSET}\t{loc}\t{score}\t.\t{vals[j]}\t-1\t-1\t"
                           f"{(e - s) // 2}\n")
        counts[cell] = len(out)
        name = os.path.join(out_dir, f"peaks/blood_{cell}.narrowPeak")
        data = "".join(out).encode()
        if cell == GZIPPED:
            write_atomic(name + ".gz", gzip.compress(data, mtime=0))
        else:
            write_atomic(name, data)
    checks.append(f"Blood regions: {len(rows)} of the 292 chr20 rows lie in the slice; peaks per cell type "
                  f"(value > {BLOOD_MIN}): " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return counts


def make_vcf(vt, seq, out_dir, checks):
    """vt normalize/01_IN.vcf.gz records inside the slice: REF-checked, renamed, shifted; header rewritten."""
    path = os.path.join(vt, "usr/share/doc/vt/examples/normalize/01_IN.vcf.gz")
    head, body, total, ref_ok = [], [], 0, 0
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith("##contig="):
                continue  # only the slice contig is declared (added below)
            if line.startswith("##"):
                head.append(line)
            elif line.startswith("#"):
                head.append(f"##contig=<ID={CONTIG},length={LENGTH},assembly=b37>\n")
                head.append(f"##mfd_fixture=<Source=\"vt-examples 0.57721+ds-3 normalize/01_IN.vcf.gz\","
                            f"Description=\"GRCh37 chr20 records in the slice; POS shifted by -{OFFSET}, "
                            f"CHROM renamed 20 -> {CONTIG}\">\n")
                head.append(line)
            else:
                total += 1
                f_ = line.rstrip("\n").split("\t")
                pos, ref = int(f_[1]), f_[3]
                if f_[0] != CHROM or not in_slice(pos - 1, pos - 1 + len(ref)):
                    continue
                new = pos - OFFSET
                ref_ok += seq[new - 1:new - 1 + len(ref)] == ref.upper()
                f_[0], f_[1] = CONTIG, str(new)
                body.append("\t".join(f_) + "\n")
    write_atomic(os.path.join(out_dir, "variants.vcf"), ("".join(head) + "".join(body)).encode())
    checks.append(f"VCF: {len(body)} of {total} vt records lie in the slice; REF equals the slice bases at the "
                  f"shifted POS: {ref_ok}/{len(body)}")
    return len(body), ref_ok == len(body)


def check_peaks_inside(out_dir, checks):
    """Every line of every slice peak file is on the slice contig and inside [0, LENGTH)."""
    n, bad = 0, 0
    for exp in EXPERIMENTS:
        path = os.path.join(out_dir, exp[1])
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            for line in f:
                c, s, e = line.split("\t")[:3]
                n += 1
                bad += not (c == CONTIG and 0 <= int(s) < int(e) <= LENGTH)
    checks.append(f"Peaks on `{CONTIG}` and inside [0, {LENGTH}), over every peaks.tsv row (the shared CTCF "
                  f"file counted once per experiment): {n - bad}/{n}")
    return bad == 0


def make_tables(borzoi, out_dir, checks):
    """peaks.tsv and metadata.tsv; the CTCF accessions must exist in borzoi targets.txt as CHIP:CTCF:GM12878."""
    targets = os.path.join(borzoi, "borzoi_pytorch/precomputed/targets.txt")
    found = {}
    for line in open(targets):
        f_ = line.rstrip("\n").split("\t")
        if len(f_) > 8:
            found[f_[1]] = (f_[2], f_[8])
    real = [e for e in EXPERIMENTS if e[0].startswith("ENCFF")]
    ok = sum(e[0] in found and f"/{e[17]}/" in found[e[0]][0] and found[e[0]][1] == "CHIP:CTCF:GM12878"
             for e in real)
    checks.append(f"metadata.tsv: {len(EXPERIMENTS)} rows; real ENCODE accessions found in borzoi targets.txt "
                  f"with the stated ENCSR and description CHIP:CTCF:GM12878: {ok}/{len(real)}")
    peaks = "experiment\tpath\n" + "".join(f"{e[0]}\t{e[1]}\n" for e in EXPERIMENTS)
    write_atomic(os.path.join(out_dir, "peaks.tsv"), peaks.encode())
    meta = "\t".join(META_COLS) + "\n"
    for e in EXPERIMENTS:
        row = [e[0]] + list(e[2:6]) + ["Homo sapiens"] + list(e[6:])
        if len(row) != len(META_COLS):
            sys.exit(f"metadata row {e[0]}: {len(row)} fields, expected {len(META_COLS)}")
        meta += "\t".join(row) + "\n"
    write_atomic(os.path.join(out_dir, "metadata.tsv"), meta.encode())
    return ok == len(real)


def copy_formats(vt, pybedtools, out_dir, checks):
    """Format edge cases copied verbatim (not on the slice, never shifted)."""
    pairs = [
        (os.path.join(pybedtools, "pybedtools/test/data/example.narrowPeak"), "format/example.narrowPeak"),
        (os.path.join(vt, "usr/share/doc/vt/examples/decompose/01_IN_multi.vcf"), "format/vt_multiallelic.vcf"),
        (os.path.join(vt, "usr/share/doc/vt/examples/decompose_blocksub/03_IN_phased_even_length.vcf.gz"),
         "format/vt_phased_mnp.vcf.gz"),
    ]
    for src, dst in pairs:
        shutil.copyfile(src, os.path.join(out_dir, dst))
        same = sha256(src) == sha256(os.path.join(out_dir, dst))
        checks.append(f"{dst}: verbatim copy, sha256 identical to the package file: {same}")


def write_provenance(out_dir, checks, sources):
    path = os.path.join(out_dir, "PROVENANCE.md")
    text = open(path).read()
    begin, end = "<!-- BEGIN CHECKS (written by make_fixtures.py) -->", "<!-- END CHECKS -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    block = ["", "Checks (re-run by `tests/data/scripts/make_fixtures.sh`):", ""]
    block += [f"- {c}" for c in checks]
    block += ["", "sha256 of the package files used:", "", "| file | sha256 |", "|---|---|"]
    block += [f"| `{name}` | `{sha256(p)}` |" for name, p in sources]
    block += ["", "sha256 and size of the committed files:", "", "| file | bytes | sha256 |", "|---|---|---|"]
    for root, _dirs, files in sorted(os.walk(out_dir)):
        for name in sorted(files):
            p = os.path.join(root, name)
            rel = os.path.relpath(p, out_dir)
            if rel.startswith("scripts") or rel == "PROVENANCE.md":
                continue
            block.append(f"| `{rel}` | {os.path.getsize(p)} | `{sha256(p)}` |")
    write_atomic(path, (text[:i] + "\n".join(block) + "\n" + text[j:]).encode())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vt", required=True, help="dpkg -x root of vt-examples")
    ap.add_argument("--gimme", required=True, help="unpacked gimmemotifs-0.18.4 sdist")
    ap.add_argument("--pybedtools", required=True, help="unzipped pybedtools 0.12.1 wheel")
    ap.add_argument("--borzoi", required=True, help="unzipped borzoi-pytorch 0.5.1 wheel")
    ap.add_argument("--out", required=True, help="tests/data")
    ap.add_argument("--motif-check", default="", help="optional line about the JASPAR rebuild check")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "peaks"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "format"), exist_ok=True)
    name, chrom = read_fasta_gz(os.path.join(a.vt, "usr/share/doc/vt/examples/ref/20.fa.gz"))
    if name != CHROM or len(chrom) != 63_025_520:
        sys.exit(f"unexpected reference: {name}, {len(chrom)} bp")
    seq = chrom[OFFSET:OFFSET + LENGTH]
    checks = []
    ok = write_fasta(a.out, seq, checks)
    _n, ok_ctcf = make_ctcf(a.gimme, seq, a.out, checks)
    make_blood(a.gimme, a.out, checks)
    _v, ok_vcf = make_vcf(a.vt, seq, a.out, checks)
    ok_tab = make_tables(a.borzoi, a.out, checks)
    ok_in = check_peaks_inside(a.out, checks)
    copy_formats(a.vt, a.pybedtools, a.out, checks)
    if a.motif_check:
        checks.append(a.motif_check)
    sources = [
        ("vt-examples: usr/share/doc/vt/examples/ref/20.fa.gz", "usr/share/doc/vt/examples/ref/20.fa.gz"),
        ("vt-examples: usr/share/doc/vt/examples/normalize/01_IN.vcf.gz",
         "usr/share/doc/vt/examples/normalize/01_IN.vcf.gz"),
    ]
    sources = [(n, os.path.join(a.vt, p)) for n, p in sources] + [
        ("gimmemotifs: data/examples/Gm12878.CTCF.top500.w200.bed",
         os.path.join(a.gimme, "data/examples/Gm12878.CTCF.top500.w200.bed")),
        ("gimmemotifs: data/examples/hg19.blood.most_variable.10k.txt",
         os.path.join(a.gimme, "data/examples/hg19.blood.most_variable.10k.txt")),
        ("borzoi-pytorch: borzoi_pytorch/precomputed/targets.txt",
         os.path.join(a.borzoi, "borzoi_pytorch/precomputed/targets.txt")),
    ]
    write_provenance(a.out, checks, sources)
    print("\n".join(checks))
    if not (ok and ok_ctcf and ok_vcf and ok_tab and ok_in):
        sys.exit("a fixture check FAILED (see above)")


if __name__ == "__main__":
    main()
