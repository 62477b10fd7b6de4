//! Metadata hypernetworks (mfd-spec.md 3.2-3.3): per group (biological, technical) the output-layer weights
//! W_g (O, C) = [direct | interact], recomputed from the whole metadata table on every forward.
//! - one transform module per variable of the group (a variable listed in both `direct` and `interact` has one
//!   module whose gradient sums both uses): embed = MLP d -> 2k -> 2k -> k (ReLU), linear/multihot = Linear,
//!   null = identity;
//! - direct: the transformed direct variables concatenated (width d_dir) are the first d_dir columns of W_g;
//! - interact: the transformed interact variables concatenated (d_int) go through the MLP
//!   d_int -> 2 out_dim -> 2 out_dim -> C - d_dir (ReLU), which fills the remaining columns.
//!
//! `HyperNet::free` is the no-metadata baseline (`model.metadata = false`): each group's W is a free learned
//! tensor `head.{bio,tech}.weight` (O, C), so the head is a plain (O, 2C) linear layer.

use crate::backend::{Activation, Backend, ChannelCopy, NoReduce};
use crate::error::{MfdError, Result};
use crate::model::grad_ready::GradReady;
use crate::model::metadata::{EncodedVar, Group as MapGroup, MappingConfig, MetadataTable, Transform};
use crate::model::mlp::Mlp;
use crate::model::params::{Group, Init, ParamTable, Params};

/// One variable's module inside a group.
struct VarModule<B: Backend> {
    name: String,
    /// The encoded metadata (O, d) on the device.
    input: B::Buf,
    d_in: usize,
    mlp: Option<Mlp<B>>,
    d_out: usize,
    /// Gradient of the module output (O, d_out), summed over its uses.
    d_out_buf: Option<B::Buf>,
}

pub struct GroupNet<B: Backend> {
    vars: Vec<VarModule<B>>,
    direct: Vec<usize>,
    interact: Vec<usize>,
    d_dir: usize,
    d_int: usize,
    interact_mlp: Option<Mlp<B>>,
    interact_in: Option<B::Buf>,
    /// Gradient of the interact MLP's output (O, C - d_dir).
    interact_dy: Option<B::Buf>,
    /// W (O, C).
    w: Option<B::Buf>,
    o: usize,
    c: usize,
    /// The baseline's free W (O, C): its parameter index.
    free: Option<usize>,
}

/// Both hypernetworks plus the encoded inputs.
pub struct HyperNet<B: Backend> {
    pub bio: GroupNet<B>,
    pub tech: GroupNet<B>,
    /// Vocabularies per variable, for reports and checkpoints.
    pub encodings: Vec<EncodedVar>,
}

impl<B: Backend> HyperNet<B> {
    pub fn new(be: &B, t: &mut ParamTable, mapping: &MappingConfig, table: &MetadataTable, c: usize) -> Result<Self> {
        let mut encodings = Vec::new();
        for name in mapping.used_variables() {
            encodings.push(table.encode(&name, &mapping.variables[&name])?);
        }
        let o = table.num_classes();
        let bio = GroupNet::new(be, t, "hyper.bio", "biological", &mapping.biological, mapping, &encodings, o, c)?;
        let tech = GroupNet::new(be, t, "hyper.tech", "technical", &mapping.technical, mapping, &encodings, o, c)?;
        Ok(HyperNet { bio, tech, encodings })
    }

    /// The no-metadata baseline: W_bio and W_tech are free parameters (O, C) each, initialised like a Linear
    /// (fan_in C).
    pub fn free(be: &B, t: &mut ParamTable, o: usize, c: usize) -> Result<Self> {
        let mut group = |g: &str| -> Result<GroupNet<B>> {
            let i = t.add(format!("head.{g}.weight"), &[o, c], Init::Uniform { fan_in: c }, Group::Model);
            Ok(GroupNet {
                vars: vec![],
                direct: vec![],
                interact: vec![],
                d_dir: 0,
                d_int: 0,
                interact_mlp: None,
                interact_in: None,
                interact_dy: None,
                w: Some(be.alloc(o * c)?),
                o,
                c,
                free: Some(i),
            })
        };
        Ok(HyperNet { bio: group("bio")?, tech: group("tech")?, encodings: vec![] })
    }
}

