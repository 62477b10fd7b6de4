//! A multi-layer perceptron over (N, D) row matrices: `Linear -> [BatchNorm] -> act` for hidden layers, then a
//! final Linear. The hypernetworks use ReLU without BatchNorm (mfd-spec.md 3.2-3.3); the adversarial predictors
//! use BatchNorm + LeakyReLU (4.2). Tensor names follow PyTorch's `nn.Sequential` indices
//! (`<prefix>.0.weight`, `<prefix>.1.weight` for a BatchNorm right after, ...), so a state dict loads directly.

use crate::backend::{Activation, Backend, BnShape, LinearShape, Reduce};
use crate::error::Result;
use crate::model::block::two_mut;
use crate::model::params::{bn_tensors, BnIdx, Group, LinearIdx, ParamTable, Params};

pub struct Mlp<B: Backend> {
    pub linears: Vec<LinearIdx>,
    /// BatchNorm after each hidden linear (None for the hypernetworks).
    pub bns: Vec<Option<BnIdx>>,
    pub act: Activation,
    cache: Option<Cache<B>>,
}

struct Cache<B: Backend> {
    n: usize,
    /// Input of each linear: xs[0] is a copy of the MLP input, xs[j + 1] the activation after hidden layer j.
    xs: Vec<B::Buf>,
    /// Output of each linear (N, d_out); the last one is the MLP output.
    zs: Vec<B::Buf>,
    /// BatchNorm outputs of hidden layers (empty buffers when no BatchNorm).
    ns: Vec<B::Buf>,
    save_mean: Vec<B::Buf>,
    save_invstd: Vec<B::Buf>,
    dz: Vec<B::Buf>,
    dn: Vec<B::Buf>,
    dxs: Vec<B::Buf>,
}

impl<B: Backend> Mlp<B> {
    /// Register an MLP with widths `dims` = [d_in, h1, ..., d_out] under `prefix`.
    pub fn new(
        t: &mut ParamTable,
        prefix: &str,
        dims: &[usize],
        batch_norm: bool,
        act: Activation,
        group: Group,
    ) -> Self {
        assert!(dims.len() >= 2, "an MLP needs an input and an output width");
        let mut linears = Vec::new();
        let mut bns = Vec::new();
        let mut seq = 0;
        for j in 0..dims.len() - 1 {
            linears.push(t.add_linear(&format!("{prefix}.{seq}"), dims[j], dims[j + 1], group));
            seq += 1;
            if j + 2 < dims.len() {
                if batch_norm {
                    bns.push(Some(t.add_bn(&format!("{prefix}.{seq}"), dims[j + 1], group)));
                    seq += 1;
                } else {
                    bns.push(None);
                }
                seq += 1; // the activation module
            }
        }
        Mlp { linears, bns, act, cache: None }
    }

    /// A second handle on the same parameters with its own activation cache (the reference's shared predictor is
    /// called twice per loss; each call needs its own saved activations for backward).
    pub fn share(&self) -> Self {
        Mlp { linears: self.linears.clone(), bns: self.bns.clone(), act: self.act, cache: None }
    }

    /// The output (N, d_out) of the last forward.
    pub fn output(&self) -> &B::Buf {
        self.cache.as_ref().expect("forward before output").zs.last().expect("non-empty")
    }

    pub fn d_in(&self) -> usize {
        self.linears[0].d_in
    }

    pub fn d_out(&self) -> usize {
        self.linears.last().expect("non-empty").d_out
    }

    fn ensure_cache(&mut self, be: &B, n: usize) -> Result<()> {
        if self.cache.as_ref().is_some_and(|c| c.n == n) {
            return Ok(());
        }
        let mut c = Cache {
            n,
            xs: vec![],
            zs: vec![],
            ns: vec![],
            save_mean: vec![],
            save_invstd: vec![],
            dz: vec![],
            dn: vec![],
            dxs: vec![],
        };
        for (j, lin) in self.linears.iter().enumerate() {
            c.xs.push(be.alloc(n * lin.d_in)?);
            c.dxs.push(be.alloc(n * lin.d_in)?);
            c.zs.push(be.alloc(n * lin.d_out)?);
            c.dz.push(be.alloc(n * lin.d_out)?);
            let has_bn = self.bns.get(j).is_some_and(|b| b.is_some());
            let bn_len = if has_bn { n * lin.d_out } else { 1 };
            c.ns.push(be.alloc(bn_len)?);
            c.dn.push(be.alloc(bn_len)?);
            c.save_mean.push(be.alloc(if has_bn { lin.d_out } else { 1 })?);
            c.save_invstd.push(be.alloc(if has_bn { lin.d_out } else { 1 })?);
        }
        self.cache = Some(c);
        Ok(())
    }

