#!/usr/bin/env python3
"""Independent PyTorch implementation of the MFD model and training step, written from mfd-spec.md (not from the
reference repository and not from our Rust code), used two ways:

  check  load an mfd checkpoint (safetensors, canonical names) and a batch, recompute the forward, the model loss,
         every gradient, the adversary loss gradients and one AMSGrad step, compare with `mfd step-dump` output,
         print the max abs / rel error per tensor and exit 1 when a tensor is above tolerance.
  bench  time full training steps (model loss fwd+bwd, AMSGrad, adversary loss fwd+bwd, AMSGrad) in sequences/s,
         eager and with torch.compile, on CPU (and CUDA when present); JSON on stdout (and --out). The batches are
         encoded before the clock starts and gradients are set to None, as in the reference's loop.
         `mfd bench train --torch-python PYTHON` runs this as its comparator (docs/PERFORMANCE.md, issue 21).
         --reference-src DIR times the reference implementation's own IEAquaticDilated and Lightning training_step
         instead, imported at run time from a checkout of its repository (needs pytorch_lightning, torchmetrics,
         pandas, pyyaml; its unused plotting / logging imports are stubbed when absent).

Model (mfd-spec.md 1-5): dinucleotide one-hot (16 channels AA..TT, N pairs all-zero) -> Conv1d k15 (bias) ->
residual pre-activation block k1 -> pool; tower stages (k5 block, residual k1 block, pool) with the float64
channel schedule; dilated residual blocks (k3 dilation floor(2*1.5^l) then k1); crop; pointwise block to 2C;
BatchNorm over the features; technical = [0, C), biological = [C, 2C). Output weights W_g (O, C) from the metadata
table: [direct transformed variables | interact MLP]. logits = f_t W_t^T + f_b W_b^T + b, BCE on probabilities.
Penalty: total_R2 of adversarial predictors (Linear-BN-LeakyReLU MLPs) in both directions (+ ||R||_F with
cov_and_adv, or alone without adversaries). Separate Adam(amsgrad) optimisers for the model and the adversaries.
Project choices (architecture.md 4): two predictors unless adversary.shared_predictor; `multihot` = Linear(d, d).

Pinned, tested with: torch 2.15.0 (CPU), safetensors 0.8.0, numpy 2.4.6, Python 3.11; --reference-src with
pytorch_lightning 2.6.6, torchmetrics 1.9.0, pandas 3.1.1, PyYAML 6.0.4 and HealthML/MFD commit 00e304e.
"""
import argparse
import json
import math
import os
import sys
import time
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # `check` only; `bench` (what `mfd bench train` runs) needs torch and numpy alone
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError:
    safe_open = load_file = None

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MAPPING = os.path.join(HERE, "..", "configs", "metadata_mapping.toml")

# ---------------------------------------------------------------------------------------------------------------
# Metadata encoding (mfd-spec.md 3.1-3.2, FORMATS: a constant numeric column encodes as 0 instead of NaN)


def read_metadata(dataset):
    with open(os.path.join(dataset, "manifest.toml"), "rb") as f:
        classes = tomllib.load(f)["classes"]
    with open(os.path.join(dataset, "metadata.tsv"), encoding="utf-8") as f:
        lines = [l.rstrip("\n").rstrip("\r") for l in f if l.strip()]
    header = lines[0].split("\t")
    rows = [l.split("\t") for l in lines[1:]]
    if [r[0] for r in rows] != list(classes):
        raise SystemExit(f"{dataset}/metadata.tsv rows do not follow the manifest's class order")
    return header, rows


def encode_variable(header, rows, name, var):
    col = [r[header.index(name)] for r in rows]
    kind = var["type"]
    if kind in ("float", "int"):
        x = np.array([float(s) for s in col], dtype=np.float64)
        sd = x.std()  # population std (ddof 0)
        z = (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)
        return z.astype(np.float32)[:, None]
    if kind == "date.year":
        pieces = [["nan"] if s in ("", "NaN", "nan") else [str(int(s.strip()[:4]))] for s in col]
    elif kind == "category":
        pieces = [["nan"] if s in ("", "NaN", "nan") else s.split(",") for s in col]
    else:
        raise SystemExit(f"unknown variable type {kind}")
    vocab = sorted({p for ps in pieces for p in ps})
    out = np.zeros((len(col), len(vocab)), dtype=np.float32)
    for i, ps in enumerate(pieces):
        for p in ps:
            out[i, vocab.index(p)] = 1.0
    return out


