"""NIR in: what every foreign-exporter test shares, and the checks that do not depend on one framework.

Each framework test builds a small conv + LIF + classifier network in that framework, writes it
with the framework's own NIR exporter, and checks three things against independent truth:

1. the framework's own simulation (direct encoding, T steps) gives the same LIF spikes and
   classifier outputs as neurodistill's reading of the file (`nir_source_module`);
2. `neurodistill export X.nir --target loihi2` writes a manifest whose float accuracy is the
   framework's own accuracy on the same calibration samples;
3. the bundle run in Lava (`simulate --backend lava --save-spikes`) has every spike and readout
   voltage of `simulate --backend fxp --save-spikes`.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.export.bundle import dataset_samples, nir_source_module

T = 4
N_CALIB = 48
N_LAVA = 3


# snnTorch's and sinabs' files do not record the reset; every test network here resets to zero
SOURCE_RESET = {"snntorch": "zero", "sinabs": "zero"}


def reset_args(producer: str) -> tuple[str, ...]:
    return ("--source-reset", SOURCE_RESET[producer]) if producer in SOURCE_RESET else ()


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def digits(n: int = N_CALIB) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples `export --calib n` calibrates on (digits' training split, fixed order)."""
    return dataset_samples("digits", None, {}, n, "train")


def spiking_weights(conv: torch.nn.Conv2d, lin: torch.nn.Module, seed: int, gain: float = 1.0) -> None:
    """Random weights under which about a third of the LIF neurons fire on digits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.9 * gain)
        conv.bias.copy_(torch.rand(conv.bias.shape, generator=g) * 0.3)
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.5)
        lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.1)


def our_run(nir_file: Path, producer: str, x: torch.Tensor, neuron: str = "LIFNode") -> tuple[torch.Tensor, torch.Tensor]:
    """neurodistill's reading of the file on `x` repeated T times: (the one spikingjelly `neuron`'s spikes
    (T, B, ...), outputs (T, B, K))."""
    from spikingjelly.activation_based import neuron as sj_neuron

    model, _ = nir_source_module(nir_file, producer, source_reset=SOURCE_RESET.get(producer))
    lifs = [m for m in model.modules() if type(m) is getattr(sj_neuron, neuron)]
    assert len(lifs) == 1
    seen = []
    h = lifs[0].register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        out = model(x.unsqueeze(0).expand(T, *x.shape).contiguous())
    h.remove()
    return seen[0], out.reshape(T, len(x), -1)


def check_against_framework(nir_file: Path, producer: str, x: torch.Tensor, spikes: torch.Tensor,
                            outputs: torch.Tensor, neuron: str = "LIFNode") -> None:
    """The framework's own spikes (T, B, ...) and classifier outputs (T, B, K) equal neurodistill's reading."""
    ours_s, ours_o = our_run(nir_file, producer, x, neuron)
    assert spikes.sum() > 0.02 * spikes.numel(), "the test network must fire"
    assert spikes.mean() < 0.9
    assert int((ours_s.reshape(spikes.shape) != spikes).sum()) == 0
    torch.testing.assert_close(ours_o, outputs.reshape(ours_o.shape), rtol=1e-5, atol=1e-5)


def deploy_and_compare(nir_file: Path, producer: str, framework_acc: float, tmp_path: Path, lava_py: str | None,
                       *extra) -> dict:
    """`export --target loihi2` from the file; manifest float accuracy = the framework's; Lava = fxp, spike for spike."""
    bundle = tmp_path / "bundle"
    res = invoke("export", nir_file, "--from", producer, "--target", "loihi2", "--timesteps", T,
                 "--calib", N_CALIB, "--out", bundle, *reset_args(producer), *extra)
    assert res.exit_code == 0, res.output
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["nir_in"]["exporter"] == producer and m["calibration_samples"] == N_CALIB
    assert m["accuracy_float"] == pytest.approx(framework_acc, abs=1e-12)
    assert not m["dead_layers_after_quantization"]
    if lava_py is not None:
        compare_lava_fxp(bundle, tmp_path, lava_py)
    return m


