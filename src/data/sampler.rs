//! The rank-sharded sample order for training and evaluation.
//!
//! Key decision: the global order is a pure function of (seed, epoch) and a rank's share a pure function of
//! (seed, epoch, step, rank, world), so a run restarted on a different world size sees the same global batches.
//! - Train: the train tile indices are permuted by `Rng::derive(seed, &[SHUFFLE_TAG, epoch])`; global step s is
//!   `perm[s*B..(s+1)*B]` (global batch B). The final partial batch is dropped, so each epoch visits every train
//!   tile at most once and all but fewer than B of them (the reference keeps it; dropping keeps every step's
//!   batch statistics over exactly B sequences). Rank r of W takes the contiguous slice `[r*B/W, (r+1)*B/W)`
//!   (B % W == 0 is required, so all ranks get B/W).
//! - Augmentation is per global batch, as in the reference (mfd-spec.md 6.4): one shift uniform in [-3, 3] and
//!   one reverse-complement coin (p = 0.5) drawn from `Rng::derive(seed, &[AUGMENT_TAG, epoch, step])`,
//!   identical on every rank.
//! - Eval: sequential over the split's indices, no augmentation, final partial batch kept; rank r takes
//!   `[r*m/W, (r+1)*m/W)` of a global batch of m sequences (shares differ by at most one in the last batch).

use crate::error::{MfdError, Result};
use crate::rng::Rng;
use std::ops::Range;

/// Stream tag of the per-epoch permutation ("SHUFFLE").
pub const SHUFFLE_TAG: u64 = 0x5348_5546_464C_4500;
/// Stream tag of the per-batch augmentation ("AUGMENT").
pub const AUGMENT_TAG: u64 = 0x4155_474D_454E_5400;

/// The sequences one rank processes in one step, and the batch's augmentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Global tile indices, in batch order. (B_local,)
    pub indices: Vec<u64>,
    /// Window shift in bp (applied before the reverse complement).
    pub shift: i32,
    /// Reverse-complement the whole batch.
    pub rc: bool,
}

/// Augmentation settings: shift uniform in [-max_shift, max_shift], reverse complement with probability rc_prob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    pub max_shift: i32,
    pub rc_prob: f64,
}

impl Augment {
    /// The reference's training augmentation: shift in [-3, 3], RC with p = 0.5.
    pub const REFERENCE: Augment = Augment { max_shift: 3, rc_prob: 0.5 };
    /// No augmentation.
    pub const NONE: Augment = Augment { max_shift: 0, rc_prob: 0.0 };

    /// (shift, rc) of global batch `step` of `epoch`: the same on every rank and every world size.
    pub fn draw(&self, seed: u64, epoch: u64, step: u64) -> (i32, bool) {
        let mut rng = Rng::derive(seed, &[AUGMENT_TAG, epoch, step]);
        let shift =
            if self.max_shift > 0 { rng.range_i64(-(self.max_shift as i64), self.max_shift as i64) as i32 } else { 0 };
        let rc = rng.bernoulli(self.rc_prob);
        (shift, rc)
    }
}

/// Rank `rank`'s contiguous share `[rank*len/world, (rank+1)*len/world)` of a global batch of `len`.
pub fn rank_range(len: usize, rank: usize, world: usize) -> Range<usize> {
    rank * len / world..(rank + 1) * len / world
}

fn check_world(global_batch: usize, rank: usize, world: usize) -> Result<()> {
    if global_batch == 0 {
        return Err(MfdError::config("batch_size", "must be > 0"));
    }
    if world == 0 || rank >= world {
        return Err(MfdError::other(format!("sampler: rank {rank} is not in a world of size {world}")));
    }
    if !global_batch.is_multiple_of(world) {
        return Err(MfdError::config(
            "batch_size",
            format!("global batch {global_batch} is not divisible by the world size {world}; every rank needs the same share"),
        ));
    }
    Ok(())
}

/// One epoch of training batches for one rank.
#[derive(Debug, Clone)]
pub struct TrainSampler {
    seed: u64,
    epoch: u64,
    global_batch: usize,
    rank: usize,
    world: usize,
    augment: Augment,
    perm: Vec<u64>, // (n_train,) the epoch's global order
}

