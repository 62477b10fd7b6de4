//! `Single`: the one-rank communicator (no MPI, or a build without the `mpi` feature). Every collective is the
//! identity; `during` of a bucketed all-reduce simply runs.

use crate::dist::comm::{Comm, HostBucket};
use crate::error::Result;

#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl Comm for Single {
    fn name(&self) -> &'static str {
        "single"
    }
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn sum_f64(&self, _v: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f64(&self, _v: &mut [f64], _root: usize) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn sum_buckets(&self, _buckets: &mut [HostBucket], during: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        during()
    }
    fn gather_bytes(&self, local: &[u8], _root: usize) -> Result<Vec<Vec<u8>>> {
        Ok(vec![local.to_vec()])
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn split(&self, _color: usize) -> Result<Box<dyn Comm>> {
        Ok(Box::new(Single))
    }
}
