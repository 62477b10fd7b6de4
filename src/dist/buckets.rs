//! Bucketed all-reduce of one parameter group's gradients (or values): through host buckets, or, with the CUDA
//! backend and the NCCL communicator, through device buckets summed in place by NCCL.
//!
//! Key decisions:
//! - Buckets hold whole tensors, taken in reverse registration order, each closed once it reaches `dist.bucket_mb`;
//!   a tensor larger than a bucket gets a bucket of its own (as PyTorch DDP's `bucket_cap_mb`). Reverse
//!   registration is the order in which the model's backward finishes the gradients (`model::grad_ready`: head
//!   bias, hypernetworks, then the trunk from `features_bn` down to the stem), so buckets complete in plan order.
//! - Blocking use in three phases: `pack` (device -> host buckets), `Comm::sum_buckets` (all-reduces of every
//!   bucket around the caller's `during` work), `unpack` (scale, host -> device).
//! - Overlapped use (`sum_overlapped`, issue 4 item 3): the caller's backward gets a `GradReady` hook that counts
//!   the ready tensors of each bucket; when a bucket's last tensor is announced, the hook packs that bucket and
//!   starts its all-reduce (`Comm::sum_buckets_overlapped`: non-blocking on MPI), so the reduction of the head's
//!   and the last layers' gradients overlaps the backward of the first layers; then the caller's `During` work
//!   (the adversary step), the wait, and the caller's `unpack`. Same bucket contents and same reduction as the
//!   blocking path, so the sums are the same.
//! - CUDA backend + NCCL communicator (issue 19 item 4; `Backend::as_cuda` and `Comm::nccl` say so): the buckets
//!   are device buffers of the backend (one contiguous `DevBuf<f32>` per bucket, allocated once at first use and
//!   kept). Packing a bucket is a device-to-device copy of its tensors on the compute stream; the hook then has
//!   the NCCL stream wait on an event of the compute stream, queues the in-place all-reduce there and returns at
//!   once (the backward goes on queuing kernels). After the `During` work the compute stream waits on the NCCL
//!   stream (an event, no host wait), and `unpack` scales each bucket with one kernel and copies it back device to
//!   device. The blocking `all_reduce` (adversary gradients, running statistics) takes the same device path on a
//!   lane of its own (`Nccl::blocking`: communicator + stream), so that its join, inside `During`, waits for its own
//!   sums only and not for the model's buckets still in flight on the gradients' lane.
//!   Nothing of the gradients crosses the bus and nothing synchronises the host; the sums equal the host path's
//!   bit for bit (same bucket contents, same reduction, the same f32 scaling). The gradients stay buffers of their
//!   own rather than views into the bucket: `Params` owns one backend buffer per tensor, and two device copies of
//!   the gradient bytes per step cost microseconds on a GPU, so the simpler layout wins. The host buckets are
//!   unused on that path.
use crate::backend::cuda::{CudaBackend, DevBuf};
use crate::backend::Backend;
use crate::dist::comm::{claim, BucketStart, Comm, HostBucket, Stage};
use crate::dist::nccl::{Lane, Nccl};
use crate::error::{MfdError, Result};
use crate::model::grad_ready::GradReady;
use crate::model::params::{Group, ParamTable, Params};
use std::time::Instant;

/// Which buffers of the group a `Buckets` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Grads,
    Values,
}

pub struct Buckets {
    pub group: Group,
    pub field: Field,
    /// Tensor indices of each bucket, in packing order.
    pub tensors: Vec<Vec<usize>>,
    host: Vec<HostBucket>,
    /// Device buckets (CUDA backend + NCCL), same lengths as `host`; allocated at their first use.
    dev: Vec<DevBuf<f32>>,
    /// Where the last sums are, so `unpack` reads them from there.
    held: Held,
    /// Seconds the last `sum_overlapped` spent inside the ready hook (packing, starting, MPI progress).
    hook_secs: f64,
}

