//! Named parameters and buffers of a model, each a backend buffer with its gradient, in PyTorch naming and layout
//! (architecture.md section 7), so a checkpoint maps 1:1 to a PyTorch state dict.
//!
//! Initialisation follows PyTorch's defaults: Conv1d and Linear weights and biases U(-1/sqrt(fan_in),
//! +1/sqrt(fan_in)) with fan_in = in * K; BatchNorm weight 1, bias 0, running mean 0, running var 1; the output
//! bias 0. Exact weight parity with the reference is impossible anyway (mfd-spec.md 10.27); the distributions match.

use crate::backend::Backend;
use crate::error::{MfdError, Result};
use crate::rng::Rng;

/// How a tensor is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Uniform {
        fan_in: usize,
    },
    Const(f32),
}

/// Which optimiser owns a tensor; buffers (BatchNorm running statistics) are owned by none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Model,
    Adversary,
    Buffer,
}

/// Host-side description of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    pub group: Group,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The list of tensor specs; `add` returns the index used by layers to find their tensors.
#[derive(Debug, Clone, Default)]
pub struct ParamTable {
    pub specs: Vec<ParamSpec>,
}

impl ParamTable {
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], init: Init, group: Group) -> usize {
        let name = name.into();
        debug_assert!(!self.specs.iter().any(|s| s.name == name), "duplicate parameter {name}");
        self.specs.push(ParamSpec { name, shape: shape.to_vec(), init, group });
        self.specs.len() - 1
    }

    /// A BatchNorm's four tensors under `prefix` ("<prefix>.weight", ".bias", ".running_mean", ".running_var").
    pub fn add_bn(&mut self, prefix: &str, c: usize, group: Group) -> BnIdx {
        BnIdx {
            gamma: self.add(format!("{prefix}.weight"), &[c], Init::Const(1.0), group),
            beta: self.add(format!("{prefix}.bias"), &[c], Init::Const(0.0), group),
            mean: self.add(format!("{prefix}.running_mean"), &[c], Init::Const(0.0), Group::Buffer),
            var: self.add(format!("{prefix}.running_var"), &[c], Init::Const(1.0), Group::Buffer),
        }
    }

    /// A Linear's weight (out, in) and bias (out) under `prefix`.
    pub fn add_linear(&mut self, prefix: &str, d_in: usize, d_out: usize, group: Group) -> LinearIdx {
        LinearIdx {
            w: self.add(format!("{prefix}.weight"), &[d_out, d_in], Init::Uniform { fan_in: d_in }, group),
            b: self.add(format!("{prefix}.bias"), &[d_out], Init::Uniform { fan_in: d_in }, group),
            d_in,
            d_out,
        }
    }

    pub fn count(&self, group: Group) -> usize {
        self.specs.iter().filter(|s| s.group == group).map(ParamSpec::numel).sum()
    }

    /// Host values initialised from `seed` (one derived stream per tensor name, so adding a tensor does not
    /// change the others).
    pub fn init_host(&self, seed: u64) -> Vec<Vec<f32>> {
        self.specs
            .iter()
            .map(|s| match s.init {
                Init::Const(v) => vec![v; s.numel()],
                Init::Uniform { fan_in } => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    let mut rng = Rng::derive(seed, &[name_hash(&s.name)]);
                    (0..s.numel()).map(|_| rng.uniform(-bound, bound) as f32).collect()
                }
            })
            .collect()
    }
}

fn name_hash(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnIdx {
    pub gamma: usize,
    pub beta: usize,
    pub mean: usize,
    pub var: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearIdx {
    pub w: usize,
    pub b: usize,
    pub d_in: usize,
    pub d_out: usize,
}

/// Device tensors: values and gradients (gradients exist for every tensor; buffers never use theirs).
pub struct Params<B: Backend> {
    pub table: ParamTable,
    pub values: Vec<B::Buf>,
    pub grads: Vec<B::Buf>,
}

impl<B: Backend> Params<B> {
    pub fn new(be: &B, table: ParamTable, host: &[Vec<f32>]) -> Result<Self> {
        if host.len() != table.specs.len() {
            return Err(MfdError::other(format!("{} host tensors for {} parameters", host.len(), table.specs.len())));
        }
        let mut values = Vec::with_capacity(host.len());
        let mut grads = Vec::with_capacity(host.len());
        for (spec, h) in table.specs.iter().zip(host) {
            if h.len() != spec.numel() {
                return Err(MfdError::Shape {
                    op: "params",
                    msg: format!("{}: {} values for shape {:?}", spec.name, h.len(), spec.shape),
                });
            }
            values.push(be.upload(h)?);
            grads.push(be.alloc(h.len())?);
        }
        Ok(Params { table, values, grads })
    }

    pub fn zero_grads(&mut self, be: &B, group: Group) -> Result<()> {
        for (spec, g) in self.table.specs.iter().zip(self.grads.iter_mut()) {
            if spec.group == group {
                be.zero(g)?;
            }
        }
        Ok(())
    }

    pub fn to_host(&self, be: &B) -> Result<Vec<Vec<f32>>> {
        self.values.iter().map(|v| be.to_host(v)).collect()
    }

    pub fn grads_to_host(&self, be: &B) -> Result<Vec<Vec<f32>>> {
        self.grads.iter().map(|v| be.to_host(v)).collect()
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.table.specs.iter().position(|s| s.name == name)
    }
}

/// The four tensors of a BatchNorm: (gamma, beta) read-only and (running_mean, running_var) mutable. `add_bn`
/// registers them consecutively, which is what makes this split borrow possible.
pub fn bn_tensors<T>(values: &mut [T], bn: BnIdx) -> (&T, &T, &mut T, &mut T) {
    assert!(
        bn.beta == bn.gamma + 1 && bn.mean == bn.gamma + 2 && bn.var == bn.gamma + 3,
        "BatchNorm tensors are consecutive"
    );
    let (head, tail) = values.split_at_mut(bn.mean);
    let (mean, var) = tail.split_at_mut(1);
    (&head[bn.gamma], &head[bn.beta], &mut mean[0], &mut var[0])
}
