"""Rate-based backpropagation (Yu et al., NeurIPS 2024; docs/methods.md#rate-based-backpropagation---backprop-rate).

One training iteration is two passes over the same weights, with no change to the model:

A. Spike pass, no grad. The input is repeated T times (batch `[T*B]` inside spikingjelly's
   multi-step layers) and the network runs as usual. Every spiking neuron records its firing
   rate `r = mean_t s[t]` and its eligibility `e` (below); every BatchNorm records the mean and
   the biased variance of its input over `[T*B, H, W]` (its running statistics are updated here,
   and only here); every max pool records its time-mean output and how often each input position
   won the max.
B. Rate pass, with grad, batch `[B]`. The network runs once on the time-mean input, fed as
   `[1, B, ...]`. Convolution, linear, average pooling, flatten and residual adds are linear, so
   they run unchanged on rates. A BatchNorm normalises with the spike-pass statistics as values,
   while its gradient flows through the rate tensor's own batch statistics:
   `mu = mu_spike + (mu_rate - mu_rate.detach())`, the same for the variance. A neuron returns
   `r` as value with gradient `e`: `out = r.detach() + x*e - (x*e).detach()`. A max pool returns
   its recorded time-mean output, with gradient routed to each window's positions weighted by the
   fraction of steps in which they held the max.

So the rate-pass logits equal the time-mean of the spike-pass logits up to float rounding, and
training memory is that of one non-spiking forward/backward at batch B plus one no-grad
spiking forward: nearly constant in T, where BPTT's grows linearly.

Eligibility. A spikingjelly neuron charges `H_t = f(V_{t-1}, X_t)`, fires `S_t = Heaviside(H_t - θ)`
and resets `V_t = g(H_t, S_t)`. With `λ = ∂H_t/∂V_{t-1}` (the leak), `c = ∂H_t/∂X_t` and
`ρ_t = dV_t/dH_t` (the total derivative through the reset), the BPTT gradient of
`mean_t S_t` with respect to an input that is the same at every step is

    e = (c/T) Σ_t κ_t σ'(H_t - θ),     κ_0 = 1,   κ_t = 1 + λ ρ_{t-1} κ_{t-1},

σ' the neuron's own surrogate derivative at the pre-reset membrane (in closed form for the
package's surrogates, through autograd for any other). The per-neuron loop over t is one fused
pass (`rate_bp_fused`: torch.compile for large layers, plain tensor ops otherwise) whose spikes
are bitwise those of the neuron's own forward. Per neuron type:
- LIF (spikingjelly): `H = V + (X - (V - V_r))/τ` with `decay_input`, else `H = V - (V - V_r)/τ + X`
  (`V_r = 0` for soft reset): `λ = 1 - 1/τ` either way, and `c = 1/τ` with `decay_input`, else
  `c = 1`. The spec's formula (no `c`) is the reference's neuron, which has `decay_input=False`.
- IF: `H = V + X`: `λ = 1`, `c = 1`.
Per reset (`ρ_t`):
- soft, detached reset (`V = H - θ·sg(S)`): `ρ = 1`, so `κ_t = 1 + λ κ_{t-1}` (the spec's case);
- soft, reset not detached: `ρ = 1 - θ σ'_t`;
- hard, detached reset (`V = sg(S)·V_r + (1 - sg(S))·H`): `ρ = 1 - S_t`: a spike wipes the
  membrane's memory of earlier inputs, so `κ` restarts at 1 on the step after a spike;
- hard, reset not detached: `ρ = 1 - S_t + (V_r - H_t) σ'_t`.
(The reference code uses the last formula with V_r = 0 for every hard reset, detached or not;
here the detached case is derived for what spikingjelly computes.) tests/test_rate_bp.py checks
`e` against torch.autograd through the real spikingjelly neuron for all four cases.

Gradient scale. As in the reference, the loss is back-propagated divided by T: call
`(loss / T).backward()`, or `scale_grad(loss, T).backward()` to keep the logged value.

Evaluation needs no spike pass: it is the normal model, `model(x_seq)`.

Supported: any model of spikingjelly `LIFNode`/`IFNode` neurons in multi-step mode and layers
that are linear in their input (conv, linear, average and adaptive average pools, flatten,
identity, residual adds inside blocks, SEW blocks with `cnf='ADD'`), BatchNorm1d/2d/3d and
MaxPool2d: every spiking model in the registry. Anything else raises `MethodError`.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodError
from .rate_bp_layers import (
    batch_stats,
    classify,
    maxpool_selection,
    norm_dims,
    pool_geometry,
    restore_forward,
    swap_forward,
)
from .rate_bp_neuron import neuron_leak, neuron_record, surrogate_grad

Tensor = torch.Tensor


@dataclass
class RateOutput:
    """What one rate-backprop step returns.

    Shape:
        logits: `(B, K)`, rate-pass logits with grad (the training prediction).
        logits_spike: `(T, B, K)`, spike-pass logits, detached (their time-mean equals `logits`).
        taps: module name -> that module's rate-pass output with grad, leading time axis
            removed, e.g. `(B, C, H, W)` for a ResNet stage (ESD's branch inputs).
    """

    logits: Tensor
    logits_spike: Tensor
    taps: dict[str, Tensor] = field(default_factory=dict)
    timesteps: int = 1


def rate_step(model: nn.Module, x: Tensor, T: int | None = None, *, taps: Sequence[str] = ()) -> RateOutput:
    """Both passes of one rate-backprop iteration; call `backward` on `loss / T` afterwards.

    `x` is either a static batch `(B, ...)` with `T` given (direct encoding: repeated T times in
    the spike pass, fed as it is to the rate pass), or a sequence `(T, B, ...)` with `T=None`
    (event frames; the rate pass gets its time-mean). `taps` names modules of `model` (as in
    `named_modules()`, without a DistributedDataParallel `module.` prefix) whose rate-pass
    outputs are returned in `RateOutput.taps`.

    The caller does the rest:
        out = rate_step(net, x, T, taps=branches.attach)
        loss = loss_fn(out.logits, y)         # (B, K) logits; e.g. CE, or ESD's exits
        (loss / out.timesteps).backward()     # the reference's 1/T gradient scale

    Shape:
        Input: `(B, C, H, W)` with T, or `(T, B, C, H, W)`. Output: see `RateOutput`.
    """
    if T is None:
        if x.dim() < 2:
            raise MethodError(f"rate backprop: input of shape {tuple(x.shape)} has no time axis; pass T for a static batch")
        x_seq, x_rate = x, x.mean(0)
    else:
        if T < 1:
            raise MethodError(f"rate backprop: T = {T} is not allowed; it must be >= 1")
        x_seq, x_rate = x.unsqueeze(0).expand(T, *x.shape), x
    rbp = RateBackprop.of(model)
    try:
        logits_spike = rbp.spike_pass(x_seq)
        logits, tapped = rbp.rate_pass(x_rate, taps)
    finally:
        rbp.release()  # the autograd graph keeps what backward needs; nothing stays until the next step
    return RateOutput(logits, logits_spike, tapped, x_seq.shape[0])


def scale_grad(loss: Tensor, T: int) -> Tensor:
    """`loss` as value with gradient `1/T` (the reference's CustomEvaluator): backward on this."""
    return loss.detach() + (loss / T - (loss / T).detach())


class RateBackprop:
    """The two passes over one model; `rate_step` is the usual entry point.

    `spike_pass` must come before each `rate_pass`: it fills the records the rate pass uses.
    """

    def __init__(self, model: nn.Module) -> None:
        self._model: nn.Module | weakref.ref = model
        self.neurons, self.norms, self.pools = classify(self.root)
        self._records: dict[nn.Module, list] = {}
        self._cursor: dict[nn.Module, int] = {}
        self._layout = _layout(model)

    @classmethod
    def of(cls, model: nn.Module) -> RateBackprop:
        """The one RateBackprop of `model`, built at its first step and rebuilt only if its modules
        change (checked by identity and type, about 50 µs for a ResNet-18)."""
        rbp = _built.get(model)
        if rbp is None or rbp._layout != _layout(model):
            rbp = cls(model)
            rbp._model = weakref.ref(model)  # the cache must not keep the model alive
            _built[model] = rbp
        return rbp

    @property
    def model(self) -> nn.Module:
        m = self._model
        return m() if isinstance(m, weakref.ref) else m

    @property
    def root(self) -> nn.Module:
        return _unwrap(self.model)

    def release(self) -> None:
        """Drop the spike pass's records (rate_step calls it after the rate pass)."""
        self._records = {}
        self._cursor = {}

    # --- pass A ------------------------------------------------------------------------------
    @torch.no_grad()
    def spike_pass(self, x_seq: Tensor) -> Tensor:
        """Run the spiking network on `(T, B, ...)` and record rates, eligibilities, BN statistics.

        Returns the spike-pass logits `(T, B, K)` (no grad).
        """
        self._records = {}
        with self._patched(self._spike_neuron, self._spike_pool), self._hooks(norm_pre=self._record_norm):
            return self.model(x_seq)

    # --- pass B ------------------------------------------------------------------------------
    def rate_pass(self, x_rate: Tensor, taps: Sequence[str] = ()) -> tuple[Tensor, dict[str, Tensor]]:
        """Run the network once on the time-mean input `(B, ...)`, with grad.

        Returns the logits `(B, K)` and the outputs of the modules named in `taps`.
        """
        if not self._records:
            raise MethodError("rate backprop: rate_pass called before spike_pass")
        modules = dict(self.root.named_modules()) if taps else {}
        missing = [n for n in taps if n not in modules or n == ""]
        if missing:
            raise MethodError(f"rate backprop: no module named {missing} in the model; taps must be names from named_modules()")
        tapped: dict[str, Tensor] = {}
        handles = [modules[n].register_forward_hook(functools.partial(_tap, tapped, n)) for n in taps]
        self._cursor = {}
        try:
            with self._patched(self._rate_neuron, self._rate_pool, self._rate_norm):
                z = self.model(x_rate.unsqueeze(0))
        finally:
            for h in handles:
                h.remove()
        return z[0], tapped

    # --- neurons -----------------------------------------------------------------------------
    def _spike_neuron(self, node: nn.Module, x_seq: Tensor) -> Tensor:
        # under --deploy the neuron runs Loihi's integer dynamics and records their eligibility (neurodistill/qat)
        record = node.__dict__.get("qat_record")
        spikes, rate, elig = record(x_seq) if record else neuron_record(node, x_seq)
        self._push(node, (rate, elig))
        return spikes

    def _rate_neuron(self, node: nn.Module, x: Tensor) -> Tensor:
        rate, elig = self._pop(node)
        xe = x * elig
        return (rate.detach() + xe - xe.detach()).to(x.dtype)

    # --- BatchNorm ---------------------------------------------------------------------------
    def _record_norm(self, bn: nn.Module, args: tuple) -> None:
        if batch_stats(bn):
            x = args[0]
            dims = norm_dims(x)
            xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            var, mean = torch.var_mean(xf, dims, unbiased=False)
            self._push(bn, (mean, var))

    def _rate_norm(self, bn: nn.Module, x: Tensor, _forward) -> Tensor:
        if not batch_stats(bn):
            return _forward(x)  # eval mode: running statistics, the same affine map in both passes
        mu_s, var_s = self._pop(bn)
        dims = norm_dims(x)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var_r, mu_r = torch.var_mean(xf, dims, unbiased=False)
        # Values: the spike-pass statistics. Gradients: through the rate tensor's own statistics.
        mu = mu_s + (mu_r - mu_r.detach())
        var = var_s + (var_r - var_r.detach())
        shape = [1] * x.dim()
        shape[2] = -1
        y = (xf - mu.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
        if bn.weight is not None:
            y = y * bn.weight.view(shape) + bn.bias.view(shape)
        return y.to(x.dtype)

    # --- max pooling -------------------------------------------------------------------------
    def _spike_pool(self, pool: nn.Module, x_seq: Tensor, _forward) -> Tensor:
        out = _forward(x_seq)
        self._push(pool, (out.mean(0), maxpool_selection(pool, x_seq)))
        return out

    def _rate_pool(self, pool: nn.Module, x: Tensor, _forward) -> Tensor:
        mean, weights = self._pop(pool)
        k, s, p, d = pool_geometry(pool)
        B, C = x.shape[1], x.shape[2]
        cols = F.unfold(F.pad(x[0].flatten(0, 1).unsqueeze(1), (p[1], p[1], p[0], p[0])), k, dilation=d, stride=s)
        lin = (weights * cols).sum(1).view(1, B, C, *mean.shape[-2:])
        return mean.unsqueeze(0).to(x.dtype) + lin - lin.detach()

    # --- plumbing ----------------------------------------------------------------------------
    def _push(self, m: nn.Module, rec) -> None:
        self._records.setdefault(m, []).append(rec)

    def _pop(self, m: nn.Module):
        i = self._cursor.get(m, 0)
        recs = self._records.get(m, [])
        if i >= len(recs):
            raise MethodError(
                f"rate backprop: {type(m).__name__} ran more often in the rate pass than in the spike pass; "
                "the model's forward must take the same path in both"
            )
        self._cursor[m] = i + 1
        return recs[i]

    @contextmanager
    def _patched(self, neuron_fn, pool_fn, norm_fn=None) -> Iterator[None]:
        """Swap the forwards of neurons, pools (and norms) for `fn(module, x[, original])`."""
        saved = []
        try:
            for m in self.neurons:
                saved.append(swap_forward(m, lambda x, m=m: neuron_fn(m, x)))
            for m in self.pools:
                saved.append(swap_forward(m, lambda x, m=m, f=m.forward: pool_fn(m, x, f)))
            if norm_fn is not None:
                for m in self.norms:
                    saved.append(swap_forward(m, lambda x, m=m, f=m.forward: norm_fn(m, x, f)))
            yield
        finally:
            for m, old in reversed(saved):
                restore_forward(m, old)

    @contextmanager
    def _hooks(self, norm_pre) -> Iterator[None]:
        handles = [m.register_forward_pre_hook(norm_pre) for m in self.norms]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


# --- helpers -------------------------------------------------------------------------------------
_built: weakref.WeakKeyDictionary[nn.Module, RateBackprop] = weakref.WeakKeyDictionary()


def _layout(model: nn.Module) -> tuple:
    return tuple((id(m), type(m)) for m in model.modules())


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _tap(store: dict[str, Tensor], name: str, _module, _args, out: Tensor) -> None:
    store[name] = out[0]


__all__ = [
    "RateBackprop", "RateOutput", "neuron_leak", "neuron_record", "rate_step", "scale_grad", "surrogate_grad",
]  # fmt: skip