/// Which buckets hold the latest packed values or sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Host,
    Device,
}

/// The two calls of `Buckets::sum_overlapped`'s work: the backward that produces the gradients (pass the hook to
/// the model), then the work that overlaps the in-flight all-reduces.
pub enum Phase<'a, B: Backend> {
    Backward(&'a mut dyn GradReady<B>),
    During,
}

impl Buckets {
    /// The bucket plan of `group`'s tensors at `bucket_mb` MiB (f32) per bucket.
    pub fn new(table: &ParamTable, group: Group, field: Field, bucket_mb: f64) -> Self {
        let cap = ((bucket_mb * 1024.0 * 1024.0 / 4.0) as usize).max(1);
        let mut tensors: Vec<Vec<usize>> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        for (i, spec) in table.specs.iter().enumerate().rev().filter(|(_, s)| s.group == group) {
            let n = spec.numel();
            match (tensors.last_mut(), sizes.last_mut()) {
                (Some(t), Some(sz)) if *sz < cap && *sz + n <= cap => {
                    t.push(i);
                    *sz += n;
                }
                _ => {
                    tensors.push(vec![i]);
                    sizes.push(n);
                }
            }
        }
        let host = sizes.iter().map(|&n| HostBucket { data: vec![0.0; n], scratch: vec![0.0; n] }).collect();
        Buckets { group, field, tensors, host, dev: Vec::new(), held: Held::Host, hook_secs: 0.0 }
    }

    /// Elements (f32) all-reduced per call.
    pub fn elements(&self) -> usize {
        self.host.iter().map(|b| b.data.len()).sum()
    }

    pub fn host_mut(&mut self) -> &mut [HostBucket] {
        &mut self.host
    }

    /// Copy the group's buffers into the host buckets.
    pub fn pack<B: Backend>(&mut self, be: &B, params: &Params<B>) -> Result<()> {
        self.held = Held::Host;
        for (ts, hb) in self.tensors.iter().zip(self.host.iter_mut()) {
            pack_into(be, params, self.field, ts, &mut hb.data)?;
        }
        Ok(())
    }

    /// Write `scale` times the buckets (those of the last `pack` or sum: host or device) back into the group's
    /// buffers.
    pub fn unpack<B: Backend>(&mut self, be: &B, params: &mut Params<B>, scale: f32) -> Result<()> {
        if self.held == Held::Device {
            return self.unpack_device(be, params, scale);
        }
        for (ts, hb) in self.tensors.iter().zip(self.host.iter_mut()) {
            if scale != 1.0 {
                hb.data.iter_mut().for_each(|x| *x *= scale);
            }
            let mut off = 0;
            for &i in ts {
                let dst = match self.field {
                    Field::Grads => &mut params.grads[i],
                    Field::Values => &mut params.values[i],
                };
                let n = be.buf_len(dst);
                be.write(dst, &hb.data[off..off + n])?;
                off += n;
            }
        }
        Ok(())
    }

    /// The bucket plan flattened: tensor indices in the order they are packed (and must become ready).
    pub fn order(&self) -> Vec<usize> {
        self.tensors.iter().flatten().copied().collect()
    }

    /// Seconds the last `sum_overlapped` spent in its ready hook (pack, start, MPI progress): communication cost
    /// paid inside the backward.
    pub fn hook_seconds(&self) -> f64 {
        self.hook_secs
    }