    /// y (N, d_out) of x (N, d_in); returns a buffer owned by the MLP until its next forward.
    pub fn forward(
        &mut self,
        be: &B,
        p: &mut Params<B>,
        x: &B::Buf,
        n: usize,
        train: bool,
        red: &mut dyn Reduce,
    ) -> Result<&B::Buf> {
        self.ensure_cache(be, n)?;
        let c = self.cache.as_mut().expect("ensured");
        be.copy(x, &mut c.xs[0])?;
        for (j, lin) in self.linears.iter().enumerate() {
            let s = LinearShape { n, d_in: lin.d_in, d_out: lin.d_out };
            be.linear_fwd(s, &c.xs[j], &p.values[lin.w], Some(&p.values[lin.b]), &mut c.zs[j])?;
            if j + 1 == self.linears.len() {
                break;
            }
            let act_in = match self.bns[j] {
                Some(bn) => {
                    if train {
                        bn_train_fwd(be, p, c, j, lin.d_out, bn, red)?;
                    } else {
                        let bs = BnShape { b: n, c: lin.d_out, l: 1 };
                        let (gamma, beta, rmean, rvar) = bn_tensors(&mut p.values, bn);
                        be.batch_norm_eval_fwd(bs, &c.zs[j], gamma, beta, rmean, rvar, &mut c.ns[j])?;
                    }
                    &c.ns[j]
                }
                None => &c.zs[j],
            };
            let (xs_lo, xs_hi) = c.xs.split_at_mut(j + 1);
            let _ = xs_lo;
            be.activation_fwd(self.act, act_in, &mut xs_hi[0])?;
        }
        Ok(c.zs.last().expect("non-empty"))
    }

    /// Apply the BatchNorm running-statistics update of the last training forward once more, from its cached
    /// layer inputs (what a second forward of the same input would do to the running statistics; the saved
    /// moments and normalised outputs are recomputed to the same values).
    pub fn repeat_running_stats(&mut self, be: &B, p: &mut Params<B>, red: &mut dyn Reduce) -> Result<()> {
        let c = self.cache.as_mut().expect("forward before repeat_running_stats");
        for (j, bn) in self.bns.iter().enumerate() {
            let Some(bn) = *bn else { continue };
            bn_train_fwd(be, p, c, j, self.linears[j].d_out, bn, red)?;
        }
        Ok(())
    }

    /// Backward from dy (N, d_out) through the last forward: parameter gradients accumulated; returns dx (N, d_in)
    /// when `need_dx` (else the returned buffer is not meaningful).
    pub fn backward(
        &mut self,
        be: &B,
        p: &mut Params<B>,
        dy: &B::Buf,
        need_dx: bool,
        red: &mut dyn Reduce,
    ) -> Result<&B::Buf> {
        let c = self.cache.as_mut().expect("forward before backward");
        let n = c.n;
        let last = self.linears.len() - 1;
        be.copy(dy, &mut c.dz[last])?;
        for j in (0..self.linears.len()).rev() {
            let lin = self.linears[j];
            let s = LinearShape { n, d_in: lin.d_in, d_out: lin.d_out };
            let (dw, db) = two_mut(&mut p.grads, lin.w, lin.b);
            let want_dx = j > 0 || need_dx;
            let dx = if want_dx { Some(&mut c.dxs[j]) } else { None };
            be.linear_bwd(s, &c.xs[j], &p.values[lin.w], &c.dz[j], dx, dw, Some(db))?;
            if j == 0 {
                break;
            }
            // xs[j] = act(bn(zs[j-1])) or act(zs[j-1]): back through the activation and the BatchNorm.
            let h = j - 1;
            let hl = self.linears[h];
            let (dz_lo, _) = c.dz.split_at_mut(j);
            match self.bns[h] {
                Some(bn) => {
                    be.activation_bwd(self.act, &c.ns[h], &c.dxs[j], &mut c.dn[h])?;
                    let bs = BnShape { b: n, c: hl.d_out, l: 1 };
                    let (dgamma, dbeta) = two_mut(&mut p.grads, bn.gamma, bn.beta);
                    be.batch_norm_bwd(
                        bs,
                        &c.zs[h],
                        &c.dn[h],
                        &p.values[bn.gamma],
                        &c.save_mean[h],
                        &c.save_invstd[h],
                        &mut dz_lo[h],
                        dgamma,
                        dbeta,
                        red,
                    )?;
                }
                None => be.activation_bwd(self.act, &c.zs[h], &c.dxs[j], &mut dz_lo[h])?,
            }
        }
        Ok(&c.dxs[0])
    }
}

/// Training-mode BatchNorm of hidden layer `j` (width `d`) from the cached linear output: normalised output, saved
/// moments and the running-statistics update. Shared by the forward and `repeat_running_stats`.
fn bn_train_fwd<B: Backend>(
    be: &B,
    p: &mut Params<B>,
    c: &mut Cache<B>,
    j: usize,
    d: usize,
    bn: BnIdx,
    red: &mut dyn Reduce,
) -> Result<()> {
    let bs = BnShape { b: c.n, c: d, l: 1 };
    let (gamma, beta, rmean, rvar) = bn_tensors(&mut p.values, bn);
    be.batch_norm_train_fwd(
        bs,
        &c.zs[j],
        gamma,
        beta,
        rmean,
        rvar,
        &mut c.save_mean[j],
        &mut c.save_invstd[j],
        &mut c.ns[j],
        red,
    )
}
