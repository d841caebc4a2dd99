"""Random small networks for the NIR-in property test (tests/test_nir_in_property.py), one builder per
framework: each builds a seeded net on a grid that makes threshold ties likely (weights and biases in
multiples of 0.25, thresholds in multiples of 0.25, decays of 1/2 or 1/4 per step, binary inputs),
writes it with the framework's own NIR exporter, and runs it with the framework itself.

A builder returns a `Net`: the file, the reset to name (`--source-reset`; None where the file records
it), the framework's spikes per neuron layer `(T, B, ...)` and its classifier outputs `(T, B, K)`.
No test functions here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import nir
import torch

T = 4
SHAPE = (1, 8, 8)
K = 4


@dataclass
class Net:
    path: Path
    reset: str | None
    spikes: list[torch.Tensor]
    outputs: torch.Tensor
    what: str  # the case, for failure messages
    exact_decay: bool = True  # every leak is a power-of-two fraction (Loihi's truncating decay is then exact)


def inputs(seed: int, n: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, *SHAPE), generator=g) < 0.5).float()


def on_grid(rng: random.Random, module: torch.nn.Module, w: int = 4, b: int = 2) -> None:
    """Weights in {-w..w}/4, biases in {-b..b}/4."""
    with torch.no_grad():
        module.weight.copy_(torch.tensor([rng.randint(-w, w) / 4 for _ in range(module.weight.numel())]
                                         ).reshape(module.weight.shape))
        if module.bias is not None:
            module.bias.copy_(torch.tensor([rng.randint(-b, b) / 4 for _ in range(module.bias.numel())]))


def threshold(rng: random.Random) -> float:
    return rng.randint(1, 6) / 4


def _hooked(modules: list[torch.nn.Module], pick=lambda out: out):
    seen: list[list[torch.Tensor]] = [[] for _ in modules]
    hooks = [m.register_forward_hook(lambda _m, _i, out, s=s: s.append(pick(out).detach().clone()))
             for m, s in zip(modules, seen, strict=True)]
    return seen, hooks


# ----------------------------------------------------------------------------- snnTorch


def snntorch_net(seed: int, tmp: Path, x: torch.Tensor) -> Net:
    """Conv -> Leaky or Synaptic(alpha = 0) -> Flatten -> Linear [-> Leaky -> Linear] -> classifier."""
    import snntorch as snn
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    rng = random.Random(seed)
    reset = rng.choice(["zero", "zero", "subtract"])
    c1, two = rng.choice([2, 3]), rng.random() < 0.5

    def neuron(shape, synaptic: bool):
        kw = dict(beta=torch.full(shape, rng.choice([0.5, 0.75])), threshold=torch.full(shape, threshold(rng)),
                  init_hidden=True, reset_mechanism=reset)
        return snn.Synaptic(alpha=torch.zeros(shape), **kw) if synaptic else snn.Leaky(**kw)

    synaptic = rng.random() < 0.2
    layers = [torch.nn.Conv2d(1, c1, 3, padding=1), neuron((c1, 8, 8), synaptic), torch.nn.Flatten()]
    layers += [torch.nn.Linear(c1 * 64, 8), neuron((8,), False), torch.nn.Linear(8, K)] if two else \
        [torch.nn.Linear(c1 * 64, K)]
    net = torch.nn.Sequential(*layers).eval()
    for m in net:
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            on_grid(rng, m)
    path = tmp / f"snntorch-{seed}.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, *SHAPE), ignore_dims=[0]))
    neurons = [m for m in net if isinstance(m, snn.Leaky | snn.Synaptic)]
    seen, hooks = _hooked(neurons)
    utils.reset(net)
    with torch.no_grad():
        outs = torch.stack([net(x) for _ in range(T)])
    for h in hooks:
        h.remove()
    what = f"snntorch seed {seed}: {'Synaptic' if synaptic else 'Leaky'}, reset {reset}, {1 + two} layers"
    return Net(path, reset, [torch.stack(s) for s in seen], outs, what)


# ----------------------------------------------------------------------------- Norse


def norse_net(seed: int, tmp: Path, x: torch.Tensor) -> Net:
    """Conv -> LIFBoxCell or IAFCell [-> Conv -> LIFBoxCell or IAFCell] -> a Conv over the whole map (Norse's
    exporter has no Flatten)."""
    import norse.torch as norse
    from norse.torch.functional.iaf import IAFParameters
    from norse.torch.functional.lif_box import LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract, reset_value
    from norse.torch.utils.export_nir import to_nir

    rng = random.Random(seed)
    subtract = rng.random() < 0.2
    c1, c2, two = rng.choice([2, 3]), 2, rng.random() < 0.5

    def neuron(shape):
        th = torch.full(shape, threshold(rng))
        if rng.random() < 0.3:
            return norse.IAFCell(IAFParameters(v_th=th, v_reset=torch.zeros(shape))), "IAF"
        inv = rng.choice([500.0, 250.0])  # dt * tau_mem_inv = 1/2, 1/4 per step at Norse's dt = 1 ms
        p = LIFBoxParameters(tau_mem_inv=torch.full(shape, inv), v_th=th, v_leak=torch.zeros(shape),
                             v_reset=torch.zeros(shape), reset_method=reset_subtract if subtract else reset_value)
        return norse.LIFBoxCell(p), f"LIFBox(1/{int(1000 / inv)})"

    n1, k1 = neuron((c1, 8, 8))
    mods, kinds = [torch.nn.Conv2d(1, c1, 3, padding=1), n1], [k1]
    if two:
        n2, k2 = neuron((c2, 8, 8))
        mods += [torch.nn.Conv2d(c1, c2, 3, padding=1), n2]
        kinds.append(k2)
    mods.append(torch.nn.Conv2d(c2 if two else c1, K, 8))
    net = norse.SequentialState(*mods).eval()
    for m in mods:
        if isinstance(m, torch.nn.Conv2d):
            on_grid(rng, m)
    path = tmp / f"norse-{seed}.nir"
    g = to_nir(net, torch.zeros(*SHAPE))
    g.infer_types()
    nir.write(path, g)
    seen, hooks = _hooked([m for m in mods if not isinstance(m, torch.nn.Conv2d)], pick=lambda out: out[0])
    outs, state = [], None
    with torch.no_grad():
        for _ in range(T):
            out, state = net(x, state)
            outs.append(out.reshape(len(x), -1))
    for h in hooks:
        h.remove()
    what = f"norse seed {seed}: {' + '.join(kinds)}, reset {'subtract' if subtract else 'to v_reset'}"
    return Net(path, "subtract" if subtract else None, [torch.stack(s) for s in seen], torch.stack(outs), what)


# ----------------------------------------------------------------------------- sinabs


def sinabs_net(seed: int, tmp: Path, x: torch.Tensor) -> Net:
    """Conv -> IAF or LIF [-> SumPool2d(2)] -> Flatten -> Linear [-> IAF -> Linear] -> classifier; SingleSpike."""
    import sinabs.activation as sa
    import sinabs.layers as sl
    from sinabs.nir import to_nir

    rng = random.Random(seed)
    reset = rng.choice(["zero", "zero", "subtract"])
    c1, pool, two = rng.choice([2, 3]), rng.random() < 0.5, rng.random() < 0.4
    kinds: list[str] = []

    def neuron(shape, batch):
        kw = dict(batch_size=batch, spike_threshold=torch.full(shape, threshold(rng)), spike_fn=sa.SingleSpike,
                  reset_fn=sa.MembraneReset() if reset == "zero" else sa.MembraneSubtract())
        if rng.random() < 0.5:
            kinds.append("IAF")
            return sl.IAFSqueeze(**kw)
        tau = rng.choice([2.0, 4.0])
        kinds.append(f"LIF(tau_mem={tau:g})")
        return sl.LIFSqueeze(tau_mem=torch.full(shape, tau), **kw)

    def build(batch):
        kinds.clear()
        r = random.Random(seed + 1)  # the same layers and weights for both batch sizes
        rng.seed(seed + 2)
        flat = c1 * (16 if pool else 64)
        layers = [torch.nn.Conv2d(1, c1, 3, padding=1), neuron((c1, 8, 8), batch)]
        layers += [sl.SumPool2d(2)] if pool else []
        layers += [torch.nn.Flatten()]
        layers += [torch.nn.Linear(flat, 8), neuron((8,), batch), torch.nn.Linear(8, K)] if two else \
            [torch.nn.Linear(flat, K)]
        net = torch.nn.Sequential(*layers).eval()
        for m in net:
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                on_grid(r, m)
        return net

    path = tmp / f"sinabs-{seed}.nir"
    g = to_nir(build(1), torch.zeros(1, *SHAPE))
    g.infer_types()
    nir.write(path, g)
    sim = build(len(x))
    neurons = [m for m in sim if isinstance(m, sl.IAFSqueeze | sl.LIFSqueeze)]
    seen, hooks = _hooked(neurons)
    xs = x.unsqueeze(1).expand(len(x), T, *x.shape[1:]).reshape(len(x) * T, *x.shape[1:])  # time fastest
    with torch.no_grad():
        outs = sim(xs)
    for h in hooks:
        h.remove()
    to_tb = lambda a: a.reshape(len(x), T, *a.shape[1:]).transpose(0, 1)  # noqa: E731
    what = f"sinabs seed {seed}: {' + '.join(kinds)}{', SumPool2d(2)' if pool else ''}, reset {reset}"
    return Net(path, reset, [to_tb(s[0]) for s in seen], to_tb(outs), what,
               exact_decay=not any(k.startswith("LIF") for k in kinds))


# ----------------------------------------------------------------------------- spikingjelly


def spikingjelly_net(seed: int, tmp: Path, x: torch.Tensor) -> Net:
    """Conv -> LIFNode or IFNode [-> Linear -> LIFNode or IFNode] -> classifier; v_reset 0 or -0.25."""
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    rng = random.Random(seed)
    c1, two = rng.choice([2, 3]), rng.random() < 0.5
    kinds: list[str] = []

    def node():
        vr = rng.choice([0.0, 0.0, -0.25])
        th = threshold(rng)
        if rng.random() < 0.4:
            kinds.append(f"IF(v_reset={vr:g})")
            return neuron.IFNode(v_threshold=th, v_reset=vr, step_mode="m")
        tau, di = rng.choice([2.0, 4.0]), rng.random() < 0.5
        kinds.append(f"LIF(tau={tau:g}, decay_input={di}, v_reset={vr:g})")
        return neuron.LIFNode(tau=tau, decay_input=di, v_threshold=th, v_reset=vr, step_mode="m")

    layers = [layer.Conv2d(1, c1, 3, padding=1, step_mode="m"), node(), layer.Flatten(step_mode="m")]
    layers += [layer.Linear(c1 * 64, 8, step_mode="m"), node(), layer.Linear(8, K, step_mode="m")] if two else \
        [layer.Linear(c1 * 64, K, step_mode="m")]
    net = torch.nn.Sequential(*layers).eval()
    for m in net:
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            on_grid(rng, m)
    path = tmp / f"spikingjelly-{seed}.nir"
    export_to_nir(net, torch.zeros(T, 1, *SHAPE), save_path=path)
    seen, hooks = _hooked([m for m in net if isinstance(m, neuron.BaseNode)])
    functional.reset_net(net)
    with torch.no_grad():
        outs = net(x.unsqueeze(0).expand(T, *x.shape).contiguous())
    for h in hooks:
        h.remove()
    return Net(path, None, [s[0] for s in seen], outs, f"spikingjelly seed {seed}: {' + '.join(kinds)}")


BUILDERS = {"snntorch": snntorch_net, "norse": norse_net, "sinabs": sinabs_net, "spikingjelly": spikingjelly_net}