impl TrainSampler {
    /// `train`: the train split's global tile indices (e.g. `Dataset::split_indices(SPLIT_TRAIN)`, ascending).
    /// Errors when B % W != 0, rank >= world, or the split holds fewer tiles than one global batch.
    pub fn new(
        train: &[u64],
        seed: u64,
        epoch: u64,
        global_batch: usize,
        rank: usize,
        world: usize,
        augment: Augment,
    ) -> Result<TrainSampler> {
        check_world(global_batch, rank, world)?;
        if train.len() < global_batch {
            return Err(MfdError::config(
                "batch_size",
                format!("the train split holds {} tiles, fewer than one global batch of {global_batch}", train.len()),
            ));
        }
        let mut perm = train.to_vec();
        Rng::derive(seed, &[SHUFFLE_TAG, epoch]).shuffle(&mut perm);
        Ok(TrainSampler { seed, epoch, global_batch, rank, world, augment, perm })
    }

    /// Steps in the epoch: floor(n_train / B) (the final partial batch is dropped).
    pub fn steps(&self) -> usize {
        self.perm.len() / self.global_batch
    }

    /// Sequences per rank and step: B / W.
    pub fn local_batch(&self) -> usize {
        self.global_batch / self.world
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The epoch's whole global order (including the dropped tail).
    pub fn permutation(&self) -> &[u64] {
        &self.perm
    }

    /// The global batch of `step` (all ranks' indices), or None past the end.
    pub fn global_indices(&self, step: usize) -> Option<&[u64]> {
        (step < self.steps()).then(|| &self.perm[step * self.global_batch..(step + 1) * self.global_batch])
    }

    /// This rank's plan for `step`, or None past the end.
    pub fn batch(&self, step: usize) -> Option<BatchPlan> {
        let global = self.global_indices(step)?;
        let (shift, rc) = self.augment.draw(self.seed, self.epoch, step as u64);
        let indices = global[rank_range(self.global_batch, self.rank, self.world)].to_vec();
        Some(BatchPlan { indices, shift, rc })
    }

    /// This rank's plans for every step of the epoch, in order.
    pub fn iter(&self) -> impl Iterator<Item = BatchPlan> + '_ {
        self.iter_from(0)
    }

    /// This rank's plans from step `start` on (resuming mid-epoch, possibly on another world size).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = BatchPlan> + '_ {
        (start..self.steps()).filter_map(move |s| self.batch(s))
    }
}

/// Sequential batches over one split for one rank, without augmentation.
#[derive(Debug, Clone)]
pub struct EvalSampler {
    indices: Vec<u64>, // (n,) in the given order
    global_batch: usize,
    rank: usize,
    world: usize,
}

impl EvalSampler {
    /// `indices`: the split's global tile indices in evaluation order. Errors like `TrainSampler::new`, but an
    /// empty or small split is fine.
    pub fn new(indices: Vec<u64>, global_batch: usize, rank: usize, world: usize) -> Result<EvalSampler> {
        check_world(global_batch, rank, world)?;
        Ok(EvalSampler { indices, global_batch, rank, world })
    }

    /// Steps: ceil(n / B) (the final partial batch is kept).
    pub fn steps(&self) -> usize {
        self.indices.len().div_ceil(self.global_batch)
    }

    /// Sequences over all steps and ranks.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The global batch of `step`, or None past the end.
    pub fn global_indices(&self, step: usize) -> Option<&[u64]> {
        let lo = step.checked_mul(self.global_batch)?;
        (lo < self.indices.len()).then(|| &self.indices[lo..(lo + self.global_batch).min(self.indices.len())])
    }

    /// This rank's plan for `step` (possibly empty in a short final batch), or None past the end.
    pub fn batch(&self, step: usize) -> Option<BatchPlan> {
        let global = self.global_indices(step)?;
        let indices = global[rank_range(global.len(), self.rank, self.world)].to_vec();
        Some(BatchPlan { indices, shift: 0, rc: false })
    }

