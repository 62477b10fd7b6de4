//! The pre-activation convolution block, `BatchNorm -> GELU -> Conv1d (no bias)`, optionally residual
//! (`x + block(x)`), the unit the whole trunk is made of (mfd-spec.md 2.1). Holds its parameter indices and the
//! activations saved for backward at the current batch size.

use crate::backend::{Activation, Backend, BnShape, Conv1dShape, Reduce};
use crate::error::Result;
use crate::model::grad_ready::GradReady;
use crate::model::params::{bn_tensors, BnIdx, Params};

pub struct ConvBlock<B: Backend> {
    pub bn: BnIdx,
    pub w: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub dilation: usize,
    pub residual: bool,
    /// Saved at batch `b` and length `l`: normalised (B, C_in, L) and activated (B, C_in, L) inputs of the conv.
    cache: Option<Cache<B>>,
}

struct Cache<B: Backend> {
    b: usize,
    l: usize,
    normed: B::Buf,
    act: B::Buf,
    save_mean: B::Buf,
    save_invstd: B::Buf,
    // backward work buffers
    d_act: B::Buf,
    d_normed: B::Buf,
}

impl<B: Backend> ConvBlock<B> {
    pub fn new(bn: BnIdx, w: usize, c_in: usize, c_out: usize, k: usize, dilation: usize, residual: bool) -> Self {
        assert!(!residual || c_in == c_out, "a residual block keeps its width");
        ConvBlock { bn, w, c_in, c_out, k, dilation, residual, cache: None }
    }

    fn conv_shape(&self, b: usize, l: usize) -> Conv1dShape {
        Conv1dShape { b, c_in: self.c_in, c_out: self.c_out, l, k: self.k, dilation: self.dilation }
    }

    fn ensure_cache(&mut self, be: &B, b: usize, l: usize) -> Result<()> {
        if self.cache.as_ref().is_some_and(|c| c.b == b && c.l == l) {
            return Ok(());
        }
        let n_in = b * self.c_in * l;
        self.cache = Some(Cache {
            b,
            l,
            normed: be.alloc(n_in)?,
            act: be.alloc(n_in)?,
            save_mean: be.alloc(self.c_in)?,
            save_invstd: be.alloc(self.c_in)?,
            d_act: be.alloc(n_in)?,
            d_normed: be.alloc(n_in)?,
        });
        Ok(())
    }

    /// out (B, C_out, L) = block(x (B, C_in, L)) (+ x when residual).
    pub fn forward(
        &mut self,
        be: &B,
        p: &mut Params<B>,
        x: &B::Buf,
        out: &mut B::Buf,
        b: usize,
        l: usize,
        train: bool,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        self.ensure_cache(be, b, l)?;
        let shape = self.conv_shape(b, l);
        let bn_shape = BnShape { b, c: self.c_in, l };
        let c = self.cache.as_mut().expect("cache was just ensured");
        let (gamma, beta, rmean, rvar) = bn_tensors(&mut p.values, self.bn);
        if train {
            be.batch_norm_gelu_train_fwd(
                bn_shape,
                x,
                gamma,
                beta,
                rmean,
                rvar,
                &mut c.save_mean,
                &mut c.save_invstd,
                &mut c.normed,
                &mut c.act,
                red,
            )?;
        } else {
            be.batch_norm_eval_fwd(bn_shape, x, gamma, beta, rmean, rvar, &mut c.normed)?;
            be.activation_fwd(Activation::Gelu, &c.normed, &mut c.act)?;
        }
        be.conv1d_fwd(shape, &c.act, &p.values[self.w], out)?;
        if self.residual {
            be.axpy(1.0, x, out)?;
        }
        Ok(())
    }

    /// Backward from dy (B, C_out, L) given the forward input x: dx (B, C_in, L) written (including the residual
    /// path, and `skip` when given: the gradient of a residual path around this block that its caller owns); the
    /// conv weight and BatchNorm gradients accumulated. `hook` hears the conv weight, then the
    /// BatchNorm's beta and gamma (reverse registration order), each as soon as its gradient is final.
    pub fn backward(
        &mut self,
        be: &B,
        p: &mut Params<B>,
        x: &B::Buf,
        dy: &B::Buf,
        dx: &mut B::Buf,
        skip: Option<&B::Buf>,
        red: &mut dyn Reduce,
        hook: &mut dyn GradReady<B>,
    ) -> Result<()> {
        let c = self.cache.as_mut().expect("forward before backward");
        let shape =
            Conv1dShape { b: c.b, c_in: self.c_in, c_out: self.c_out, l: c.l, k: self.k, dilation: self.dilation };
        let bn_shape = BnShape { b: c.b, c: self.c_in, l: c.l };
        be.conv1d_bwd(shape, &c.act, &p.values[self.w], dy, &mut c.d_act, &mut p.grads[self.w])?;
        hook.ready(be, p, self.w)?;
        assert!(!(self.residual && skip.is_some()), "a residual block owns its skip path");
        let skip = if self.residual { Some(dy) } else { skip };
        let (dgamma, dbeta) = two_mut(&mut p.grads, self.bn.gamma, self.bn.beta);
        be.batch_norm_gelu_bwd(
            bn_shape,
            x,
            &c.normed,
            &c.d_act,
            &p.values[self.bn.gamma],
            &p.values[self.bn.beta],
            &c.save_mean,
            &c.save_invstd,
            skip,
            &mut c.d_normed,
            dx,
            dgamma,
            dbeta,
            red,
        )?;
        hook.ready(be, p, self.bn.beta)?;
        hook.ready(be, p, self.bn.gamma)?;
        Ok(())
    }
}

/// Two distinct mutable elements of a slice.
pub fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert!(i != j, "two_mut needs distinct indices");
    if i < j {
        let (a, b) = v.split_at_mut(j);
        (&mut a[i], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(i);
        (&mut b[0], &mut a[j])
    }
}