    /// Sum the group's gradients over ranks while they are produced: `work(Phase::Backward(hook))` runs the
    /// backward, which announces every tensor of the group to `hook` once its gradient is final (each bucket is
    /// packed and its all-reduce started as soon as all of its tensors are announced); then `work(Phase::During)`
    /// runs while the all-reduces are in flight; then all are waited for. The host buckets hold the sums
    /// afterwards: the caller `unpack`s them (it owns the parameters). A tensor never announced is an error.
    /// With the CUDA backend and the NCCL communicator the buckets are device buffers (`sum_overlapped_device`).
    pub fn sum_overlapped<B: Backend>(
        &mut self,
        be: &B,
        comm: &dyn Comm,
        work: &mut dyn FnMut(Phase<'_, B>) -> Result<()>,
    ) -> Result<()> {
        if let (Some(cuda), Some(nccl)) = (be.as_cuda(), comm.nccl()) {
            return self.sum_overlapped_device(cuda, nccl, work);
        }
        self.held = Held::Host;
        let Buckets { field, tensors, host, hook_secs, .. } = self;
        *hook_secs = 0.0;
        // Tensors the backward never announced (only filled in when the backward itself succeeded).
        let mut unannounced: Vec<usize> = Vec::new();
        let res = comm.sum_buckets_overlapped(host, &mut |stage| match stage {
            Stage::Produce(start) => {
                let mut hook = ReadyHook::new(tensors, *field, Starter::Host(start));
                let r = work(Phase::Backward(&mut hook));
                *hook_secs = hook.secs;
                if r.is_ok() {
                    unannounced = hook.unannounced();
                }
                r
            }
            Stage::During => work(Phase::During),
        });
        if res.is_err() && !unannounced.is_empty() {
            return Err(MfdError::other(format!(
                "the backward never announced the gradients of tensors {unannounced:?}, so their buckets were not reduced"
            )));
        }
        res
    }

    /// `sum_overlapped` on device buckets (see the module doc): the hook packs each completed bucket on the compute
    /// stream and queues its NCCL all-reduce behind an event; `During` is queued on the compute stream while they
    /// run; then the compute stream waits for the NCCL stream. No host synchronisation.
    fn sum_overlapped_device<B: Backend>(
        &mut self,
        cuda: &CudaBackend,
        nccl: &Nccl,
        work: &mut dyn FnMut(Phase<'_, B>) -> Result<()>,
    ) -> Result<()> {
        self.ensure_device(cuda)?;
        self.held = Held::Device;
        let Buckets { field, tensors, dev, hook_secs, .. } = self;
        *hook_secs = 0.0;
        let lane = nccl.grads();
        let mut start = DeviceStart { cuda, lane, dev, started: vec![false; tensors.len()] };
        let mut hook = ReadyHook::new(tensors, *field, Starter::Device(&mut start));
        let backward = work(Phase::Backward(&mut hook));
        *hook_secs = hook.secs;
        let unannounced = hook.unannounced();
        let during = match backward {
            Ok(()) if unannounced.is_empty() => work(Phase::During),
            Ok(()) => Err(MfdError::other(format!(
                "the backward never announced the gradients of tensors {unannounced:?}, so their buckets were not reduced"
            ))),
            Err(e) => Err(e),
        };
        // The sums are ready for the compute stream's next work (the caller's `unpack`) once it has waited.
        let joined = lane.join_compute(cuda.stream());
        during.and(joined)
    }

    /// The device buckets, allocated at their first use (from the driver: `zeros_kept`).
    fn ensure_device(&mut self, cuda: &CudaBackend) -> Result<()> {
        if self.dev.len() != self.host.len() {
            self.dev = self.host.iter().map(|h| cuda.zeros_kept::<f32>(h.data.len())).collect::<Result<_>>()?;
        }
        Ok(())
    }

    /// `unpack` from the device buckets: scale each bucket in place (one kernel), then copy its slices back into
    /// the tensors, device to device, on the compute stream (which has waited for the sums).
    fn unpack_device<B: Backend>(&mut self, be: &B, params: &mut Params<B>, scale: f32) -> Result<()> {
        let cuda = be.as_cuda().ok_or_else(|| MfdError::other("device gradient buckets need the CUDA backend"))?;
        for (ts, db) in self.tensors.iter().zip(self.dev.iter_mut()) {
            if scale != 1.0 {
                cuda.k_scale(scale, db)?;
            }
            let mut off = 0;
            for &i in ts {
                let dst = match self.field {
                    Field::Grads => &mut params.grads[i],
                    Field::Values => &mut params.values[i],
                };
                let dst = be.cuda_buf_mut(dst).ok_or_else(|| MfdError::other("a non-CUDA buffer in a CUDA run"))?;
                let n = dst.len();
                cuda.copy_range(db, off, dst, 0, n)?;
                off += n;
            }
        }
        Ok(())
    }

    /// Blocking all-reduce: pack, sum over ranks, unpack times `scale`. A no-op on one rank.
    pub fn all_reduce<B: Backend>(
        &mut self,
        be: &B,
        comm: &dyn Comm,
        params: &mut Params<B>,
        scale: f32,
    ) -> Result<()> {
        if comm.size() == 1 {
            return Ok(());
        }
        if let (Some(cuda), Some(nccl)) = (be.as_cuda(), comm.nccl()) {
            // Device buckets: pack and start each (device copies, then NCCL on the lane's stream), join, unpack.
            // The lane is the blocking sums' own (communicator + stream), not the gradients': the adversary step
            // calls this inside `sum_overlapped`'s `During`, while the model's buckets are in flight on the
            // gradients' lane, and the join below must wait for these sums only (an event recorded on the
            // gradients' stream would complete only after every bucket queued there before it). Two communicators
            // in flight at once are safe because every rank issues the same calls in the same order, on each
            // communicator and across them (model buckets during the backward, these in `During`, the gradients'
            // join after it), and neither lane waits on the other: each waits only on events of the compute
            // stream recorded before its sums were queued.
            self.ensure_device(cuda)?;
            self.held = Held::Device;
            let lane = nccl.blocking();
            let mut start = DeviceStart { cuda, lane, dev: &mut self.dev, started: vec![false; self.tensors.len()] };
            for (k, ts) in self.tensors.iter().enumerate() {
                start.start(be, params, self.field, ts, k)?;
            }
            lane.join_compute(cuda.stream())?;
            return self.unpack_device(be, params, scale);
        }
        self.pack(be, params)?;
        comm.sum_buckets(&mut self.host, &mut || Ok(()))?;
        self.unpack(be, params, scale)
    }
}

/// What starts a completed bucket: the communicator's host-bucket starter, or the device buckets with NCCL.
enum Starter<'b, 'c> {
    Host(&'b mut dyn BucketStart),
    Device(&'b mut DeviceStart<'c>),
}

/// Starts device buckets: packs a bucket's tensors into its device buffer (device copies on the compute stream),
/// then queues its in-place NCCL all-reduce on `lane` behind an event of the compute stream.
struct DeviceStart<'c> {
    cuda: &'c CudaBackend,
    lane: &'c Lane,
    /// One buffer per bucket, the bucket's tensors one after the other.
    dev: &'c mut [DevBuf<f32>],
    started: Vec<bool>,
}

impl DeviceStart<'_> {
    fn start<B: Backend>(&mut self, be: &B, p: &Params<B>, field: Field, ts: &[usize], k: usize) -> Result<()> {
        claim(&mut self.started, k)?;
        let db = &mut self.dev[k];
        let mut off = 0;
        for &i in ts {
            let src = match field {
                Field::Grads => &p.grads[i],
                Field::Values => &p.values[i],
            };
            let src = be.cuda_buf(src).ok_or_else(|| MfdError::other("a non-CUDA buffer in a CUDA run"))?;
            self.cuda.copy_range(src, 0, db, off, src.len())?;
            off += src.len();
        }
        if db.is_empty() {
            return Ok(());
        }
        self.lane.start_sum_after(self.cuda.stream(), &mut db.view_mut())
    }
}

/// The `GradReady` hook of `Buckets::sum_overlapped`: counts each bucket's ready tensors and starts the bucket
/// when the count reaches its size.
struct ReadyHook<'a, 'b, 'c> {
    tensors: &'a [Vec<usize>],
    field: Field,
    /// bucket[i]: the bucket of tensor i (None: another group).
    bucket: Vec<Option<usize>>,
    /// Tensors of each bucket not announced yet.
    missing: Vec<usize>,
    start: Starter<'b, 'c>,
    secs: f64,
}