    pub fn iter(&self) -> impl Iterator<Item = BatchPlan> + '_ {
        (0..self.steps()).filter_map(move |s| self.batch(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn train(n: u64) -> Vec<u64> {
        // Non-contiguous global indices, like a real train split.
        (0..n).map(|i| 3 * i + 1).collect()
    }

    #[test]
    fn rank_shares_union_to_the_one_rank_batch() {
        let idx = train(1000);
        let b = 64;
        let one = TrainSampler::new(&idx, 11, 2, b, 0, 1, Augment::REFERENCE).unwrap();
        for w in [1, 2, 4, 8] {
            let ranks: Vec<_> =
                (0..w).map(|r| TrainSampler::new(&idx, 11, 2, b, r, w, Augment::REFERENCE).unwrap()).collect();
            for s in 0..one.steps() {
                let whole = one.batch(s).unwrap();
                let mut joined = Vec::new();
                for r in &ranks {
                    let p = r.batch(s).unwrap();
                    assert_eq!(p.indices.len(), b / w);
                    assert_eq!((p.shift, p.rc), (whole.shift, whole.rc), "augmentation differs across ranks");
                    joined.extend(p.indices);
                }
                assert_eq!(joined, whole.indices, "world {w} step {s}");
            }
            assert!(ranks[0].batch(one.steps()).is_none());
        }
    }

    #[test]
    fn epoch_visits_each_tile_at_most_once() {
        let idx = train(1000);
        let b = 64;
        let s = TrainSampler::new(&idx, 5, 0, b, 0, 1, Augment::REFERENCE).unwrap();
        assert_eq!(s.steps(), 15);
        let seen: Vec<u64> = s.iter().flat_map(|p| p.indices).collect();
        let set: HashSet<u64> = seen.iter().copied().collect();
        assert_eq!(set.len(), seen.len(), "a tile was visited twice");
        assert!(idx.len() - seen.len() < b);
        assert!(set.iter().all(|g| idx.contains(g)));
        let mut perm = s.permutation().to_vec();
        perm.sort_unstable();
        assert_eq!(perm, idx);
    }

    #[test]
    fn epochs_and_seeds_differ_and_repeat() {
        let idx = train(500);
        let a = TrainSampler::new(&idx, 5, 0, 50, 0, 1, Augment::REFERENCE).unwrap();
        let b = TrainSampler::new(&idx, 5, 1, 50, 0, 1, Augment::REFERENCE).unwrap();
        let c = TrainSampler::new(&idx, 6, 0, 50, 0, 1, Augment::REFERENCE).unwrap();
        let a2 = TrainSampler::new(&idx, 5, 0, 50, 0, 1, Augment::REFERENCE).unwrap();
        assert_ne!(a.permutation(), b.permutation());
        assert_ne!(a.permutation(), c.permutation());
        assert_eq!(a.permutation(), a2.permutation());
        assert_eq!(a.iter().collect::<Vec<_>>(), a2.iter().collect::<Vec<_>>());
        assert_eq!(a.iter_from(3).next(), a.batch(3));
        assert_eq!(a.iter_from(3).count(), a.steps() - 3);
    }

    #[test]
    fn augmentation_covers_its_range() {
        let mut shifts = HashSet::new();
        let mut rc = 0;
        for step in 0..1000 {
            let (s, r) = Augment::REFERENCE.draw(1, 0, step);
            assert!((-3..=3).contains(&s));
            shifts.insert(s);
            rc += r as usize;
        }
        assert_eq!(shifts.len(), 7);
        assert!((400..600).contains(&rc), "{rc}");
        assert_eq!(Augment::NONE.draw(1, 0, 3), (0, false));
    }

    #[test]
    fn bad_worlds_are_errors() {
        let idx = train(100);
        let e = TrainSampler::new(&idx, 1, 0, 30, 0, 4, Augment::REFERENCE).unwrap_err().to_string();
        assert!(e.contains("not divisible"), "{e}");
        assert!(TrainSampler::new(&idx, 1, 0, 32, 4, 4, Augment::REFERENCE).is_err());
        assert!(TrainSampler::new(&idx, 1, 0, 0, 0, 1, Augment::REFERENCE).is_err());
        assert!(TrainSampler::new(&idx, 1, 0, 128, 0, 1, Augment::REFERENCE).is_err());
        assert!(EvalSampler::new(idx, 30, 0, 4).is_err());
    }

    #[test]
    fn eval_is_sequential_and_keeps_the_tail() {
        let idx: Vec<u64> = (100..203).collect(); // 103 tiles
        let one = EvalSampler::new(idx.clone(), 16, 0, 1).unwrap();
        assert_eq!(one.steps(), 7);
        let all: Vec<u64> = one.iter().flat_map(|p| p.indices).collect();
        assert_eq!(all, idx);
        for w in [2, 4, 8] {
            let mut joined = Vec::new();
            for s in 0..one.steps() {
                for r in 0..w {
                    let p = EvalSampler::new(idx.clone(), 16, r, w).unwrap().batch(s).unwrap();
                    assert_eq!((p.shift, p.rc), (0, false));
                    joined.extend(p.indices);
                }
            }
            assert_eq!(joined, idx, "world {w}");
        }
        assert!(EvalSampler::new(Vec::new(), 16, 0, 1).unwrap().iter().next().is_none());
    }
}
