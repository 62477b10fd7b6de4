//! Dataset readers end to end: a dataset written by `write_raw_dataset`, opened, sampled per rank and encoded;
//! and the bad-input suite (truncated shard, foreign genome file, checksum mismatch, shape mismatch, missing
//! manifest), each a clear error naming the file and field, never a panic.

use mfd::data::binfile::write_array;
use mfd::data::dataset::{set_bit, write_raw_dataset, Dataset, RawTile};
use mfd::data::manifest::{Manifest, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL};
use mfd::data::sampler::{Augment, BatchPlan, EvalSampler, TrainSampler};
use mfd::data::window::{bench_encode, encode_batch, encode_window, gather_labels, unpack_labels};
use mfd::rng::Rng;
use std::path::Path;

const O: usize = 100; // 2 u64 words per label row (16 bytes)

/// Random contigs (with N runs) tiled every 128 bp; splits by contig (chr2 = test) and every 10th tile = val.
fn write_dataset(dir: &Path, lengths: &[usize], shard_tiles: u64) -> Manifest {
    let mut rng = Rng::new(7);
    let mut contigs = Vec::new();
    let mut tiles = Vec::new();
    for (k, &len) in lengths.iter().enumerate() {
        let mut codes: Vec<u8> = (0..len).map(|_| rng.below(4) as u8).collect();
        let n_at = rng.below(len as u64 / 2) as usize;
        codes[n_at..(n_at + 50).min(len)].fill(4);
        contigs.push((format!("chr{}", k + 1), codes));
        for start in (0..len).step_by(128) {
            let split = if k == 1 {
                SPLIT_TEST
            } else if tiles.len() % 10 == 3 {
                SPLIT_VAL
            } else {
                SPLIT_TRAIN
            };
            tiles.push(RawTile { contig: k as u32, start: start as u32, split });
        }
    }
    let row = 16;
    let mut labels = vec![0u8; tiles.len() * row];
    for r in labels.chunks_mut(row) {
        for c in 0..O {
            if rng.bernoulli(0.1) {
                set_bit(r, c);
            }
        }
    }
    let classes: Vec<String> = (0..O).map(|i| format!("ENCFF{i:06}")).collect();
    write_raw_dataset(dir, &contigs, &tiles, &labels, &classes, shard_tiles).unwrap()
}

fn small(dir: &Path) -> Manifest {
    write_dataset(dir, &[20_000, 5_000, 9_000], 37)
}

fn open_err(dir: &Path) -> String {
    Dataset::open(dir).unwrap_err().to_string()
}

#[test]
fn opens_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = small(dir.path());
    assert!(m.shards.len() > 3);
    let ds = Dataset::open_verified(dir.path()).unwrap();
    assert_eq!(ds.num_tiles(), m.counts.tiles);
    assert_eq!(ds.num_classes(), O);
    let (train, val, test) = (ds.split_indices(SPLIT_TRAIN), ds.split_indices(SPLIT_VAL), ds.split_indices(SPLIT_TEST));
    assert_eq!(
        (train.len() as u64, val.len() as u64, test.len() as u64),
        (m.counts.train, m.counts.val, m.counts.test)
    );
    assert!(test.iter().all(|&g| ds.tile(g).contig == 1));
    let total: u64 = (0..ds.num_tiles()).map(|g| ds.tile(g).positives as u64).sum();
    assert_eq!(total, m.counts.positives);
    for g in [0, 36, 37, 38, ds.num_tiles() - 1] {
        let pos = (0..O).filter(|&c| ds.label(g, c)).count() as u32;
        assert_eq!(pos, ds.tile(g).positives, "tile {g}");
    }
}