impl<'a, 'b, 'c> ReadyHook<'a, 'b, 'c> {
    fn new(tensors: &'a [Vec<usize>], field: Field, start: Starter<'b, 'c>) -> Self {
        let n = tensors.iter().flatten().max().map_or(0, |&m| m + 1);
        let mut bucket = vec![None; n];
        for (k, ts) in tensors.iter().enumerate() {
            for &i in ts {
                bucket[i] = Some(k);
            }
        }
        let missing = tensors.iter().map(Vec::len).collect();
        ReadyHook { tensors, field, bucket, missing, start, secs: 0.0 }
    }

    /// Tensors of the plan never announced.
    fn unannounced(&self) -> Vec<usize> {
        let done: Vec<bool> = self.missing.iter().map(|&m| m == 0).collect();
        self.tensors.iter().zip(done).filter(|(_, d)| !d).flat_map(|(ts, _)| ts.iter().copied()).collect()
    }
}

impl<B: Backend> GradReady<B> for ReadyHook<'_, '_, '_> {
    fn ready(&mut self, be: &B, p: &Params<B>, i: usize) -> Result<()> {
        let Some(k) = self.bucket.get(i).copied().flatten() else { return Ok(()) };
        let t0 = Instant::now();
        if self.missing[k] == 0 {
            return Err(MfdError::other(format!("gradient of tensor {i} announced twice")));
        }
        self.missing[k] -= 1;
        let (ts, field) = (&self.tensors[k], self.field);
        let r = match (&mut self.start, self.missing[k] == 0) {
            (Starter::Host(start), true) => start.start(k, &mut |data| pack_into(be, p, field, ts, data)),
            (Starter::Host(start), false) => {
                start.progress();
                Ok(())
            }
            (Starter::Device(start), true) => start.start(be, p, field, ts, k),
            (Starter::Device(_), false) => Ok(()),
        };
        self.secs += t0.elapsed().as_secs_f64();
        r
    }
}

