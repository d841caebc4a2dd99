"""Pricing: counts (what happened) times a hardware profile's constants (what it costs). Pure.

Which counts a profile uses (keys of `counters.count(...)["totals"]`):
- compute-only (cmos45-*: Horowitz, ISSCC 2014, 45 nm): `E = E_MAC*macs + E_AC*acs`. Ignores
  memory and data movement, which can dominate by 10-50x (Lemaire et al., ICONIP 2022).
- synaptic-op, per-op (loihi, spinnaker2, tianjic, darwin3): the sum of each priced count
  times its per-op energy: synaptic_events always; loihi also neuron_updates and spikes (spike
  delivery within a tile). On-chip only: the encoding layer runs on the host and is not priced.
- synaptic-op, all-in (truenorth): `E = 26 pJ*synaptic_events` and nothing else: the figure
  already includes static power, routing and neuron updates, so adding them would count twice.
- synaptic-op, estimate (loihi2): Loihi 2's per-op energy is not published; the profile prices
  synaptic_events with Loihi 1's 23.6 pJ as a labelled stand-in and every result says
  `"estimate": True`, `"label": "estimate"`.
Counts not priced by a profile (`dense_ops`, and e.g. `macs` on a chip) are ignored; a count a
profile prices must be present.

Pricing is linear: pass totals over samples and divide by `samples`, or pass per-sample counts.
Unit conversion is exact decimal scaling (`Constant.joules`), so the fp32 profile gives
bit-for-bit `4.6e-12 * macs + 0.9e-12 * acs` (constants summed in file order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..errors import ConfigError
from .profiles import Profile, formula


def _label(kinds: set[str]) -> str:
    """The price's label: 'estimate' wins, then 'all-in', else 'per-op'."""
    return "estimate" if "estimate" in kinds else ("all-in" if "all-in" in kinds else "per-op")


def price(counts: Mapping[str, float], profile: Profile) -> dict:
    """Energy in joules per priced constant and in total, with kinds, labels and convention.

    Returns `{"profile", "model", "convention", "formula", "terms": {constant: {count_key,
    count, value, unit, joules_per_op, energy_j, kind, source, note}}, "energy_j": {constant:
    J}, "total_j", "kinds", "label", "estimate", "estimate_notes", "priced_counts"}`.
    """
    terms: dict[str, dict] = {}
    total = 0.0
    for c in profile.constants:
        if c.applies_to not in counts:
            raise ConfigError(f"hardware profile {profile.name}: [constants.{c.key}] prices {c.applies_to!r}, which the counts "
                              f"do not have; counts given: {', '.join(sorted(counts)) or '(none)'}")
        n = counts[c.applies_to]
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 0:
            raise ValueError(f"count {c.applies_to!r} = {n!r} is not a finite number >= 0")
        j = c.joules
        energy = j * n
        total += energy
        terms[c.key] = {"count_key": c.applies_to, "count": n, "value": c.value, "unit": c.unit, "joules_per_op": j,
                        "energy_j": energy, "kind": c.kind, "source": c.source, "note": c.note}
    kinds = {c.kind for c in profile.constants}
    return {
        "profile": profile.name, "model": profile.model, "convention": profile.convention, "formula": formula(profile),
        "terms": terms, "energy_j": {k: t["energy_j"] for k, t in terms.items()}, "total_j": total,
        "kinds": sorted(kinds), "label": _label(kinds), "estimate": "estimate" in kinds,
        "estimate_notes": [c.note for c in profile.constants if c.kind == "estimate"],
        "priced_counts": [c.applies_to for c in profile.constants],
    }


def ann_energy(dense_ops: float, profile: Profile) -> float | None:
    """Energy of an ANN of the same graph, `E_MAC * sum of FLOPs`, in joules; None unless the
    profile is compute-only with a MAC constant (a neuromorphic chip does not run the ANN).

    `dense_ops` is per forward pass: `counters.count(...)["totals"]["dense_ops"]` already is (one
    sample, one pass), so the result compares with the SNN's energy per inference
    (`price(totals)["total_j"] / samples`).
    """
    c = profile.constant_for("macs")
    if profile.model != "compute-only" or c is None:
        return None
    return c.joules * dense_ops


def ann_snn_ratio(ann_j: float | None, snn_j: float | None) -> float | None:
    """ANN energy over SNN energy (> 1: the SNN is cheaper); None when either is missing or the
    SNN energy is 0. Both must be for the same unit of work (e.g. one inference)."""
    if ann_j is None or snn_j is None or snn_j <= 0:
        return None
    return ann_j / snn_j
