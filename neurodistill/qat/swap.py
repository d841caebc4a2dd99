"""The model's own forwards swapped for the deployed network's (as rate backprop swaps neuron
forwards), and put back: what `Deployment.active` does on entry and on exit."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import UnsupportedLayerError
from ..models.rate_bp_layers import restore_forward, swap_forward
from .neuron import neuron_forward, record
from .plan import Plan, PopPlan, TermPlan, fold_bias
from .synapse import encoding_forward, integer_synapse, update_bn_stats

Tensor = torch.Tensor


class SwappedForwards:
    """One `active` block: the swapped modules, what to restore, and the integers they share.

    `values(model)` computes the integers of the live weights; `learn_bn_stats()` says whether
    BatchNorm statistics follow the float outputs (asked at each forward, as the flag may change).
    """

    def __init__(self, plan: Plan, model: nn.Module, values: Callable[[nn.Module], dict],
                 learn_bn_stats: Callable[[], bool]) -> None:
        self.plan = plan
        self.model = model
        self.modules = dict(model.named_modules())
        self.values_of = values
        self.learn_bn_stats = learn_bn_stats
        self.cache: dict[bool, dict] = {}
        self.bn_training: dict[str, bool] = {}
        self.saved: list[tuple[nn.Module, object]] = []
        self.modes: list[tuple[nn.Module, bool]] = []
        self.recorded: list[nn.Module] = []

    def values(self) -> dict:
        # one set of values per grad mode: rate backprop's spike pass runs without grad, its rate pass with
        grad = torch.is_grad_enabled()
        if grad not in self.cache:
            self.cache[grad] = self.values_of(self.model)
        return self.cache[grad]

    def install(self) -> None:
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
                fn = self.synapse_fn(self.modules[path], ts[0], p, path in designated)
                self.saved.append(swap_forward(self.modules[path], fn))
            if p.neuron.kind != "readout":
                self.swap_neuron(p)
        self.freeze_batchnorms()
        for m in self.model.modules():
            if isinstance(m, nn.Dropout | nn.Dropout2d) and self.unswapped(m):
                self.saved.append(swap_forward(m, lambda x: x))  # export drops it

    def restore(self) -> None:
        for m, old in reversed(self.saved):
            restore_forward(m, old)
        for bn, mode in self.modes:
            bn.train(mode)
        for node in self.recorded:
            node.__dict__.pop("qat_record", None)
        self.cache = {}
        self.bn_training = {}

    def unswapped(self, m: nn.Module) -> bool:
        return all(m is not s for s, _ in self.saved)

    def swap_neuron(self, p: PopPlan) -> None:
        node = self.modules[p.name]
        if getattr(node, "step_mode", "m") != "m":
            raise UnsupportedLayerError(f"{p.name}: quantization-aware training needs multi-step neurons")
        self.saved.append(swap_forward(node, lambda x: neuron_forward(node, self.values()["pops"][p.name], x)))
        # rate backprop's spike pass records rates and eligibilities of these dynamics, not spikingjelly's
        node.__dict__["qat_record"] = lambda x: record(node, self.values()["pops"][p.name], x)
        self.recorded.append(node)

    def freeze_batchnorms(self) -> None:
        for t in self.plan.terms.values():
            for path in t.bns:
                bn = self.modules[path]
                if self.unswapped(bn):
                    self.modes.append((bn, bn.training))
                    self.bn_training[path] = bn.training
                    bn.eval()  # folded with its running statistics: frozen, as deployed
                    self.saved.append(swap_forward(bn, lambda x: x))

    def synapse_fn(self, m: nn.Module, t: TermPlan, p: PopPlan, owns_bias: bool):
        def forward(x: Tensor) -> Tensor:
            # mixed precision would round the integer sums: the deployed layers always run in full precision
            with torch.autocast(x.device.type, enabled=False):
                return integer(x)

        def integer(x: Tensor) -> Tensor:
            vals = self.values()
            pv = vals["pops"][p.name]
            w = vals["weights"][t.name]
            if self.learn_bn_stats() and t.bns and self.bn_training.get(t.bns[0]):
                n_feat = 3 if t.kind == "conv" else 1  # the module's own input: (..., C, H, W) or (..., features)
                update_bn_stats(m, t, self.modules[t.bns[0]], x.reshape(-1, *x.shape[x.dim() - n_feat:]))
            if t.host:
                bias = fold_bias(p.bias_expr, self.modules, p.shape)
                return encoding_forward(m, t, p, pv, w, x, bias, len(self.plan.input_shape))
            return integer_synapse(m, t, pv, w, x, owns_bias)

        return forward