impl<B: Backend> GroupNet<B> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        be: &B,
        t: &mut ParamTable,
        prefix: &str,
        label: &str,
        g: &MapGroup,
        mapping: &MappingConfig,
        encodings: &[EncodedVar],
        o: usize,
        c: usize,
    ) -> Result<Self> {
        let mut vars: Vec<VarModule<B>> = Vec::new();
        let index_of = |name: &str, vars: &mut Vec<VarModule<B>>, t: &mut ParamTable| -> Result<usize> {
            if let Some(i) = vars.iter().position(|v| v.name == name) {
                return Ok(i);
            }
            let enc = encodings.iter().find(|e| e.name == name).expect("encoded every used variable");
            let var = &mapping.variables[name];
            let d_in = enc.width();
            let vp = format!("{prefix}.var.{name}");
            let (mlp, d_out) = match var.transform {
                Transform::Embed => {
                    let k = var.dim.expect("validated: embed has dim");
                    (Some(Mlp::new(t, &vp, &[d_in, 2 * k, 2 * k, k], false, Activation::Relu, Group::Model)), k)
                }
                Transform::Linear => {
                    let k = var.dim.unwrap_or(d_in);
                    (Some(Mlp::new(t, &vp, &[d_in, k], false, Activation::Relu, Group::Model)), k)
                }
                Transform::Multihot => {
                    (Some(Mlp::new(t, &vp, &[d_in, d_in], false, Activation::Relu, Group::Model)), d_in)
                }
                Transform::Null => (None, d_in),
            };
            vars.push(VarModule {
                name: name.to_string(),
                input: be.upload(&enc.values)?,
                d_in,
                mlp,
                d_out,
                d_out_buf: None,
            });
            Ok(vars.len() - 1)
        };
        let mut direct = Vec::new();
        for v in &g.direct {
            direct.push(index_of(v, &mut vars, t)?);
        }
        let mut interact = Vec::new();
        for v in &g.interact {
            interact.push(index_of(v, &mut vars, t)?);
        }
        let d_dir: usize = direct.iter().map(|&i| vars[i].d_out).sum();
        let d_int: usize = interact.iter().map(|&i| vars[i].d_out).sum();
        if d_dir > c || (d_dir == c && !interact.is_empty()) || (d_dir < c && interact.is_empty()) {
            return Err(MfdError::config(
                format!("metadata mapping {label}"),
                format!("direct variables are {d_dir} wide and model.c is {c}: need direct width < C with interact variables filling the rest (or exactly C without any)"),
            ));
        }
        let interact_mlp = (!interact.is_empty()).then(|| {
            let h = 2 * g.out_dim;
            Mlp::new(t, &format!("{prefix}.interact"), &[d_int, h, h, c - d_dir], false, Activation::Relu, Group::Model)
        });
        for v in vars.iter_mut() {
            v.d_out_buf = Some(be.alloc(o * v.d_out)?);
        }
        Ok(GroupNet {
            vars,
            direct,
            interact,
            d_dir,
            d_int,
            interact_in: if d_int > 0 { Some(be.alloc(o * d_int)?) } else { None },
            interact_dy: if interact_mlp.is_none() { None } else { Some(be.alloc(o * (c - d_dir))?) },
            interact_mlp,
            w: Some(be.alloc(o * c)?),
            o,
            c,
            free: None,
        })
    }

    /// The output of variable i's module after the last forward (its MLP's output, or the encoding itself).
    fn var_out(vars: &[VarModule<B>], i: usize) -> &B::Buf {
        match &vars[i].mlp {
            Some(m) => m.output(),
            None => &vars[i].input,
        }
    }

    /// W (O, C) from the metadata. Hypernetworks have no BatchNorm, so train and eval are the same computation.
    pub fn forward(&mut self, be: &B, p: &mut Params<B>) -> Result<&B::Buf> {
        let o = self.o;
        if let Some(i) = self.free {
            be.copy(&p.values[i], self.w.as_mut().expect("allocated"))?;
            return Ok(self.w.as_ref().expect("allocated"));
        }
        // Transform every variable once; each output stays in its MLP's cache until the next forward.
        for v in self.vars.iter_mut() {
            if let Some(m) = v.mlp.as_mut() {
                m.forward(be, p, &v.input, o, true, &mut NoReduce)?;
            }
        }
        let w = self.w.as_mut().expect("allocated");
        let mut off = 0;
        for &i in &self.direct {
            let d = self.vars[i].d_out;
            let cc = ChannelCopy { b: o, l: 1, c_src: d, src_off: 0, c_dst: self.c, dst_off: off, n: d };
            be.channel_copy(cc, Self::var_out(&self.vars, i), w, false)?;
            off += d;
        }
        if let Some(mlp) = self.interact_mlp.as_mut() {
            let xin = self.interact_in.as_mut().expect("allocated with the interact MLP");
            let mut ioff = 0;
            for &i in &self.interact {
                let d = self.vars[i].d_out;
                let cc = ChannelCopy { b: o, l: 1, c_src: d, src_off: 0, c_dst: self.d_int, dst_off: ioff, n: d };
                be.channel_copy(cc, Self::var_out(&self.vars, i), xin, false)?;
                ioff += d;
            }
            let y = mlp.forward(be, p, xin, o, true, &mut NoReduce)?;
            let n = self.c - self.d_dir;
            let cc = ChannelCopy { b: o, l: 1, c_src: n, src_off: 0, c_dst: self.c, dst_off: self.d_dir, n };
            be.channel_copy(cc, y, w, false)?;
        }
        Ok(self.w.as_ref().expect("allocated"))
    }

    /// The W of the last forward.
    pub fn weights(&self) -> &B::Buf {
        self.w.as_ref().expect("allocated")
    }

    /// Backward from dW (O, C); accumulates the hypernetwork's parameter gradients. `hook` hears every tensor of
    /// the group once, as soon as its gradient is final, in reverse registration order: the interact MLP first,
    /// then the variable modules last to first (they are independent, so walking them backwards changes no value).
    pub fn backward(&mut self, be: &B, p: &mut Params<B>, dw: &B::Buf, hook: &mut dyn GradReady<B>) -> Result<()> {
        let o = self.o;
        if let Some(i) = self.free {
            be.axpy(1.0, dw, &mut p.grads[i])?;
            return hook.ready(be, p, i);
        }
        for v in self.vars.iter_mut() {
            be.zero(v.d_out_buf.as_mut().expect("allocated"))?;
        }
        let mut off = 0;
        for &i in &self.direct {
            let d = self.vars[i].d_out;
            let cc = ChannelCopy { b: o, l: 1, c_src: self.c, src_off: off, c_dst: d, dst_off: 0, n: d };
            be.channel_copy(cc, dw, self.vars[i].d_out_buf.as_mut().expect("allocated"), true)?;
            off += d;
        }
        if let Some(mlp) = self.interact_mlp.as_mut() {
            let n = self.c - self.d_dir;
            let dy = self.interact_dy.as_mut().expect("allocated with the interact MLP");
            let cc = ChannelCopy { b: o, l: 1, c_src: self.c, src_off: self.d_dir, c_dst: n, dst_off: 0, n };
            be.channel_copy(cc, dw, dy, false)?;
            let dxin = mlp.backward(be, p, dy, true, &mut NoReduce)?;
            let mut ioff = 0;
            for &i in &self.interact {
                let d = self.vars[i].d_out;
                let cc = ChannelCopy { b: o, l: 1, c_src: self.d_int, src_off: ioff, c_dst: d, dst_off: 0, n: d };
                be.channel_copy(cc, dxin, self.vars[i].d_out_buf.as_mut().expect("allocated"), true)?;
                ioff += d;
            }
            Self::mlp_ready(be, p, mlp, hook)?;
        }
        for v in self.vars.iter_mut().rev() {
            if let Some(m) = v.mlp.as_mut() {
                m.backward(be, p, v.d_out_buf.as_ref().expect("allocated"), false, &mut NoReduce)?;
                Self::mlp_ready(be, p, m, hook)?;
            }
        }
        Ok(())
    }

    /// Tell `hook` that every tensor of `mlp` is final, in reverse registration order (per layer: BatchNorm beta,
    /// gamma if any, then the linear's bias and weight; last layer first).
    fn mlp_ready(be: &B, p: &Params<B>, mlp: &Mlp<B>, hook: &mut dyn GradReady<B>) -> Result<()> {
        for (j, lin) in mlp.linears.iter().enumerate().rev() {
            if let Some(Some(bn)) = mlp.bns.get(j) {
                hook.ready(be, p, bn.beta)?;
                hook.ready(be, p, bn.gamma)?;
            }
            hook.ready(be, p, lin.b)?;
            hook.ready(be, p, lin.w)?;
        }
        Ok(())
    }

    pub fn d_direct(&self) -> usize {
        self.d_dir
    }

    pub fn input_width(&self, name: &str) -> Option<usize> {
        self.vars.iter().find(|v| v.name == name).map(|v| v.d_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::model::grad_ready::NoHook;

    #[test]
    fn the_free_head_is_its_own_parameter_and_takes_the_gradient() {
        let be = CpuBackend;
        let (o, c) = (3, 2);
        let mut t = ParamTable::default();
        let mut h = HyperNet::<CpuBackend>::free(&be, &mut t, o, c).unwrap();
        let names: Vec<&str> = t.specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["head.bio.weight", "head.tech.weight"]);
        let host = t.init_host(1);
        let mut p = Params::new(&be, t, &host).unwrap();
        assert_eq!(h.bio.forward(&be, &mut p).unwrap(), &host[0]);
        assert_eq!(h.tech.forward(&be, &mut p).unwrap(), &host[1]);
        let dw: Vec<f32> = (0..o * c).map(|i| i as f32).collect();
        h.bio.backward(&be, &mut p, &dw, &mut NoHook).unwrap();
        h.bio.backward(&be, &mut p, &dw, &mut NoHook).unwrap();
        assert_eq!(p.grads[0], dw.iter().map(|v| 2.0 * v).collect::<Vec<f32>>());
        assert!(p.grads[1].iter().all(|&g| g == 0.0));
    }
}