def mlp(dims, bn=False, act=nn.ReLU):
    layers = []
    for j in range(len(dims) - 1):
        layers.append(nn.Linear(dims[j], dims[j + 1]))
        if j + 2 < len(dims):
            if bn:
                layers.append(nn.BatchNorm1d(dims[j + 1]))
            layers.append(act())
    return nn.Sequential(*layers)


class GroupNet(nn.Module):
    """W_g (O, C) = [transformed direct variables | interact MLP(concat transformed interact variables)]."""

    def __init__(self, group, variables, encodings, c):
        super().__init__()
        self.direct, self.interact_vars = list(group.get("direct", [])), list(group.get("interact", []))
        self.var = nn.ModuleDict()
        widths = {}
        for name in dict.fromkeys(self.direct + self.interact_vars):
            v, d = variables[name], encodings[name].shape[1]
            t = v["transform"]
            if t == "embed":
                k = v["dim"]
                self.var[name] = mlp([d, 2 * k, 2 * k, k])
            elif t == "linear":
                k = v.get("dim", d)
                self.var[name] = mlp([d, k])
            elif t == "multihot":
                k = d
                self.var[name] = mlp([d, d])
            else:
                k = d
            widths[name] = k
            self.register_buffer("enc_" + name, torch.from_numpy(encodings[name]), persistent=False)
        d_dir = sum(widths[n] for n in self.direct)
        d_int = sum(widths[n] for n in self.interact_vars)
        self.interact = mlp([d_int, 2 * group["out_dim"], 2 * group["out_dim"], c - d_dir]) if self.interact_vars else None

    def forward(self):
        out = {}
        for name in dict.fromkeys(self.direct + self.interact_vars):
            x = getattr(self, "enc_" + name)
            out[name] = self.var[name](x) if name in self.var else x
        parts = [out[n] for n in self.direct]
        if self.interact is not None:
            parts.append(self.interact(torch.cat([out[n] for n in self.interact_vars], dim=1)))
        return torch.cat(parts, dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Trunk (mfd-spec.md 2)


class Block(nn.Module):
    """BatchNorm -> GELU(tanh) -> Conv1d (no bias, 'same' padding); y = x + block(x) when residual."""

    def __init__(self, c_in, c_out, k, dilation=1, residual=False):
        super().__init__()
        self.bn = nn.BatchNorm1d(c_in)
        self.conv = nn.Conv1d(c_in, c_out, k, padding=dilation * (k - 1) // 2, dilation=dilation, bias=False)
        self.residual = residual

    def forward(self, x):
        y = self.conv(F.gelu(self.bn(x), approximate="tanh"))
        return x + y if self.residual else y


class Stem(nn.Module):
    def __init__(self, c0):
        super().__init__()
        self.conv = nn.Conv1d(16, c0, 15, padding=7, bias=True)
        self.res = Block(c0, c0, 1, residual=True)


class Tower(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = Block(c_in, c_out, 5)
        self.res = Block(c_out, c_out, 1, residual=True)


class Dilated(nn.Module):
    def __init__(self, c, d):
        super().__init__()
        self.conv3 = Block(c, c, 3, dilation=d)
        self.conv1 = Block(c, c, 1)


def channel_schedule(c, layers):
    c0 = c // 2
    m = (c / c0) ** (1 / layers)
    return [int(c0 * m**l) for l in range(layers + 1)]


class Trunk(nn.Module):
    def __init__(self, c, crop, tower_layers=6, dilated_layers=2, growth=1.5):
        super().__init__()
        ch = channel_schedule(c, tower_layers)
        self.crop = crop
        self.stem = Stem(ch[0])
        self.tower = nn.ModuleList(Tower(ch[l], ch[l + 1]) for l in range(tower_layers))
        self.dilated = nn.ModuleList(Dilated(c, math.floor(2 * growth**l)) for l in range(dilated_layers))
        self.pointwise = Block(c, 2 * c, 1)
        self.features_bn = nn.BatchNorm1d(2 * c)

    def forward(self, onehot):  # (B, 16, T) -> (B, 2C)
        x = self.stem.res(self.stem.conv(onehot))
        x = F.max_pool1d(x, 2)
        for t in self.tower:
            x = F.max_pool1d(t.res(t.conv(x)), 2)
        for d in self.dilated:
            x = x + d.conv1(d.conv3(x))
        if self.crop:
            x = x[:, :, self.crop : x.shape[2] - self.crop]
        x = self.pointwise(x)
        return self.features_bn(x.reshape(x.shape[0], -1))


def standardize(x):
    """Column z-scores with the unbiased std; constant columns -> 0 (the reference's NaN -> 0)."""
    mean = x.mean(0, keepdim=True)
    sd = x.std(0, keepdim=True)
    ok = sd > 0
    return torch.where(ok, (x - mean) / torch.where(ok, sd, torch.ones_like(sd)), torch.zeros_like(x))


def corr_norm(a, b):
    r = standardize(a).T @ standardize(b) / a.shape[0]
    return torch.sqrt((r * r).sum())


def total_r2(pred, target):
    r = (standardize(pred) * standardize(target)).mean(0)
    return (r.clamp(-1.0, 1.0) ** 2).sum()


class Adversary(nn.Module):
    def __init__(self, c, hidden, layers, shared):
        super().__init__()
        dims = [c] + [hidden] * layers + [c]
        act = lambda: nn.LeakyReLU(0.01)  # noqa: E731
        self.bio_from_tech = mlp(dims, bn=True, act=act)
        self.tech_from_bio = mlp(dims, bn=True, act=act)
        self.shared = shared

    def scores(self, f_tech, f_bio):
        s_bio = total_r2(self.bio_from_tech(f_tech), f_bio)
        # The reference calls one predictor for both directions (mfd-spec.md 4.2); shared_predictor reproduces it.
        other = self.bio_from_tech if self.shared else self.tech_from_bio
        s_tech = total_r2(other(f_bio), f_tech)
        return s_bio, s_tech


class MFD(nn.Module):
    def __init__(self, cfg, mapping, encodings, o):
        super().__init__()
        m, a = cfg["model"], cfg["adversary"]
        self.c = m["c"]
        self.trunk = Trunk(m["c"], m["crop"], m.get("tower_layers", 6), m.get("dilated_layers", 2),
                           m.get("dilation_growth", 1.5))
        self.hyper = nn.ModuleDict({
            "bio": GroupNet(mapping["biological"], mapping["variables"], encodings, m["c"]),
            "tech": GroupNet(mapping["technical"], mapping["variables"], encodings, m["c"]),
        })
        self.head = nn.Module()
        self.head.bias = nn.Parameter(torch.zeros(o))
        self.adversary = Adversary(m["c"], a["hidden"], a["layers"], a.get("shared_predictor", False)) \
            if a["enabled"] else None
        self.lam = cfg["loss"]["lambda_indep"]
        self.cov_and_adv = cfg["loss"].get("cov_and_adv", True)

    def model_params(self):
        return [p for n, p in self.named_parameters() if not n.startswith("adversary.")]

    def forward(self, onehot, labels):
        """All forward quantities and the model loss (mfd-spec.md 4.4 steps 1-4)."""
        f = self.trunk(onehot)
        c = self.c
        f_tech, f_bio = f[:, :c], f[:, c:]
        w_tech, w_bio = self.hyper["tech"](), self.hyper["bio"]()
        logit_tech, logit_bio = f_tech @ w_tech.T, f_bio @ w_bio.T
        logits = logit_tech + logit_bio + self.head.bias
        probs = torch.sigmoid(logits)
        bce = F.binary_cross_entropy(probs, labels)
        corr = corr_norm(f_tech, f_bio)
        out = dict(features=f, w_tech=w_tech, w_bio=w_bio, logit_tech=logit_tech, logit_bio=logit_bio,
                   logits=logits, probs=probs, bce=bce, corr=corr)
        if self.adversary is not None and self.training:
            out["r2_bio"], out["r2_tech"] = self.adversary.scores(f_tech, f_bio)
            indep = out["r2_bio"] + out["r2_tech"] + (corr if self.cov_and_adv else 0.0)
        else:
            indep = corr
        out["loss"] = bce + self.lam * indep
        return out

    def adversary_loss(self, f):
        s_bio, s_tech = self.adversary.scores(f[:, : self.c].detach(), f[:, self.c :].detach())
        return -(s_bio + s_tech)


def onehot_from_bases(bases):
    """bases u8 (B, T+1) ASCII -> (B, 16, T) float: channel 4a+b of each dinucleotide, N pairs all zero."""
    lut = np.full(256, -1, dtype=np.int64)
    for i, ch in enumerate("ACGT"):
        lut[ord(ch)] = lut[ord(ch.lower())] = i
    code = torch.from_numpy(lut[bases])
    a, b = code[:, :-1], code[:, 1:]
    valid = (a >= 0) & (b >= 0)
    tok = torch.where(valid, 4 * a + b, torch.zeros_like(a))
    x = F.one_hot(tok, 16).float() * valid[..., None].float()
    return x.permute(0, 2, 1).contiguous()


def build(cfg, dataset, mapping_path=None):
    path = mapping_path or cfg["data"].get("metadata_mapping") or DEFAULT_MAPPING
    with open(path, "rb") as f:
        mapping = tomllib.load(f)
    header, rows = read_metadata(dataset)
    used = dict.fromkeys(mapping["biological"].get("direct", []) + mapping["biological"].get("interact", [])
                         + mapping["technical"].get("direct", []) + mapping["technical"].get("interact", []))
    enc = {n: encode_variable(header, rows, n, mapping["variables"][n]) for n in used}
    return MFD(cfg, mapping, enc, len(rows))


# ---------------------------------------------------------------------------------------------------------------
# check


def load_state(model, ckpt):
    st = load_file(ckpt)
    sd = {k: torch.from_numpy(v.copy()) for k, v in st.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"checkpoint/model mismatch: missing {missing[:8]} unexpected {unexpected[:8]}")


def load_optim(ckpt):
    path = ckpt[: -len(".safetensors")] + ".optim.safetensors" if ckpt.endswith(".safetensors") else None
    if not path or not os.path.exists(path):
        return None, {}
    with safe_open(path, "np") as f:
        meta = f.metadata() or {}
    return meta, load_file(path)


def adam_step(params, grads, group, lr, wd, meta, ostate):
    """One torch Adam(amsgrad) step from the checkpoint's optimiser state, on the given gradients."""
    names = [n for n, _ in params]
    tensors = [p.detach().clone().requires_grad_(True) for _, p in params]
    opt = torch.optim.Adam(tensors, lr=lr, weight_decay=wd, amsgrad=True)
    step = int(meta.get(f"{group}.step", 0)) if meta else 0
    for n, t in zip(names, tensors):
        t.grad = grads[n].clone()
        if step > 0:
            opt.state[t] = {"step": torch.tensor(float(step)),
                            "exp_avg": torch.from_numpy(ostate[f"{group}.{n}.m"].copy()).to(t.dtype),
                            "exp_avg_sq": torch.from_numpy(ostate[f"{group}.{n}.v"].copy()).to(t.dtype),
                            "max_exp_avg_sq": torch.from_numpy(ostate[f"{group}.{n}.vmax"].copy()).to(t.dtype)}
    opt.step()
    return {n: t.detach() for n, t in zip(names, tensors)}


def compare(name, ours, ref, atol, rtol, rows, worst):
    ref = np.asarray(ref, dtype=np.float64)
    ours = np.asarray(ours, dtype=np.float64).reshape(ref.shape)
    err = np.abs(ours - ref)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_abs = float(err.max()) if err.size else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    ok = max_abs <= atol + rtol * scale
    rows.append((name, max_abs, rel, scale, ok))
    # Per kind (grad, step, logits, ...): the largest relative error among tensors well above the noise floor
    # (scale > 100 atol; e.g. the stem bias gradient is exactly 0 in exact arithmetic) and the largest abs error.
    key = name.split(".")[0]
    w_rel, w_abs = worst.get(key, (0.0, 0.0))
    worst[key] = (max(w_rel, rel if scale > 100 * atol else 0.0), max(w_abs, max_abs))
    return ok


def check(args):
    if load_file is None:
        raise SystemExit("check needs the safetensors package")
    torch.manual_seed(0)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    with safe_open(args.checkpoint, "np") as f:
        cfg = tomllib.loads(f.metadata()["config"])
    with safe_open(args.dump, "np") as f:
        dmeta = f.metadata()
    dump = load_file(args.dump)
    dataset = args.dataset or dmeta.get("dataset") or cfg["data"]["dataset"]
    model = build(cfg, dataset, args.mapping)
    load_state(model, args.checkpoint)
    model = model.to(dtype)
    batch = load_file(args.batch)
    x = onehot_from_bases(batch["bases"]).to(dtype)
    y = torch.from_numpy(batch["labels"].astype(np.float64)).to(dtype)
    mode = dmeta["mode"]
    model.train(mode == "train")
    rows, worst, ok = [], {}, True
    tok = x.argmax(1).numpy() + 16 * (x.sum(1).numpy() == 0)
    ok &= compare("tokens", dump["tokens"], tok, 0, 0, rows, worst)

    out = model(x, y)
    if mode == "train":
        model.zero_grad(set_to_none=False)
        out["loss"].backward()
    fwd_tol = (args.atol, args.rtol)
    for k in ["features", "w_tech", "w_bio", "logit_tech", "logit_bio", "logits", "probs"]:
        ok &= compare(k, dump[k], out[k].detach().numpy(), *fwd_tol, rows, worst)
    for k, ref in [("bce", "bce"), ("corr", "corr"), ("r2_bio", "r2_bio"), ("r2_tech", "r2_tech"), ("total", "loss")]:
        if f"loss.{k}" in dump and ref in out:
            ok &= compare(f"loss.{k}", dump[f"loss.{k}"], out[ref].detach().numpy(), *fwd_tol, rows, worst)
    if mode == "train":
        named = list(model.named_parameters())
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in named}
        # Absolute tolerance relative to the largest gradient entry G: a gradient that is exactly 0 in exact
        # arithmetic (the stem bias: every path from it crosses a BatchNorm) is a sum of cancelling f32 terms of
        # the size of the other gradients, so its round-off scales with them.
        g_max = max(float(g.abs().max()) for g in grads.values())
        print(f"largest gradient entry G = {g_max:.3e}")
        for n, p in named:
            ok &= compare(f"grad.{n}", dump[f"grad.{n}"], grads[n].numpy(), args.grad_atol * g_max, args.grad_rtol,
                          rows, worst)
        if model.adversary is not None:
            adv_named = [(n, p) for n, p in named if n.startswith("adversary.")]
            model.zero_grad(set_to_none=False)
            adv = model.adversary_loss(out["features"])
            adv.backward()
            ok &= compare("loss.adv", dump["loss.adv"], adv.detach().numpy(), *fwd_tol, rows, worst)
            for n, p in adv_named:
                g = p.grad if p.grad is not None else torch.zeros_like(p)  # the unused predictor when shared
                ok &= compare(f"adv_grad.{n}", dump[f"adv_grad.{n}"], g.numpy(), args.grad_atol * g_max,
                              args.grad_rtol, rows, worst)
        # AMSGrad: fed with OUR gradients and the checkpoint's optimiser state, so that the update check is not
        # blurred by gradient round-off (a near-zero gradient makes Adam's first steps ~ lr * sign(g)).
        ometa, ostate = load_optim(args.checkpoint)
        lr, alr, wd = cfg["train"]["lr"], cfg["adversary"]["lr"], cfg["train"].get("weight_decay", 0.0)
        ours_g = {n: torch.from_numpy(dump[f"grad.{n}"].astype(np.float32)) for n, _ in named}
        for n, _ in named:
            if n.startswith("adversary.") and f"adv_grad.{n}" in dump:
                ours_g[n] = torch.from_numpy(dump[f"adv_grad.{n}"].astype(np.float32))
        params32 = [(n, p.detach().float()) for n, p in named]
        # The metadata hypernetworks (hyper.*) step at lr x train.hyper_lr_scale (1 when the config predates it).
        hyper_lr = lr * cfg["train"].get("hyper_lr_scale", 1.0)
        trunk = [q for q in params32 if not q[0].startswith(("adversary.", "hyper."))]
        hyper = [q for q in params32 if q[0].startswith("hyper.")]
        new = adam_step(trunk, ours_g, "model", lr, wd, ometa, ostate)
        if hyper:
            new.update(adam_step(hyper, ours_g, "model", hyper_lr, wd, ometa, ostate))
        if model.adversary is not None:
            new.update(adam_step([q for q in params32 if q[0].startswith("adversary.")], ours_g, "adversary", alr, wd,
                                 ometa, ostate))
        for n, v in new.items():
            ok &= compare(f"step.{n}", dump[f"step.{n}"], v.numpy(), args.step_atol, 0.0, rows, worst)

    if args.verbose:
        for name, a, r, s, good in rows:
            print(f"{'ok ' if good else 'BAD'} {name:70s} max_abs {a:.3e} rel {r:.3e} (scale {s:.2e})")
    bad = [r for r in rows if not r[4]]
    print(f"checked {len(rows)} tensors ({mode} mode, torch {args.dtype}); {len(bad)} above tolerance")
    for key, (rel, a) in sorted(worst.items()):
        print(f"  worst {key:10s} max rel {rel:.3e}  max abs {a:.3e}")
    for name, a, r, s, _ in bad[:20]:
        print(f"  BAD {name}: max_abs {a:.3e} rel {r:.3e} (scale {s:.2e})")
    summary = {"mode": mode, "tensors": len(rows), "bad": len(bad),
               "worst": {k: {"rel": v[0], "abs": v[1]} for k, v in worst.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------------------
# bench


# ---------------------------------------------------------------------------------------------------------------
# bench --reference-src DIR: time the reference implementation's own model and Lightning training step.
# Nothing of the reference is copied here: its classes are imported at run time from a local checkout that the user
# gives (git clone of the public repository). It needs pytorch_lightning, torchmetrics, pandas and pyyaml; its
# plotting / logging imports (wandb, matplotlib, sklearn, seaborn), unused by a training step, are stubbed when absent.


class _Stub(type(sys)):
    """A module whose every attribute is None (`wandb.run is None`, `from sklearn.decomposition import PCA`)."""

    def __getattr__(self, name):
        return None


def import_reference(src):
    import importlib.util

    for name in ("wandb", "matplotlib", "matplotlib.pyplot", "seaborn", "sklearn", "sklearn.decomposition",
                 "sklearn.cross_decomposition", "sklearn.ensemble", "sklearn.metrics", "sklearn.random_projection"):
        try:
            present = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # parent package absent
            present = False
        if not present:
            sys.modules[name] = _Stub(name)
    sys.path.insert(0, os.path.join(os.path.abspath(src), "src"))
    import models.models as ref  # noqa: E402  (the reference's src/models/models.py)

    return ref


def reference_mapping_yaml(mapping, path):
    """Our metadata mapping TOML in the reference's YAML form. Our `multihot` (Linear d -> d with bias) is the
    reference's `linear` without intermediate_dim; the reference's own sample config names `multihot`, which its
    MetadataColumnEmbedding no longer accepts."""
    import yaml

    intermediate = {"embed": "embed", "linear": "linear", "multihot": "linear", "null": None}
    out = {}
    for name, v in mapping["variables"].items():
        out[name] = {"type": v["type"], "intermediate": intermediate[v.get("transform", "null")]}
        if "dim" in v:
            out[name]["intermediate_dim"] = v["dim"]
    for group, key in (("biological", "biological_features"), ("technical", "technical_features")):
        g = mapping[group]
        out[key] = {"direct": {"variables": list(g.get("direct", []))},
                    "interact": {"variables": list(g.get("interact", [])), "out_dim": g["out_dim"]}}
    with open(path, "w") as f:
        yaml.safe_dump(out, f)


def bench_reference(src, cfg, dataset, b, steps, warmup=1):
    """sequences/s of the reference's IEAquaticDilated (use_predictor, cov_and_adv) trained by its own
    training_step in a pytorch_lightning Trainer on pre-encoded random batches (the data loading is not timed)."""

    import contextlib

    # The reference and Lightning print progress to stdout, which carries our JSON: send it to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        return _bench_reference(src, cfg, dataset, b, steps, warmup)


def _bench_reference(src, cfg, dataset, b, steps, warmup):
    import tempfile
    import types

    import pandas as pd
    import pytorch_lightning as pl

    ref = import_reference(src)
    m, a = cfg["model"], cfg["adversary"]
    path = cfg["data"].get("metadata_mapping") or DEFAULT_MAPPING
    with open(path, "rb") as f:
        mapping = tomllib.load(f)
    df = pd.read_csv(os.path.join(dataset, "metadata.tsv"), sep="\t", dtype=str)
    tmp = tempfile.mkdtemp(prefix="mfd-ref-")
    yaml_path = os.path.join(tmp, "metadata_mapping.yaml")
    reference_mapping_yaml(mapping, yaml_path)
    torch.manual_seed(1)
    model = ref.IEAquaticDilated(
        seq_len=m["seq_len"], n_classes=len(df), C=m["c"], seq_order=2, crop=m["crop"],
        L1=m.get("tower_layers", 6), L2=m.get("dilated_layers", 2), D=m.get("dilation_growth", 1.5),
        activation="gelu", lr=1e-3, lr_discriminator=1e-3, coeff_cov=cfg["loss"]["lambda_indep"],
        metadata_loader=types.SimpleNamespace(df_raw=df), metadata_mapping_config=yaml_path,
        use_predictor=True, cov_and_adv=True, dim_hidden_discriminator=a["hidden"],
        num_hidden_discriminator=a["layers"])
    o, t = len(df), m["seq_len"]
    rng = np.random.default_rng(1)
    batches = [(onehot_from_bases(rng.choice(np.frombuffer(b"ACGT", np.uint8), size=(b, t + 1)))[None],
                torch.from_numpy((rng.random((b, o)) < 0.05).astype(np.float32))[None]) for _ in range(4)]

    class Data(pl.LightningDataModule):
        # the reference's hooks call trainer.datamodule.data.augment_on() / augment_off()
        data = types.SimpleNamespace(augment_on=lambda: None, augment_off=lambda: None)

        def train_dataloader(self):
            cycle = [batches[i % len(batches)] for i in range(warmup + steps)]
            return torch.utils.data.DataLoader(cycle, batch_size=None)

    class Clock(pl.Callback):
        t0 = t1 = None
        timed = 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == warmup:
                self.t0, self.cpu0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.t1, self.cpu1 = time.perf_counter(), time.process_time()
            self.timed += batch_idx >= warmup

    clock = Clock()
    # One epoch over exactly warmup + steps batches. Not max_steps: with manual optimisation and two optimisers,
    # Lightning's global_step counts optimiser steps (two per batch), so max_steps = N stops after N / 2 batches.
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=[clock])
    trainer.fit(model, datamodule=Data())
    if clock.timed != steps:
        raise SystemExit(f"reference bench: {clock.timed} timed batches ran, expected {steps}")
    secs, cpu = clock.t1 - clock.t0, clock.cpu1 - clock.cpu0
    return {"c": m["c"], "t": t, "b": b, "o": o, "device": "cpu", "model": "reference", "compiled": False,
            "steps": steps, "warmup_steps": warmup, "seq_per_s": steps * b / secs, "ms_per_step": 1e3 * secs / steps,
            "cpu_ms_per_step": 1e3 * cpu / steps}


def bench_one(cfg, dataset, b, steps, device, compiled, warmup):
    torch.manual_seed(1)
    model = build(cfg, dataset).to(device)
    model.train()
    t, o = cfg["model"]["seq_len"], model.head.bias.numel()
    opt_m = torch.optim.Adam(model.model_params(), lr=1e-3, amsgrad=True)
    opt_a = torch.optim.Adam(model.adversary.parameters(), lr=1e-3, amsgrad=True) if model.adversary else None
    rng = np.random.default_rng(1)
    # Encoded before the clock starts, as the reference's DataLoader hands its loop ready float tensors.
    batches = [(onehot_from_bases(rng.choice(np.frombuffer(b"ACGT", np.uint8), size=(b, t + 1))).to(device),
                torch.from_numpy((rng.random((b, o)) < 0.05).astype(np.float32)).to(device)) for _ in range(4)]

    def model_step(x, y):
        out = model(x, y)
        out["loss"].backward()
        return out["features"]

    def adv_step(f):
        loss = model.adversary_loss(f)
        loss.backward()
        return loss

    if compiled:
        model_step = torch.compile(model_step)
        adv_step = torch.compile(adv_step)

    def step(i):
        x, y = batches[i % len(batches)]
        opt_m.zero_grad()  # set_to_none, as the reference: no fill of every gradient buffer each step
        f = model_step(x, y)
        opt_m.step()
        if opt_a is not None:
            opt_a.zero_grad()
            adv_step(f.detach())
            opt_a.step()
        if device == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    warm_s = time.perf_counter() - t0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(warmup + i)
    secs, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"c": cfg["model"]["c"], "t": t, "b": b, "o": o, "device": device, "model": "ours", "compiled": compiled,
            "steps": steps, "warmup_steps": warmup, "warmup_s": warm_s, "seq_per_s": steps * b / secs,
            "ms_per_step": 1e3 * secs / steps, "cpu_ms_per_step": 1e3 * cpu / steps}


def bench(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.config, "rb") as f:
        base = tomllib.load(f)
    cuda = torch.cuda.is_available() and not args.cpu_only and not args.reference_src
    devices = (["cpu"] if not args.cuda_only else []) + (["cuda"] if cuda else [])
    results = []
    for device in devices:
        for c in args.c:
            cfg = json.loads(json.dumps(base))
            cfg["model"].update(c=c, seq_len=args.t, crop=args.crop)
            cfg["adversary"]["hidden"] = args.hidden
            if args.reference_src:
                r = bench_reference(args.reference_src, cfg, args.dataset, args.b, args.steps)
                print(json.dumps(r), file=sys.stderr)
                results.append(r)
                continue
            for compiled in ([False, True] if args.compile else [False]):
                try:
                    r = bench_one(cfg, args.dataset, args.b, args.steps, device, compiled, 3 if compiled else 1)
                except Exception as e:  # torch.compile needs a working C++ toolchain; report, don't die
                    r = {"c": c, "device": device, "compiled": compiled, "error": f"{type(e).__name__}: {e}"[:500]}
                print(json.dumps(r), file=sys.stderr)
                results.append(r)
    out = {"suite": "torch-train", "torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="compare with `mfd step-dump` output")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--batch", required=True)
    c.add_argument("--dump", required=True)
    c.add_argument("--dataset", help="dataset directory (default: the one recorded in the dump)")
    c.add_argument("--mapping", help="metadata mapping TOML (default: the config's, else configs/metadata_mapping.toml)")
    c.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    c.add_argument("--atol", type=float, default=1e-5, help="forward tensors: |err| <= atol + rtol * max|ref|")
    c.add_argument("--rtol", type=float, default=1e-4)
    c.add_argument("--grad-atol", type=float, default=1e-5, help="gradients: |err| <= grad_atol * G + grad_rtol * "
                   "max|ref|, G = the largest gradient entry of the step")
    c.add_argument("--grad-rtol", type=float, default=1e-3)
    c.add_argument("--step-atol", type=float, default=1e-6, help="parameters after one AMSGrad step")
    c.add_argument("--json", help="write the summary here")
    c.add_argument("-v", "--verbose", action="store_true")
    b = sub.add_parser("bench", help="time training steps (sequences/s)")
    b.add_argument("--config", default=os.path.join(HERE, "..", "configs", "default.toml"))
    b.add_argument("--dataset", required=True, help="prepared dataset (its metadata sizes the hypernetworks)")
    b.add_argument("--c", type=int, nargs="+", default=[30, 120])
    b.add_argument("--t", type=int, default=2176)
    b.add_argument("--crop", type=int, default=8)
    b.add_argument("--b", type=int, default=64)
    b.add_argument("--hidden", type=int, default=1024)
    b.add_argument("--steps", type=int, default=5)
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--compile", action="store_true", help="also time torch.compile")
    b.add_argument("--cpu-only", action="store_true")
    b.add_argument("--cuda-only", action="store_true", help="skip the CPU timing (mfd bench train --backend cuda)")
    b.add_argument("--reference-src", metavar="DIR", help="time the reference implementation's own IEAquaticDilated "
                   "and Lightning training step instead, imported from this checkout of its repository (CPU only)")
    b.add_argument("--out")
    a = p.parse_args()
    sys.exit(check(a) if a.cmd == "check" else bench(a))


if __name__ == "__main__":
    main()
