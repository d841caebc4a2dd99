"""Export's range safety (docs/loihi2.md#limits-of-the-24-bit-state): keep every population inside
Loihi 2's 24-bit u, v and conv accumulation, and the readout below its firing threshold.

Before the fixed-point run, each population whose worst case passes a limit is quantized again at
the largest power-of-two scale where it cannot (`core.ranges.safe_scale`), unless a QAT
checkpoint fixed its scale: then one warning line. After the run, a readout the worst case
scaled down is compared on the calibration set with the largest scale whose observed peak
keeps a factor 2 of headroom; the calibrated scale is taken only if it is more accurate, with
one warning line, since an input beyond the calibration set can then make the readout fire.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ..core.fxp import synaptic_input
from ..core.loihi2 import rescale_population
from ..core.quantize import DECAY_UNITY, UV_MAX
from ..core.ranges import MAX_HALVINGS, READOUT_LIMIT, population_range, quantized_at, safe_scale

log = logging.getLogger(__name__)


def _chip(graph, p):
    return [s for s in graph.incoming(p.name) if not s.host]


def fit_ranges(graph, reports, timesteps: int, fixed) -> dict:
    """Scale down the populations whose worst case passes 24 bits (or, for the readout, its
    threshold within `timesteps` steps); `fixed`: names whose (trained) scale is kept.
    Returns the manifest's `range_safety` entry, completed by `settle_readout`."""
    entry = {"limit_uv": UV_MAX, "readout_limit_v": READOUT_LIMIT, "timesteps": timesteps, "layers": [], "warnings": []}
    for p, r in zip(graph.populations, reports, strict=True):
        chip = _chip(graph, p)
        if not chip:
            continue  # the encoding population: its input is a 13-bit bias, << 6 far inside 24 bits
        readout = p.neuron.kind == "readout"  # a spike readout's output fires: checked as a hidden population
        steps = timesteps if readout else None
        before = population_range(p.name, [(s.kind, s.weight_int) for s in chip], p.bias_mant, p.i_decay, steps)
        rec = {"name": p.name, "readout": readout, "limit": before.limit, "bound_before": _int(before.bound),
               "scale_before": p.scale, "bound": _int(before.bound), "scale": p.scale, "guaranteed": before.fits,
               "action": "none"}
        if not before.fits and p.name in fixed:
            rec["action"] = "kept the trained scale"
            _warn(entry, f"layer {p.name}: worst-case {_what(before)} {before.bound:.0f} passes Loihi 2's limit "
                         f"{before.limit} ({_effect(readout)}); its trained (QAT) scale is kept")
        elif not before.fits:
            s, after = safe_scale(p.name, [(x.kind, x.weight) for x in chip], graph.biases[p.name], p.scale,
                                  r.weight_bits, p.i_decay, steps)
            rescale_population(graph, r, s)
            rec.update(bound=_int(after.bound), scale=s, guaranteed=after.fits, action="scaled down")
            r.notes.append(f"scale halved {int(round(np.log2(rec['scale_before'] / s)))} time(s) so that the "
                           f"worst-case {_what(after)} ({after.bound:.0f}) stays within {after.limit}")
            log.info("layer %s: scale %g -> %g keeps its worst-case %s %.0f within %d", p.name, rec["scale_before"],
                     s, _what(after), after.bound, after.limit)
        entry["layers"].append(rec)
    return entry


def _int(x: float) -> int | None:
    """A bound for JSON: an integer, None where unbounded."""
    return math.ceil(x) if math.isfinite(x) else None


def _what(r) -> str:
    if r.v is not None:
        return f"|v| over {r.steps} steps"
    return "|u|" if r.u >= r.accumulation else "conv sum"


def _effect(readout: bool) -> str:
    return "the readout can fire and drop to 0" if readout else "u or the conv sum wraps and flips sign"


def _warn(entry: dict, line: str) -> None:
    entry["warnings"].append(line)
    log.warning("%s", line)


def readout_free_v(graph, spikes: dict, batch: int, scale: float, weight_bits: int) -> torch.Tensor | None:
    """The readout's v over its window at `scale` as if it could not fire or saturate, `(T, B, *shape)`
    int64; None where its neuron is not the plain integrator (iDecay 4096, vDecay 0) this assumes.

    `spikes[pop]`: every step of each firing population (run_fxp's record); the readout's v is
    then the running sum of (a + bias) << 6 from its reset on."""
    p = graph.readout
    if p.i_decay != DECAY_UNITY or p.v_decay != 0:
        return None
    chip = _chip(graph, p)
    w_int, b_int = quantized_at([(s.kind, s.weight) for s in chip], graph.biases[p.name], scale, weight_bits)
    weights = {s.name: torch.as_tensor(w, dtype=torch.float64) for s, (_, w) in zip(chip, w_int, strict=True)}
    steps = graph.timesteps + graph.latency_steps
    a = synaptic_input(graph, p, (p.depth, steps), {k: (0, v) for k, v in spikes.items()}, weights, batch, None)
    c = torch.as_tensor(b_int.reshape(p.shape), dtype=torch.int64).expand(steps - p.depth, batch, *p.shape)
    if a is not None:
        c = c + a.round().long()
    return torch.cumsum(c * 64, 0)


def _accuracy(v: torch.Tensor, y: torch.Tensor) -> float:
    return float((v[-1].flatten(1).argmax(-1) == y.to(v.device)).float().mean())


def settle_readout(graph, reports, entry: dict, spikes: dict, y: torch.Tensor) -> bool:
    """After the fixed-point run: record the readout's calibration peak; where the worst case scaled
    it down, take the calibrated scale instead if that is more accurate. True if the readout changed
    (the caller runs the fixed-point simulation again)."""
    p = graph.readout
    if graph.readout_kind == "spikes":
        return False  # its output fires by design; fit_ranges checked it as a hidden population
    rec = next((r for r in entry["layers"] if r["name"] == p.name), None)
    report = next(r for r in reports if r.name == p.name)
    free = readout_free_v(graph, spikes, len(y), p.scale, report.weight_bits)
    if rec is None or free is None:
        return False
    rec["calibration_peak"] = int(free.abs().max())
    if rec["action"] != "scaled down":
        return False
    acc_safe = _accuracy(free, y)
    for k in range(MAX_HALVINGS + 1):
        scale = rec["scale_before"] / 2**k
        if scale <= p.scale:
            return False
        v = readout_free_v(graph, spikes, len(y), scale, report.weight_bits)
        if 2 * int(v.abs().max()) <= READOUT_LIMIT:
            break
    acc_cal = _accuracy(v, y)
    rec["calibrated_alternative"] = {"scale": scale, "accuracy": acc_cal, "accuracy_at_safe_scale": acc_safe}
    if acc_cal <= acc_safe:
        return False
    safe = p.scale
    rescale_population(graph, report, scale)
    rec.update(scale=scale, guaranteed=False, action="calibrated scale", calibration_peak=int(v.abs().max()),
               bound=_int(population_range(p.name, [(s.kind, s.weight_int) for s in _chip(graph, p)], p.bias_mant,
                                           p.i_decay, graph.timesteps).bound))
    _warn(entry, f"readout layer {p.name}: worst-case |v| over {graph.timesteps} steps {rec['bound']} passes its "
                 f"threshold {READOUT_LIMIT} (vThMant << 6); scale {scale:g} keeps the calibration peak "
                 f"{rec['calibration_peak']} below half of it (calibration accuracy {acc_cal:.4f}; {acc_safe:.4f} at "
                 f"the worst-case-safe scale {safe:g}), so an input beyond the calibration set can still make it fire")
    return True
