//! The training batch made on the GPU from the resident genome (`Backend::resident` / `encode_resident`:
//! GpuGenome's window encoding and label gather) equals the CPU's (data::window::encode_batch_into and
//! gather_labels_into) byte for byte: tokens and label rows, for shifts at and beyond the contig ends, both strands
//! and batches in any order. The training step tests start from given tokens, so this is what checks the data the
//! CUDA trainer learns from. Skips where no GPU works (MFD_REQUIRE_GPU=1 makes that a failure).

mod common;

use mfd::backend::cpu::CpuBackend;
use mfd::backend::Backend;
use mfd::data::dataset::Dataset;
use mfd::data::manifest::SPLIT_TRAIN;
use mfd::data::sampler::BatchPlan;
use mfd::rng::Rng;

#[test]
fn resident_batches_equal_the_cpu_batches() {
    let Some(gpu) = common::gpu_or_skip("cuda resident batches") else {
        return;
    };
    let fx = common::fixture();
    mfd::data::prepare::prepare(&fx.args()).unwrap();
    let ds = Dataset::open(&fx.out).unwrap();
    let train = ds.split_indices(SPLIT_TRAIN);
    assert!(train.len() >= 4, "the fixture has {} training tiles", train.len());
    let mut res_gpu = gpu.resident(&ds, &train).unwrap();
    CpuBackend.resident(&ds, &train).unwrap(); // the CPU reads the dataset itself: its resident state is ()
    let row = ds.label_row_bytes();
    let mut rng = Rng::new(3);
    for (round, t) in [(0, 384usize), (1, 384), (2, 128), (3, 640), (4, 384), (5, 384)] {
        let b = 1 + rng.below(train.len() as u64) as usize;
        let indices: Vec<u64> = (0..b).map(|_| train[rng.below(train.len() as u64) as usize]).collect();
        let plan = BatchPlan { indices, shift: rng.below(41) as i32 - 20, rc: round % 2 == 1 };
        let (mut tok_c, mut lab_c) = (vec![0u8; b * t], vec![0u8; b * row]);
        CpuBackend.encode_resident(&mut (), &ds, &plan, t, &mut tok_c, &mut lab_c).unwrap();
        let (mut tok_g, mut lab_g) = (gpu.alloc_bytes(b * t).unwrap(), gpu.alloc_bytes(b * row).unwrap());
        gpu.encode_resident(&mut res_gpu, &ds, &plan, t, &mut tok_g, &mut lab_g).unwrap();
        let (mut tg, mut lg) = (vec![0u8; b * t], vec![0u8; b * row]);
        gpu.download_bytes(&tok_g, &mut tg).unwrap();
        gpu.download_bytes(&lab_g, &mut lg).unwrap();
        let first = tok_c.iter().zip(&tg).position(|(a, b)| a != b);
        assert!(
            first.is_none(),
            "round {round} (T {t}, shift {}, rc {}): tokens differ first at {first:?}",
            plan.shift,
            plan.rc
        );
        assert_eq!(lab_c, lg, "round {round}: label rows differ");
    }
}
