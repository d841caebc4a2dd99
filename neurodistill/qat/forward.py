"""The model's forward as the exported Loihi 2 network computes it, with straight-through gradients.

Inside `Deployment.active()` the model's own modules are swapped (as rate backprop swaps
neuron forwards), so its forward, the methods' hooks and extra passes all see the deployed
network:

- every conv/linear returns its integer accumulation `Q * x` over the weight grid, divided by
  its population's power-of-two scale `s` (exact in float: integers times a power of two), and
  one of a population's synapse modules adds the population's 13-bit bias mantissa `B / s`;
  BatchNorm is folded into them with its running statistics and runs as identity (the
  statistics stay frozen in a fine-tune; `learn_bn_stats` updates them as float training would);
  pooling runs as it is (a window's sum is recovered exactly from its mean);
- the encoding layer computes the host's float64 current and rounds it to the bias mantissa
  with the encoding scale fixed at the start (from calibration samples, as export chooses it);
- every LIF/IF neuron runs Loihi's CUBA update in integer units of `v`: truncating decay
  `trunc(v (4096 - vDecay) / 4096)`, input `(a + B) << 6`, 24-bit saturation, spike on
  `v > vThMant << 6`, reset to 0, latency-free (the export's staggered reset makes the
  deployed network this one delayed); the spike's gradient is the neuron's own surrogate at
  the float membrane `(v - vth) / (64 s tau')`;
- the model's output per step is the readout's input `(a + B) / s`: its sum over the steps is
  the readout voltage Loihi ends with, divided by `64 s` (until that voltage would saturate).

Rounding, truncation and saturation pass gradients straight through; clipping to the weight
grid and the bias range passes none. Scales of on-chip populations are recomputed at each
forward from the live weights with the export's `population_scale`, so export reproduces
them; every value is computed in float64 from a float32 copy of the parameters, as capture
folds them, so the integers are the export's (tests/test_qat_forward.py).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.fxp import UV_MAX, wrap24, wrap_u
from ..core.loihi2 import population_scale, threshold_units, v_decay, v_th_mant
from ..core.quantize import BIAS_BITS, DECAY_UNITY, V_TH_MAX, weight_grid
from ..errors import UnsupportedLayerError
from .plan import Plan, PopPlan, TermPlan, build_plan, fold_bias, fold_weight

Tensor = torch.Tensor
BIAS_LO, BIAS_HI = -(2 ** (BIAS_BITS - 1)), 2 ** (BIAS_BITS - 1) - 1


def ste(value: Tensor, like: Tensor) -> Tensor:
    """`value` forward, the gradient of `like` backward."""
    return like + (value - like).detach()


def quantize_ste(x: Tensor, step: int, lo: int, hi: int) -> Tensor:
    """`clip(round(x / step) * step, lo, hi)` (numpy's rounding: half to even), straight through
    inside the range, no gradient where clipped."""
    r = torch.round(x.detach() / step) * step
    inside = (r >= lo) & (r <= hi)
    return torch.clamp(r, lo, hi) + (x - x.detach()) * inside


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass
class PopValues:
    """One population's integers at this forward (Loihi units)."""

    scale: float
    v_decay: int
    v_th_mant: int
    tau_factor: float  # v_loihi = 64 s tau' V_float
    bias: Tensor  # mantissa, straight-through, float64, full shape (zeros for the encoding population)


class Deployment:
    """Quantization-aware training state of one model: plan, weight bits, the encoding scale.

    `active(model)` runs the model as deployed; `scales(model)` gives every population's scale
    for the current weights (what the checkpoint stores and export uses).
    """

    def __init__(self, plan: Plan, weight_bits: int, encoding_scale: float) -> None:
        weight_grid(weight_bits)  # a ValueError for bits outside 2..8
        self.plan = plan
        self.weight_bits = weight_bits
        self.encoding_scale = float(encoding_scale)
        # False (a fine-tune): BatchNorm's running statistics stay the float model's. True (training
        # from the start): in training mode each BatchNorm's statistics follow the float output of
        # its conv/linear on the deployed network's own inputs, as float training would update them.
        self.learn_bn_stats = False
        self._cache: dict = {}
        self._bn_training: dict[str, bool] = {}

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def for_model(cls, model: nn.Module, input_shape: tuple[int, ...], weight_bits: int, x_calib: Tensor,
                  encoding_scale: float | None = None) -> Deployment:
        """Plan the model; the encoding scale is `encoding_scale` (a checkpoint's) or export's
        choice on the calibration inputs `x_calib (N, *input_shape)`."""
        plan = build_plan(model, input_shape)
        if encoding_scale is None:
            encoding_scale = calibrate_encoding(model, input_shape, weight_bits, x_calib)
        return cls(plan, weight_bits, encoding_scale)

    def state(self, model: nn.Module) -> dict:
        """What a checkpoint stores: plain Python."""
        return {"target": "loihi2", "weight_bits": self.weight_bits, "encoding_scale": self.encoding_scale,
                "input_shape": list(self.plan.input_shape), "scales": self.scales(model)}

    # -- the integers of the current weights ------------------------------------------------
    def _modules(self, model: nn.Module) -> dict[str, nn.Module]:
        return dict(model.named_modules())

    def values(self, model: nn.Module) -> dict:
        """Per term the straight-through integer weights, per population its `PopValues`."""
        modules = self._modules(model)
        dev = next(model.parameters()).device
        step, lo, hi = weight_grid(self.weight_bits)
        folded = {n: fold_weight(t, modules, dev) for n, t in self.plan.terms.items()}
        weights: dict[str, Tensor] = {}
        pops: dict[str, PopValues] = {}
        for p in self.plan.populations:
            theta = threshold_units(_as_population(p)) if p.neuron.kind != "readout" else 0.0
            chip = [n for n in p.terms if not self.plan.terms[n].host]
            if p.encoding:
                scale = self.encoding_scale
            else:
                scale = population_scale(theta, self.weight_bits,
                                         weight_max=max(float(folded[n].detach().abs().max()) for n in chip))
            for n in chip:
                weights[n] = quantize_ste(folded[n] * scale, step, lo, hi)
                t = self.plan.terms[n]
                if t.kind == "identity" and not bool((weights[n].detach() == scale).all()):
                    raise UnsupportedLayerError(
                        f"{n}: the identity shortcut's weight 1 quantizes to {float(weights[n].detach().flatten()[0]):g} "
                        f"at scale {scale:g} with {self.weight_bits}-bit weights, which quantization-aware training "
                        "cannot express through the model's own add; use more weight bits")
            for n in p.terms:
                if self.plan.terms[n].host:
                    weights[n] = folded[n]  # the host computes the encoding current in float
            decay = 0 if p.neuron.kind == "readout" else v_decay(_as_population(p))
            if p.encoding:
                bias = torch.zeros(p.shape, dtype=torch.float64, device=dev)
            else:
                bias = quantize_ste(fold_bias(p.bias_expr, modules, p.shape) * scale, 1, BIAS_LO, BIAS_HI)
            n = p.neuron
            tf = n.tau if (n.kind == "lif" and n.decay_input) else 1.0
            vth = V_TH_MAX if n.kind == "readout" else v_th_mant(theta * scale, decay)
            pops[p.name] = PopValues(scale, decay, vth, tf, bias)
        return {"weights": weights, "pops": pops}

    def scales(self, model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            return {k: v.scale for k, v in self.values(model)["pops"].items()}

    # -- the deployed forward ---------------------------------------------------------------
    @contextmanager
    def active(self, model: nn.Module):
        """Run `model` as deployed inside the block (its modules' forwards swapped, BN frozen)."""
        modules = self._modules(model)
        self._live = modules
        saved, modes, recorded = [], [], []
        self._cache = {}

        def get() -> dict:
            # one set of values per grad mode: rate backprop's spike pass runs without grad, its rate pass with
            grad = torch.is_grad_enabled()
            if grad not in self._cache:
                self._cache[grad] = self.values(model)
            return self._cache[grad]

        try:
            designated = {}
            for p in self.plan.populations:
                first = next((self.plan.terms[n].module for n in p.terms if self.plan.terms[n].module), None)
                designated[first] = p
            for p in self.plan.populations:
                groups: dict[str, list[TermPlan]] = {}
                for n in p.terms:
                    t = self.plan.terms[n]
                    if t.module is not None:
                        groups.setdefault(t.module, []).append(t)
                for path, ts in groups.items():
                    fn = self._synapse_fn(modules[path], ts[0], p, path in designated, get)
                    saved.append(_swap(modules[path], fn))
                if p.neuron.kind != "readout":
                    node = modules[p.name]
                    if getattr(node, "step_mode", "m") != "m":
                        raise UnsupportedLayerError(f"{p.name}: quantization-aware training needs multi-step neurons")
                    saved.append(_swap(node, lambda x, node=node, p=p: self._neuron(node, p, get()["pops"][p.name], x)))
                    # rate backprop's spike pass records rates and eligibilities of these dynamics, not spikingjelly's
                    node.__dict__["qat_record"] = lambda x, node=node, p=p: self.record(node, get()["pops"][p.name], x)
                    recorded.append(node)
            for t in self.plan.terms.values():
                for path in t.bns:
                    bn = modules[path]
                    if all(bn is not m for m, _ in saved):
                        modes.append((bn, bn.training))
                        self._bn_training[path] = bn.training
                        bn.eval()  # folded with its running statistics: frozen, as deployed
                        saved.append(_swap(bn, lambda x: x))
            for m in model.modules():
                if isinstance(m, nn.Dropout | nn.Dropout2d) and all(m is not s for s, _ in saved):
                    saved.append(_swap(m, lambda x: x))  # export drops it
            yield self
        finally:
            for m, old in reversed(saved):
                _restore(m, old)
            for bn, mode in modes:
                bn.train(mode)
            for node in recorded:
                node.__dict__.pop("qat_record", None)
            self._cache = {}
            self._bn_training = {}

    def _synapse_fn(self, m: nn.Module, t: TermPlan, p: PopPlan, owns_bias: bool, get):
        def forward(x: Tensor) -> Tensor:
            # mixed precision would round the integer sums: the deployed layers always run in full precision
            with torch.autocast(x.device.type, enabled=False):
                return integer(x)

        def integer(x: Tensor) -> Tensor:
            vals = get()
            pv = vals["pops"][p.name]
            w = vals["weights"][t.name]
            if self.learn_bn_stats and t.bns and self._bn_training.get(t.bns[0]):
                n_feat = 3 if t.kind == "conv" else 1  # the module's own input: (..., C, H, W) or (..., features)
                self._update_bn_stats(m, t, x.reshape(-1, *x.shape[x.dim() - n_feat:]))
            if t.host:
                return self._encoding(m, t, p, pv, w, x)
            lead, feat = (x.shape[:-3], x.shape[-3:]) if t.kind == "conv" else (x.shape[:-1], x.shape[-1:])
            xs = x.reshape(-1, *feat)
            mult = t.pool * t.pool if t.kind == "conv" else (t.mult.to(x.device, x.dtype) if t.rep is not None else 1)
            if t.rep is not None or t.pool > 1:
                xs = xs * mult  # window sums: exact for power-of-two windows
                if not (t.kind == "conv" and _is_pow2(t.pool * t.pool)) and not (t.rep is not None and
                                                                                  all(_is_pow2(int(v)) for v in t.mult)):
                    xs = ste(torch.round(xs), xs)
            wmax = float(w.detach().abs().max())
            exact32 = wmax * float(xs.detach().abs().max() if xs.numel() else 0) * (w[0].numel()) < 2**24
            dt = x.dtype if (exact32 and x.dtype != torch.float16) else torch.float64
            if t.kind == "conv":
                acc = F.conv2d(xs.to(dt), w.to(dt), stride=m.stride, padding=m.padding, groups=m.groups)
                lo, hi = torch.aminmax(acc.detach())
                if float(lo) < -UV_MAX or float(hi) >= UV_MAX:
                    acc = ste(wrap24(acc.detach().double()).to(acc.dtype), acc)
            else:
                acc = xs.to(dt) @ w.to(dt).T
            if owns_bias:
                acc = acc + pv.bias.to(acc.device, acc.dtype).reshape(1, *acc.shape[1:])
            out = acc / pv.scale
            return out.reshape(*lead, *out.shape[1:]).to(x.dtype)

        return forward

    @torch.no_grad()
    def _update_bn_stats(self, m: nn.Module, t: TermPlan, xs: Tensor) -> None:
        """The running-statistics update BatchNorm makes in training mode, on the float output of
        `m` for this input (weights unquantized, as the float model's BatchNorm sees it). Only a
        BatchNorm right after its conv/linear: through a folded pooling there is no such output."""
        if len(t.bns) != 1 or t.pool > 1 or t.rep is not None:
            return
        bn = self._live[t.bns[0]]
        if not bn.track_running_stats or bn.running_mean is None:
            return
        if t.kind == "conv":
            y = F.conv2d(xs.to(m.weight.dtype), m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
        else:
            y = F.linear(xs.to(m.weight.dtype), m.weight, m.bias)
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        F.batch_norm(y, bn.running_mean, bn.running_var, None, None, True, momentum, bn.eps)

    def _encoding(self, m: nn.Module, t: TermPlan, p: PopPlan, pv: PopValues, w: Tensor, x: Tensor) -> Tensor:
        # the host's float64 current `bias + conv(x, W)` (export's encoding_current), rounded to the bias mantissa
        feat = x.shape[-len(self.plan.input_shape):]
        lead = x.shape[: x.dim() - len(feat)]
        xs = x.reshape(-1, *feat).double()
        bias = fold_bias(p.bias_expr, self._live, p.shape)
        if t.kind == "conv":
            conv = F.conv2d(xs, w, stride=m.stride, padding=m.padding, groups=m.groups)
        else:
            conv = (xs.reshape(xs.shape[0], -1) @ w.T).reshape(xs.shape[0], *p.shape)
        cur = bias.unsqueeze(0) + conv
        mant = quantize_ste(cur * pv.scale, 1, BIAS_LO, BIAS_HI)
        return (mant / pv.scale).reshape(*lead, *p.shape).to(x.dtype)

    def _neuron(self, node: nn.Module, p: PopPlan, pv: PopValues, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self._run(node, pv, x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)

    def _run(self, node: nn.Module, pv: PopValues, x: Tensor, keep_u: bool = False):
        s = pv.scale
        cur = x.double() * s
        cur = ste(torch.round(cur), cur)  # a + B: integers already, up to float error
        a64 = (cur - pv.bias) * 64
        lo, hi = torch.aminmax(a64.detach())
        if -float(lo) > UV_MAX or float(hi) > UV_MAX:
            a64 = ste(wrap_u(a64.detach()), a64)  # Lava's one-correction wrap of u
        c = a64 + pv.bias * 64
        th = float(pv.v_th_mant << 6)
        f = (DECAY_UNITY - pv.v_decay) / DECAY_UNITY
        norm = 64.0 * s * pv.tau_factor
        v = torch.zeros_like(c[0])
        out, us = [], []
        for t in range(c.shape[0]):
            if pv.v_decay == DECAY_UNITY:
                v = v * 0.0
            elif pv.v_decay:
                vd = v * f
                v = ste(torch.trunc(vd.detach()), vd)
            v = v + c[t]
            v = ste(v.detach().clamp(-(UV_MAX - 1), UV_MAX - 1), v)
            u = (v - th) / norm
            sg = node.surrogate_function(u)
            spike = ste(torch.gt(v.detach(), th).to(v.dtype), sg)
            out.append(spike)
            if keep_u:
                us.append(u)
            v = v * (1.0 - (spike.detach() if node.detach_reset else spike))
        if keep_u:
            return torch.stack(out), torch.stack(us)
        return torch.stack(out).to(x.dtype)


    @torch.no_grad()
    def record(self, node: nn.Module, pv: PopValues, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rate backprop's spike pass through the deployed neuron: (spikes, rate, eligibility).

        The eligibility is `train.rate_bp`'s, for these dynamics: the BPTT gradient of the firing
        rate with respect to an input constant over the steps, `e = (c/T) sum_t kappa_t sg'(u_t)`,
        with leak `lambda = (4096 - vDecay) / 4096`, `c = 1 / tau'` and `u_t` the float membrane
        the surrogate sees (tests/test_qat_forward.py checks it against autograd).
        """
        from ..models.rate_bp import surrogate_grad

        spikes, u = self._run(node, pv, x, keep_u=True)
        lam = (DECAY_UNITY - pv.v_decay) / DECAY_UNITY
        T = x.shape[0]
        kappa = torch.ones_like(u[0])
        elig = torch.zeros_like(u[0])
        for t in range(T):
            sg = surrogate_grad(node.surrogate_function, u[t])
            elig += kappa * sg
            s = spikes[t].double()
            # u = (v - th) / norm, so the pre-reset float membrane relative to the reset (0) is u + th / norm
            rho = 1.0 - s if node.detach_reset else 1.0 - s - (u[t] + pv.v_th_mant * 64 / (64.0 * pv.scale * pv.tau_factor)) * sg
            kappa = 1.0 + lam * rho * kappa
        rate = spikes.double().mean(0)
        return spikes.to(x.dtype), rate.to(x.dtype), (elig / (pv.tau_factor * T)).to(x.dtype)


def _as_population(p: PopPlan):
    from ..core.graph import Population

    return Population(p.name, p.shape, p.neuron)


def _swap(m: nn.Module, fn):
    old = m.__dict__.get("forward")
    m.forward = fn
    return m, old


def _restore(m: nn.Module, old) -> None:
    if old is None:
        m.__dict__.pop("forward", None)
    else:
        m.forward = old


def calibrate_encoding(model: nn.Module, input_shape: tuple[int, ...], weight_bits: int, x_calib: Tensor) -> float:
    """The encoding population's scale export would choose on these calibration inputs."""
    from ..core.capture import capture
    from ..core.loihi2 import encoding_current

    graph = capture(model, input_shape)
    current = encoding_current(graph, x_calib.detach().cpu().numpy())
    pop = graph.population(graph.encoding[0].target)
    return population_scale(threshold_units(pop), weight_bits, encoding_peak=float(np.abs(current).max()))


__all__ = ["Deployment", "build_plan", "calibrate_encoding", "quantize_ste", "ste"]