def compare_lava_fxp(bundle: Path, tmp_path: Path, lava_py: str) -> None:
    sims = {}
    for backend in ("fxp", "lava"):
        res = invoke("simulate", bundle, "--backend", backend, "--samples", N_LAVA, "--save-spikes", "--lava-python",
                     lava_py, "--out", tmp_path / backend)
        assert res.exit_code == 0, res.output
        sims[backend] = json.loads((tmp_path / backend / "simulation.json").read_text())
    fxp, lava = (_spikes(tmp_path / b / "spikes.h5") for b in ("fxp", "lava"))
    spike_keys = [k for k in fxp if k.endswith("/spikes")]
    assert spike_keys and set(spike_keys) <= set(lava)
    mismatches = sum(int((fxp[k] != lava[k]).sum()) for k in spike_keys)
    assert mismatches == 0
    assert sum(int(fxp[k].sum()) for k in spike_keys) > 0
    assert sims["lava"]["layers"] == [{**layer, "pipeline_spikes": lava_l["pipeline_spikes"]}
                                      for layer, lava_l in zip(sims["fxp"]["layers"], sims["lava"]["layers"], strict=True)]
    assert sims["lava"]["accuracy"] == sims["fxp"]["accuracy"]


def _spikes(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name.rsplit("/data", 1)[0], obj[()])
                     if isinstance(obj, h5py.Dataset) and name.endswith("/data") else None)
    return out


# ----------------------------------------------------------------------------- checks of no one framework


def test_a_foreign_file_without_from_is_one_error_line(tmp_path):
    import nir

    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "fc": nir.Affine(np.eye(2, 3), np.zeros(2)),
                            "output": nir.Output(np.array([2]))}, edges=[("input", "fc"), ("fc", "output")])
    nir.write(tmp_path / "g.nir", g)
    res = invoke("export", tmp_path / "g.nir", "--target", "loihi2", "--out", tmp_path / "b")
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert res.output.startswith("error: ") and "--from" in res.output and "no dt" in res.output
    assert not (tmp_path / "b").exists()


def test_from_on_a_checkpoint_and_a_file_calib_on_a_checkpoint_are_refused(tmp_path):
    ck = tmp_path / "x.pt"
    ck.write_bytes(b"not read")
    for args in (("--from", "snntorch"), ("--calib", "data.npz")):
        res = invoke("export", ck, "--out", tmp_path / "b", *args)
        assert res.exit_code == 2 and res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
        assert not (tmp_path / "b").exists()


def test_nir_and_onnx_targets_from_a_foreign_file_compute_what_it_says(tmp_path):
    """--target nir: the canonical graph (dt = 1 step, T recorded) reads back to the same outputs;
    --target onnx: onnxruntime gives them too (snnTorch's file, checked against snnTorch itself)."""
    import onnxruntime as ort
    from snntorch import utils

    from neurodistill.formats.nir.to_torch import from_nir_to_torch

    from .test_nir_in_snntorch import leaky_net, write

    net = leaky_net()
    path = write(net, tmp_path / "s.nir")
    x, _ = digits(8)
    utils.reset(net)
    with torch.no_grad():
        ref = torch.stack([net(x) for _ in range(T)])
    xs = x.unsqueeze(0).expand(T, *x.shape).contiguous()
    for target in ("nir", "onnx"):
        res = invoke("export", path, "--from", "snntorch", "--source-reset", "zero", "--timesteps", T, "--target", target,
                     "--out", tmp_path / target)
        assert res.exit_code == 0, res.output
    back = from_nir_to_torch(tmp_path / "nir" / "network.nir")
    assert back.dt == 1.0 and int(back_meta(tmp_path / "nir" / "network.nir")["timesteps"]) == T
    with torch.no_grad():
        torch.testing.assert_close(back(xs).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)
    sess = ort.InferenceSession(str(tmp_path / "onnx" / "snn.onnx"))
    (out,) = sess.run(None, {sess.get_inputs()[0].name: xs.numpy()})
    torch.testing.assert_close(torch.from_numpy(out).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)


def back_meta(path: Path) -> dict:
    import nir

    return nir.read(path).metadata
