"""lava-dl 0.6.0 has no NIR exporter (nor does lava-nc 0.10.0: no `nir` in their source, no `nir`
package in the Lava environment). The closest path: a SLAYER conv + CUBA + dense network written
by lava-dl's own `export_hdf5` (netx `.net`), deployed with `neurodistill simulate NET.net`;
neurodistill's fixed point has every spike of Lava's netx run of the same file."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from .test_nir_in_common import _spikes, invoke

pytestmark = pytest.mark.lava

SLAYER_NET = r'''
import sys, h5py, torch
import lava.lib.dl.slayer as slayer
torch.manual_seed(0)
# a synaptic current time constant (current_decay 0.5): the .net path keeps it, unlike NIR in
p = {"threshold": 1.0, "current_decay": 0.5, "voltage_decay": 0.2, "requires_grad": False}
blocks = torch.nn.ModuleList([
    slayer.block.cuba.Input(p),
    slayer.block.cuba.Conv(p, 1, 4, 3, padding=1, weight_scale=2, weight_norm=False),
    slayer.block.cuba.Flatten(),
    slayer.block.cuba.Dense(p, 256, 10, weight_scale=2, weight_norm=False)])
with torch.no_grad():
    for b in (blocks[1], blocks[3]):
        b.synapse.weight.mul_(4.0)
    x = torch.zeros(1, 1, 8, 8, 4)
    for b in blocks:  # SLAYER learns its layer shapes from a forward pass
        x = b(x)
with h5py.File(sys.argv[1], "w") as h:
    layer = h.create_group("layer")
    for i, b in enumerate(blocks):
        b.export_hdf5(layer.create_group(str(i)))
'''


def test_a_slayer_network_exported_by_lava_dl_runs_spike_for_spike(lava_py, tmp_path):
    (tmp_path / "make.py").write_text(SLAYER_NET)
    net = tmp_path / "slayer.net"
    res = subprocess.run([lava_py, str(tmp_path / "make.py"), str(net)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", bias=rng.integers(0, 3000, (3, 1, 8, 8)), steps=8)
    sims = {}
    for backend in ("fxp", "lava"):
        r = invoke("simulate", net, "--inputs", tmp_path / "in.npz", "--backend", backend, "--save-spikes",
                   "--lava-python", lava_py, "--out", tmp_path / backend)
        assert r.exit_code == 0, r.output
        sims[backend] = json.loads((tmp_path / backend / "simulation.json").read_text())
    fxp, lava = (_spikes(tmp_path / b / "spikes.h5") for b in ("fxp", "lava"))
    keys = [k for k in fxp if k.endswith("/spikes")]
    assert len(keys) >= 2 and set(keys) <= set(lava)
    assert sum(int((fxp[k] != lava[k]).sum()) for k in keys) == 0
    assert all(fxp[k].any() for k in keys)
    assert sims["fxp"]["layers"] == sims["lava"]["layers"]