#[test]
fn rank_batches_encode_to_the_one_rank_batch() {
    let dir = tempfile::tempdir().unwrap();
    small(dir.path());
    let ds = Dataset::open(dir.path()).unwrap();
    let train = ds.split_indices(SPLIT_TRAIN);
    let (b, t) = (32, 2176);
    let one = TrainSampler::new(&train, 3, 1, b, 0, 1, Augment::REFERENCE).unwrap();
    let mut saw_rc = [false; 2];
    for step in 0..one.steps().min(6) {
        let whole = one.batch(step).unwrap();
        saw_rc[whole.rc as usize] = true;
        let tokens = encode_batch(&ds, &whole, t).unwrap();
        let labels = gather_labels(&ds, &whole.indices).unwrap();
        // Each row equals the single-window encoder on that tile's contig.
        for (i, &g) in whole.indices.iter().enumerate() {
            let rec = ds.tile(g);
            let codes = ds.contig_codes(rec.contig as usize);
            let mut w = vec![0u8; t];
            encode_window(codes, codes.len(), rec.start as u64, whole.shift, whole.rc, t, &mut w).unwrap();
            assert_eq!(&tokens[i * t..(i + 1) * t], &w[..]);
            assert_eq!(&labels[i * 16..(i + 1) * 16], ds.label_row(g));
        }
        let dense = unpack_labels(&labels, O).unwrap();
        assert_eq!(dense.len(), b * O);
        assert_eq!(dense[5 * O + 7] == 1.0, ds.label(whole.indices[5], 7));
        for world in [2, 4] {
            let mut joined = Vec::new();
            for rank in 0..world {
                let s = TrainSampler::new(&train, 3, 1, b, rank, world, Augment::REFERENCE).unwrap();
                joined.extend(encode_batch(&ds, &s.batch(step).unwrap(), t).unwrap());
            }
            assert_eq!(joined, tokens, "world {world} step {step}");
        }
    }
    // Eval batches cover the split in order; an index past the end is an error, not a panic.
    let val = ds.split_indices(SPLIT_VAL);
    let ev = EvalSampler::new(val.clone(), 16, 0, 1).unwrap();
    assert_eq!(ev.iter().flat_map(|p| p.indices).collect::<Vec<_>>(), val);
    let bad = BatchPlan { indices: vec![ds.num_tiles()], shift: 0, rc: false };
    assert!(encode_batch(&ds, &bad, t).is_err());
    assert!(gather_labels(&ds, &bad.indices).is_err());
}

#[test]
fn missing_manifest_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("manifest.toml") && e.contains("missing"), "{e}");
    small(dir.path());
    std::fs::remove_file(dir.path().join("manifest.toml")).unwrap();
    let e = Dataset::open_verified(dir.path()).unwrap_err().to_string();
    assert!(e.contains("manifest.toml") && e.contains("mfd prepare"), "{e}");
}

#[test]
fn truncated_shard_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = small(dir.path());
    let p = dir.path().join(&m.shards[2].labels.name);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("labels-00002.bin") && e.contains("truncated"), "{e}");
    // Shorter than a header.
    std::fs::write(&p, &bytes[..10]).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("labels-00002.bin") && e.contains("header"), "{e}");
}

#[test]
fn foreign_genome_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    small(dir.path());
    let p = dir.path().join("genome.bin");
    std::fs::write(&p, b">chr1\nACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGT\n").unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("genome.bin") && e.contains("header.magic"), "{e}");
    // A valid array of the wrong kind in its place.
    write_array(&p, "labels", &[34_000], &vec![0u8; 34_000]).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("genome.bin") && e.contains("header.kind"), "{e}");
}