/// Copy tensors `ts` (their gradients or values) one after the other into `data`.
fn pack_into<B: Backend>(be: &B, p: &Params<B>, field: Field, ts: &[usize], data: &mut [f32]) -> Result<()> {
    let mut off = 0;
    for &i in ts {
        let src = match field {
            Field::Grads => &p.grads[i],
            Field::Values => &p.values[i],
        };
        let n = be.buf_len(src);
        be.download(src, &mut data[off..off + n])?;
        off += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::NoReduce;
    use crate::config::{AdversaryConfig, ModelConfig};
    use crate::dist::single::Single;
    use crate::model::grad_ready::RecordOrder;
    use crate::model::metadata::{MappingConfig, MetadataTable};
    use crate::model::mfd::Mfd;
    use crate::model::params::Init;

    #[test]
    fn plan_covers_the_group_in_reverse_and_respects_the_cap() {
        let mut t = ParamTable::default();
        t.add("a", &[100], Init::Const(1.0), Group::Model);
        t.add("b", &[300], Init::Const(2.0), Group::Model);
        t.add("adv", &[50], Init::Const(3.0), Group::Adversary);
        t.add("c", &[100], Init::Const(3.0), Group::Model);
        t.add("d", &[100], Init::Const(4.0), Group::Model);
        // cap 256 floats: [d, c] = 200, [b] alone (300 > cap), [a].
        let bk = Buckets::new(&t, Group::Model, Field::Grads, 256.0 * 4.0 / (1024.0 * 1024.0));
        assert_eq!(bk.tensors, vec![vec![4, 3], vec![1], vec![0]]);
        assert_eq!(bk.elements(), 600);
    }

    #[test]
    fn pack_unpack_round_trip_scales() {
        let be = CpuBackend;
        let mut t = ParamTable::default();
        t.add("a", &[3], Init::Const(1.0), Group::Model);
        t.add("b", &[2], Init::Const(2.0), Group::Model);
        let host = t.init_host(1);
        let mut p = Params::new(&be, t.clone(), &host).unwrap();
        let mut bk = Buckets::new(&t, Group::Model, Field::Values, 4.0);
        bk.pack(&be, &p).unwrap();
        Single.sum_buckets(bk.host_mut(), &mut || Ok(())).unwrap();
        bk.unpack(&be, &mut p, 0.5).unwrap();
        assert_eq!(p.to_host(&be).unwrap(), vec![vec![0.5; 3], vec![1.0; 2]]);
    }

    /// A tiny model (C = 4, T = 128, O = 5) with hypernetworks (one variable in both direct and interact, a null
    /// transform, embed, linear and multihot modules) or the free head, and one batch for it.
    fn tiny_model(metadata: bool) -> (CpuBackend, Mfd<CpuBackend>, Vec<u8>, Vec<u8>) {
        // The tiny whole-model tests' metadata (tests/data), shared with tests/model_grad.rs and tests/cuda_step.rs.
        const MAPPING: &str = include_str!("../../tests/data/tiny_mapping.toml");
        const METADATA: &str = include_str!("../../tests/data/tiny_metadata.tsv");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.tsv");
        std::fs::write(&path, METADATA).unwrap();
        let classes: Vec<String> = (0..5).map(|i| format!("E{i}")).collect();
        let table = MetadataTable::load(&path, &classes).unwrap();
        let mapping = MappingConfig::parse(MAPPING, std::path::Path::new("mapping.toml")).unwrap();
        let mcfg = ModelConfig {
            c: 4,
            seq_len: 128,
            crop: 0,
            tower_layers: 6,
            dilated_layers: 2,
            dilation_growth: 1.5,
            metadata,
        };
        let acfg = AdversaryConfig {
            enabled: true,
            hidden: 8,
            layers: 2,
            shared_predictor: false,
            lr: 1e-3,
            steps_per_model_step: 1,
            reuse_model_backward: true,
        };
        let be = CpuBackend;
        let model = Mfd::new(&be, &mcfg, &acfg, &mapping, &table, 8, 3).unwrap();
        let mut rng = crate::rng::Rng::new(5);
        let tokens: Vec<u8> = (0..B * 128).map(|_| rng.below(17) as u8).collect();
        let labels: Vec<u8> = (0..B * 8).map(|i| if i % 8 == 0 { rng.below(32) as u8 } else { 0 }).collect();
        (be, model, tokens, labels)
    }

    const B: usize = 6;

    /// Records the order in which buckets are started and what they were filled with.
    #[derive(Default)]
    struct RecordStart {
        order: Vec<usize>,
        filled: Vec<Vec<f32>>,
        lens: Vec<usize>,
    }

    impl BucketStart for RecordStart {
        fn start(&mut self, k: usize, fill: &mut dyn FnMut(&mut [f32]) -> Result<()>) -> Result<()> {
            let mut data = vec![f32::NAN; self.lens[k]];
            fill(&mut data)?;
            self.order.push(k);
            self.filled.push(data);
            Ok(())
        }
    }

    #[test]
    fn the_hook_announces_every_model_tensor_once_in_bucket_plan_order() {
        for metadata in [true, false] {
            let (be, mut m, tokens, labels) = tiny_model(metadata);
            let mut rec = RecordOrder::default();
            m.model_loss_backward_hooked(&be, &tokens, &labels, B, 0.5, true, &mut NoReduce, &mut rec).unwrap();
            let plan = Buckets::new(&m.params.table, Group::Model, Field::Grads, 4.0);
            assert_eq!(rec.0, plan.order(), "metadata = {metadata}");
            let n_model = m.params.table.specs.iter().filter(|s| s.group == Group::Model).count();
            assert_eq!(rec.0.len(), n_model);
            // Whatever the cap, buckets complete in plan order: each is started once, 0, 1, 2, ...
            for floats in [1.0, 40.0, 300.0, 1e6] {
                let mut bk = Buckets::new(&m.params.table, Group::Model, Field::Grads, floats * 4.0 / 1048576.0);
                let mut start =
                    RecordStart { lens: bk.host.iter().map(|h| h.data.len()).collect(), ..Default::default() };
                m.params.zero_grads(&be, Group::Model).unwrap();
                let mut hook = ReadyHook::new(&bk.tensors, Field::Grads, Starter::Host(&mut start));
                m.model_loss_backward_hooked(&be, &tokens, &labels, B, 0.5, true, &mut NoReduce, &mut hook).unwrap();
                assert!(hook.unannounced().is_empty());
                assert_eq!(start.order, (0..bk.tensors.len()).collect::<Vec<_>>(), "cap {floats} floats");
                // Packed while the backward ran, each bucket holds the final gradients (as a pack afterwards).
                bk.pack(&be, &m.params).unwrap();
                let after: Vec<Vec<f32>> = bk.host.iter().map(|h| h.data.clone()).collect();
                assert_eq!(start.filled, after, "cap {floats} floats");
            }
        }
    }

    #[test]
    fn the_hooked_backward_gives_the_plain_backwards_gradients() {
        let (be, mut m, tokens, labels) = tiny_model(true);
        let plain = m.model_loss_backward(&be, &tokens, &labels, B, 0.5, true, &mut NoReduce).unwrap();
        let g_plain = m.params.grads_to_host(&be).unwrap();
        m.params.zero_grads(&be, Group::Model).unwrap();
        m.params.zero_grads(&be, Group::Adversary).unwrap();
        let mut bk = Buckets::new(&m.params.table, Group::Model, Field::Grads, 1e-4);
        let mut work = |phase: Phase<'_, CpuBackend>| -> Result<()> {
            if let Phase::Backward(hook) = phase {
                let t = m.model_loss_backward_hooked(&be, &tokens, &labels, B, 0.5, true, &mut NoReduce, hook)?;
                assert_eq!(t, plain);
            }
            Ok(())
        };
        bk.sum_overlapped(&be, &Single, &mut work).unwrap();
        assert_eq!(m.params.grads_to_host(&be).unwrap(), g_plain);
        // One rank: the buckets hold the gradients themselves; unpacking them changes nothing.
        bk.unpack(&be, &mut m.params, 1.0).unwrap();
        assert_eq!(m.params.grads_to_host(&be).unwrap(), g_plain);
    }

    #[test]
    fn a_tensor_never_announced_is_an_error_naming_it() {
        let mut t = ParamTable::default();
        t.add("a", &[3], Init::Const(1.0), Group::Model);
        t.add("b", &[2], Init::Const(2.0), Group::Model);
        let be = CpuBackend;
        let host = t.init_host(1);
        let p = Params::new(&be, t.clone(), &host).unwrap();
        let mut bk = Buckets::new(&t, Group::Model, Field::Values, 4.0 * 2.0 / 1048576.0);
        assert_eq!(bk.tensors, vec![vec![1], vec![0]]);
        let mut work = |phase: Phase<'_, CpuBackend>| -> Result<()> {
            match phase {
                Phase::Backward(hook) => hook.ready(&be, &p, 1),
                Phase::During => Ok(()),
            }
        };
        let err = bk.sum_overlapped(&be, &Single, &mut work).unwrap_err().to_string();
        assert!(err.contains("[0]"), "{err}");
    }
}
