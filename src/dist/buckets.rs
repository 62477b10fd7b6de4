//! Bucketed all-reduce of one parameter group's gradients (or values) through host buckets.
//!
//! Key decisions:
//! - Buckets hold whole tensors, taken in reverse registration order (the order backward finishes them: head and
//!   hypernetworks before the trunk's first layers), each closed once it reaches `dist.bucket_mb`; a tensor larger
//!   than a bucket gets a bucket of its own (as PyTorch DDP's `bucket_cap_mb`).
//! - Three phases so the caller can overlap: `pack` (device -> host buckets), `Comm::sum_buckets` (non-blocking
//!   all-reduces of every bucket around the caller's `during` work), `unpack` (scale, host -> device). The model's
//!   gradients are reduced while the adversary step runs; overlap inside the model's backward needs a per-layer
//!   gradient-ready hook in `model/` and is not done yet.

use crate::backend::Backend;
use crate::dist::comm::{Comm, HostBucket};
use crate::error::Result;
use crate::model::params::{Group, ParamTable, Params};

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
        Buckets { group, field, tensors, host }
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
        for (ts, hb) in self.tensors.iter().zip(self.host.iter_mut()) {
            let mut off = 0;
            for &i in ts {
                let src = match self.field {
                    Field::Grads => &params.grads[i],
                    Field::Values => &params.values[i],
                };
                let n = be.buf_len(src);
                be.download(src, &mut hb.data[off..off + n])?;
                off += n;
            }
        }
        Ok(())
    }

    /// Write `scale` times the buckets back into the group's buffers.
    pub fn unpack<B: Backend>(&mut self, be: &B, params: &mut Params<B>, scale: f32) -> Result<()> {
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
        self.pack(be, params)?;
        comm.sum_buckets(&mut self.host, &mut || Ok(()))?;
        self.unpack(be, params, scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::dist::single::Single;
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
}