#[test]
fn checksum_mismatch_names_file_and_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let m = small(dir.path());
    let p = dir.path().join(&m.shards[1].labels.name);
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&p, &bytes).unwrap();
    // Shapes still fit, so an open without checksums succeeds; the checksums catch it, and `open` reads them.
    let ds = Dataset::open_unverified(dir.path()).unwrap();
    let e = ds.verify().unwrap_err().to_string();
    assert!(e.contains("labels-00001.bin") && e.contains("sha256"), "{e}");
    let e = Dataset::open_verified(dir.path()).unwrap_err().to_string();
    assert!(e.contains("labels-00001.bin") && e.contains("sha256"), "{e}");
    let e = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("labels-00001.bin") && e.contains("sha256"), "{e}");
    // The genome too.
    let g = dir.path().join("genome.bin");
    let mut bytes = std::fs::read(&g).unwrap();
    bytes[100] = if bytes[100] == 0 { 1 } else { 0 };
    std::fs::write(&g, &bytes).unwrap();
    let e = Dataset::open_verified(dir.path()).unwrap_err().to_string();
    assert!(e.contains("genome.bin") && e.contains("sha256"), "{e}");
}

#[test]
fn shape_mismatch_with_the_manifest_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = small(dir.path());
    // A valid tiles array with one record fewer than the manifest's shard says.
    let n = m.shards[0].num_tiles - 1;
    write_array(dir.path().join("tiles-00000.bin"), "tiles", &[n, 4], &vec![0u32; 4 * n as usize]).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("tiles-00000.bin") && e.contains("header.shape"), "{e}");

    // The manifest's contig table disagrees with genome.bin.
    let dir = tempfile::tempdir().unwrap();
    let mut m = small(dir.path());
    m.contigs[2].length += 1;
    m.save(dir.path()).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("genome.bin") && e.contains("header.shape") && e.contains("34001"), "{e}");

    // Contig offsets that are not back to back.
    m.contigs[2].length -= 1;
    m.contigs[1].offset += 1;
    m.save(dir.path()).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("manifest.toml") && e.contains("contigs[1].offset"), "{e}");

    // Label rows of the wrong width (num_classes changed consistently in the manifest).
    let dir = tempfile::tempdir().unwrap();
    let mut m = small(dir.path());
    m.num_classes = 200;
    m.label_row_bytes = 32;
    m.classes = (0..200).map(|i| format!("c{i}")).collect();
    m.save(dir.path()).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("labels-00000.bin") && e.contains("header.shape"), "{e}");

    // Split counts that disagree with the tile records.
    let dir = tempfile::tempdir().unwrap();
    let mut m = small(dir.path());
    m.counts.val += 1;
    m.save(dir.path()).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("counts.val"), "{e}");
}

/// Encoding throughput on a ~5 Mb genome. Run with
/// `cargo test --release --test readers bench_encode_5mb -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints windows per second, run by hand with --ignored --nocapture"]
fn bench_encode_5mb() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &[2_000_000, 1_500_000, 1_500_000], 8192);
    let ds = Dataset::open(dir.path()).unwrap();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for t in [2176, 1152] {
        let b = bench_encode(&ds, 20_000, t, threads).unwrap();
        println!(
            "bench_encode: {} tiles, T = {t}: 1 thread {:.0} windows/s ({:.1} Mtokens/s); {} threads {:.0} windows/s",
            ds.num_tiles(),
            b.single_per_s,
            b.single_per_s * t as f64 / 1e6,
            b.threads,
            b.parallel_per_s
        );
    }
}

/// `Dataset::open` reads the checksums once, writes `.verified`, and reads them again when a file's size or mtime
/// changes: a flipped label bit is refused at open (it used to train).
#[test]
fn open_verifies_checksums_once_and_after_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let m = small(dir.path());
    Dataset::open(dir.path()).unwrap();
    let marker = dir.path().join(mfd::data::dataset::VERIFIED_FILE);
    let stamp = std::fs::read_to_string(&marker).unwrap();
    assert!(stamp.starts_with("manifest ") && stamp.contains("labels-00001.bin"), "{stamp}");
    Dataset::open(dir.path()).unwrap();
    let p = dir.path().join(&m.shards[1].labels.name);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[70] ^= 0x01;
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&p, &bytes).unwrap();
    let e = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("labels-00001.bin") && e.contains("sha256"), "{e}");
    assert!(e.len() < 400, "{} chars: {e}", e.len());
}
