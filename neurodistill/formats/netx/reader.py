"""Read a lava-dl netx `.net` (HDF5) file into a `DeployGraph` (docs/loihi2.md#the-netx-hdf5-file-networknet).

For networks written by lava-dl itself (tests/fixtures/lava-dl) as well as our own bundles.
Layer types `input`, `conv`, `dense` and `flatten` with `CUBA`/`LOIHI` neurons are read; every
integer is taken exactly as `netx.hdf5.Network` hands it to Lava's fixed-point models:

* Neurons (`Network.get_neuron_params`): `i_decay = iDecay` (netx's `du = iDecay - 1` plus
  the model's offset 1), `v_decay = vDecay`, `v_th_mant = vThMant`, `bias_mant` = the layer's
  `bias` (bias_exp 6), per channel broadcast over (H, W), stored full shape in (C, H, W) or
  (N,) order. A dense layer without a `neuron` group gets netx's default non-leaky
  integrator (iDecay 0, vDecay 4096, vThMant `1 << 18 - 1` = 2^17).
* Conv weights pass as-is (netx flips and transposes them for Lava's true convolution; the
  net effect is PyTorch's OIHW cross-correlation), stride/padding in (H, W) order.
* Dense weights go through netx's `optimize_weight_bits` (shift by `scale_bits`,
  `weight_exp = -scale_bits`, `num_weight_bits`) and then Lava's bit-accurate Dense model
  (`determine_sign_mode`, `clip_weights` to 8 bits, `truncate_weights`, and the accumulation
  shifted back by `weight_exp`). `weight_int` is the effective integer weight that results;
  a file whose dense layer would not act as one integer weight per synapse is refused.
* Input: an `input` layer *with* a neuron group becomes the first population. netx leaves its
  input port unconnected, so input enters through that neuron: per sample as its bias
  mantissas, as lava-dl's own `tiny.net` test does (`net.in_layer.neuron.bias_mant`; the
  PilotNet tutorial feeds the same integers as a held graded current). The graph's notes say
  `input: bias`. Without a neuron group (or without an input layer) the first conv/dense
  reads binary input spikes: a synapse with `source = INPUT`, notes `input: spikes`; it is an
  on-chip Dense/Conv (one step of latency), unlike our own bundles' host-side encoding layer.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ...core.graph import INPUT, DeployGraph, Neuron, Population, Synapse
from ...core.netx_dense import effective_dense_weight  # noqa: F401 - re-exported: its home is core
from ...core.quantize import DECAY_UNITY, DELAY_MAX, V_TH_MAX, WEIGHT_MAX, WEIGHT_MIN
from ...errors import CheckpointError, UnsupportedLayerError
from ...io.hdf5 import open_hdf5

SUPPORTED = ("input", "conv", "dense", "flatten")
NEURON_TYPES = ("CUBA", "LOIHI")
V_TH_READOUT = V_TH_MAX  # maximum 17-bit threshold: an integrating readout
# netx's default neuron for a dense layer without a `neuron` group: `1 << 18 - 1` is 1 << 17
DEFAULT_NEURON = {"type": "CUBA", "iDecay": 0, "vDecay": DECAY_UNITY, "vThMant": 1 << 17}


def _str(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def _ints(x) -> np.ndarray:
    """As netx's NetDict reads weights and biases: `.astype(int)` (truncation toward zero)."""
    return np.asarray(x).astype(np.int64)


def _numbers(x, where: str, field: str) -> np.ndarray:
    """A dataset's value as a finite numeric array (netx casts with `int`/`astype(int)`)."""
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_):
        raise CheckpointError(f"{where}: {field} has dtype {a.dtype}; allowed: numbers")
    if a.size == 0:
        raise CheckpointError(f"{where}: {field} is empty; allowed: numbers")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise CheckpointError(f"{where}: {field} holds NaN or Inf; allowed: finite numbers")
    if np.abs(a.astype(np.float64)).max() >= 2**31:
        raise CheckpointError(f"{where}: {field} holds {float(np.abs(a.astype(np.float64)).max()):g}; "
                              "allowed: numbers within 32-bit integers")
    return a


def _scalar(x, where: str, field: str, lo: int, hi: int) -> int:
    v = int(_numbers(x, where, field).reshape(-1)[0])
    if not lo <= v <= hi:
        raise CheckpointError(f"{where}: {field} = {v} is not allowed; allowed: {lo}..{hi}")
    return v


def _pair(x, where: str = "", field: str = "", lo: int = 0) -> tuple[int, int]:
    a = _numbers(x, where, field).reshape(-1).astype(np.int64)
    pair = (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))
    if min(pair) < lo:
        raise CheckpointError(f"{where}: {field} = {list(pair)} is not allowed; allowed: integers >= {lo}")
    return pair


def _shape(x, where: str, field: str) -> tuple[int, ...]:
    a = _numbers(x, where, field).reshape(-1)
    if a.size > 4 or (a < 1).any():
        raise CheckpointError(f"{where}: {field} = {a.tolist()} is not allowed; allowed: up to 4 positive sizes")
    return tuple(int(v) for v in a)


def _neuron_params(g: h5py.Group, i: int, kind: str, where: str) -> dict:
    if "neuron" not in g:
        if kind == "dense":
            return dict(DEFAULT_NEURON)
        raise UnsupportedLayerError(f"{where}: layer {i} ({kind}) has no neuron group; netx needs one for a {kind} layer")
    n = g["neuron"]
    ntype = _str(n["type"])
    if ntype not in NEURON_TYPES:
        raise UnsupportedLayerError(f"{where}: layer {i} ({kind}) has neuron type '{ntype}'; "
                                    f"supported: {', '.join(NEURON_TYPES)}")
    if "messageBits" in n and _scalar(n["messageBits"][()], where, f"layer {i} ({kind}) neuron messageBits", 0, 32) != 0:
        raise UnsupportedLayerError(f"{where}: layer {i} ({kind}) sends graded spikes (messageBits); "
                                    "only binary spikes are supported")
    at = f"layer {i} ({kind}) neuron"
    for k in ("iDecay", "vDecay", "vThMant"):
        if k not in n:
            raise CheckpointError(f"{where}: {at} has no {k}")
    return {"type": ntype, "iDecay": _scalar(n["iDecay"][()], where, f"{at} iDecay", 0, DECAY_UNITY),
            "vDecay": _scalar(n["vDecay"][()], where, f"{at} vDecay", 0, DECAY_UNITY),
            "vThMant": _scalar(n["vThMant"][()], where, f"{at} vThMant", 0, 1 << 17)}


def _population(name: str, shape: tuple[int, ...], prm: dict, bias: np.ndarray, depth: int) -> Population:
    v_decay, v_th = prm["vDecay"], prm["vThMant"]
    readout = v_decay == 0 and v_th >= V_TH_READOUT
    neuron = Neuron("readout" if readout else ("if" if v_decay == 0 else "lif"),
                    tau=DECAY_UNITY / v_decay if v_decay else float("inf"), decay_input=False,
                    v_threshold=float(v_th), v_reset=0.0)
    if bias.min(initial=0) < -(2**15) or bias.max(initial=0) >= 2**15:
        raise UnsupportedLayerError(f"population {name}: bias {int(bias.min())}..{int(bias.max())} does not fit "
                                    "Lava's 16-bit bias_mant")
    return Population(name, shape, neuron, depth=depth, scale=None, i_decay=prm["iDecay"], v_decay=v_decay,
                      v_th_mant=v_th, bias_mant=bias.astype(np.int64))


def _full_bias(g: h5py.Group, shape: tuple[int, ...], name: str, where: str) -> np.ndarray:
    """netx `AbstractBlock._neuron`: per neuron (Lava (W,H,C) order for conv) or per channel."""
    if "bias" not in g:
        return np.zeros(shape, np.int64)
    b = _ints(_numbers(g["bias"][()], where, f"population {name} bias"))
    if len(shape) == 1:
        if b.size not in (1, shape[0]):
            raise UnsupportedLayerError(f"population {name}: bias of shape {b.shape} does not broadcast to {shape}")
        return np.broadcast_to(b.reshape(-1), shape).copy()
    whc = shape[::-1]
    if list(b.shape) == list(whc):
        return b.transpose(2, 1, 0).copy()
    if b.size == shape[0]:
        return np.broadcast_to(b.reshape(-1, 1, 1), shape).copy()
    raise UnsupportedLayerError(f"population {name}: bias of shape {b.shape} does not broadcast to {shape}")


def _delay(g: h5py.Group, where: str) -> int:
    if "delay" not in g:
        return 0
    d = np.clip(_numbers(g["delay"][()], where, "delay"), 0, DELAY_MAX).astype(np.int64)
    if d.size and not (d == d.reshape(-1)[0]).all():
        raise UnsupportedLayerError(f"{where}: per-synapse dense delays are not supported (one delay per layer)")
    return int(d.reshape(-1)[0]) if d.size else 0


class _Layers:
    """The graph read so far, and one reader per netx layer kind (as netx has one builder per kind)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.pops: list[Population] = []
        self.syns: list[Synapse] = []
        self.notes: list[str] = [f"read from netx file {where}"]
        self.input_shape: tuple[int, ...] | None = None
        self.flatten_next = False

    def input(self, g: h5py.Group, i: int) -> None:
        where, name = self.where, f"layer{i}"
        if self.pops or self.syns:
            raise UnsupportedLayerError(f"{where}: layer {i} is an input layer after other layers")
        self.input_shape = _shape(g["shape"][()], where, f"layer {i} (input) shape")
        if "neuron" in g:
            prm = _neuron_params(g, i, "input", where)
            # netx keeps the input layer's weight/bias as net.in_layer.transform; Lava never applies them
            self.pops.append(_population(name, self.input_shape, prm, np.zeros(self.input_shape, np.int64), 0))
            tw = int(_ints(g["weight"][()]).reshape(-1)[0]) if "weight" in g else 64
            tb = int(_ints(g["bias"][()]).reshape(-1)[0]) if "bias" in g else 0
            self.notes.append(f"input: bias (per-sample bias mantissas of population {name!r}, shape "
                              f"{self.input_shape}; the file's input transform weight={tw} bias={tb} is for the data "
                              "pipeline, Lava does not apply it)")

    def flatten(self, g: h5py.Group, i: int) -> None:
        self.flatten_next = True

    def neurons(self, g: h5py.Group, i: int, kind: str) -> None:
        """A conv or dense layer: its synapse from the layer before, then its population."""
        where, name = self.where, f"layer{i}"
        prev_shape = self.pops[-1].shape if self.pops else self.input_shape
        prm = _neuron_params(g, i, kind, where)
        out_shape = _shape(g["shape"][()], where, f"layer {i} ({kind}) shape")
        if "weight" not in g:
            raise CheckpointError(f"{where}: layer {i} ({kind}) has no weight")
        raw_w = _numbers(g["weight"][()], where, f"layer {i} ({kind}) weight")
        if kind == "conv":
            syn = self.conv(g, i, raw_w, prev_shape, out_shape)
        else:
            syn = self.dense(g, i, raw_w, prev_shape, out_shape)
        self.syns.append(syn)
        depth = self.pops[-1].depth + 1 if self.pops else 1
        self.pops.append(_population(name, syn.out_shape, prm, _full_bias(g, syn.out_shape, name, where), depth))

    def _source(self) -> str:
        return self.pops[-1].name if self.pops else INPUT

    def conv(self, g: h5py.Group, i: int, raw_w: np.ndarray, prev_shape, out_shape) -> Synapse:
        where, at = self.where, f"layer {i} (conv)"
        if prev_shape is None or len(prev_shape) != 3:
            raise UnsupportedLayerError(f"{where}: {at} has no (C, H, W) input shape (previous shape {prev_shape})")
        if self.flatten_next:
            raise UnsupportedLayerError(f"{where}: {at} follows a flatten layer")
        w = _ints(raw_w)
        if w.ndim < 4 or int(np.prod(w.shape[4:])) != 1:
            raise CheckpointError(f"{where}: {at} weight has shape {tuple(w.shape)}; allowed: "
                                  "(C_out, C_in / groups, kH, kW)")
        w = w.reshape(w.shape[:4])
        if w.min() < WEIGHT_MIN or w.max() > WEIGHT_MAX:
            raise UnsupportedLayerError(f"{where}: {at} weights {int(w.min())}..{int(w.max())} exceed "
                                        f"Loihi's 8-bit range {WEIGHT_MIN}..{WEIGHT_MAX}")
        for key in ("stride", "padding"):
            if key not in g:
                raise CheckpointError(f"{where}: {at} has no {key}")
        stride = _pair(g["stride"][()], where, f"{at} stride", 1)
        padding = _pair(g["padding"][()], where, f"{at} padding", 0)
        dilation = _pair(g["dilation"][()], where, f"{at} dilation", 1) if "dilation" in g else (1, 1)
        groups = _scalar(g["groups"][()], where, f"{at} groups", 1, 1 << 16) if "groups" in g else 1
        if dilation != (1, 1):
            raise UnsupportedLayerError(f"{where}: {at} has dilation {dilation}; only 1 is supported")
        c, h, wd = prev_shape
        kh, kw = w.shape[2:]
        expect = (w.shape[0], (h + 2 * padding[0] - kh) // stride[0] + 1, (wd + 2 * padding[1] - kw) // stride[1] + 1)
        if len(out_shape) != 3 or out_shape != expect or w.shape[1] * groups != c or w.shape[0] % groups:
            raise CheckpointError(f"{where}: {at} shape {out_shape} does not match its weight "
                                  f"{tuple(w.shape)} on input {prev_shape} (expected {expect})")
        return Synapse(f"layer{i}.synapse", "conv", self._source(), f"layer{i}", w.astype(np.float64), prev_shape,
                       out_shape, stride=stride, padding=padding, groups=groups, weight_int=w)

    def dense(self, g: h5py.Group, i: int, raw_w: np.ndarray, prev_shape, out_shape) -> Synapse:
        where, at = self.where, f"layer {i} (dense)"
        if prev_shape is not None and len(prev_shape) > 1 and not self.flatten_next:
            raise UnsupportedLayerError(f"{where}: {at} reads a {prev_shape} layer without a flatten")
        self.flatten_next = False
        n_out = int(np.prod(out_shape))
        raw = _ints(raw_w)
        if raw.ndim == 1 and raw.size % n_out == 0:
            raw = raw.reshape(n_out, -1)
        if raw.ndim != 2:
            raise CheckpointError(f"{where}: {at} weight has shape {tuple(raw.shape)}; allowed: ({n_out}, inputs)")
        n_in = int(np.prod(prev_shape)) if prev_shape is not None else raw.shape[1]
        if raw.shape != (n_out, n_in):
            raise CheckpointError(f"{where}: {at} weight {tuple(raw.shape)} does not match "
                                  f"{n_in} inputs and {n_out} outputs")
        if prev_shape is None:
            self.input_shape = prev_shape = (n_in,)
        w = effective_dense_weight(raw, f"{where}: {at}")
        return Synapse(f"layer{i}.synapse", "dense", self._source(), f"layer{i}", w.astype(np.float64), prev_shape,
                       (n_out,), delay=_delay(g, f"{where}: {at}"), weight_int=w)

    def graph(self) -> DeployGraph:
        if not self.pops:
            raise CheckpointError(f"{self.where}: no neuron layers")
        if self.syns and self.syns[0].source == INPUT:
            self.notes.append(f"input: spikes (binary input spikes of shape {self.input_shape} read by synapse "
                              f"{self.syns[0].name!r}, an on-chip {self.syns[0].kind} with one step of latency)")
        self.notes.append("no staggered reset: netx applies none unless Network(reset_interval=...) is given")
        return DeployGraph(tuple(self.input_shape), self.pops, self.syns, notes=self.notes)


def _parse(f: h5py.File, where: str) -> DeployGraph:
    layers = f["layer"]
    count = len(layers)
    if count == 0:
        raise CheckpointError(f"{where}: the /layer group is empty")
    read = _Layers(where)
    for i in range(count):
        if str(i) not in layers or not isinstance(layers[str(i)], h5py.Group):
            raise CheckpointError(f"{where}: /layer has no group {i} (layers are groups 0..{count - 1})")
        g = layers[str(i)]
        for key in ("type", "shape"):
            if key not in g and (key == "type" or _str(g["type"]) != "flatten"):
                raise CheckpointError(f"{where}: layer {i} has no {key}")
        kind = _str(g["type"])
        if kind not in SUPPORTED:
            raise UnsupportedLayerError(f"{where}: layer {i} has type '{kind}'; supported: {', '.join(SUPPORTED)}")
        if kind == "input":
            read.input(g, i)
        elif kind == "flatten":
            read.flatten(g, i)
        else:
            read.neurons(g, i, kind)
    return read.graph()


def read_netx(path: str | Path) -> DeployGraph:
    """Read a netx `.net` file into a DeployGraph with its integer fields filled.

    Raises `UnsupportedLayerError` (naming the layer index and type) for what netx or this
    simulator cannot run, and `CheckpointError` for a missing, truncated or non-HDF5 file.
    """
    where = str(path)
    try:
        with open_hdf5(path, "netx network") as f:
            if "layer" not in f or not isinstance(f["layer"], h5py.Group):
                raise CheckpointError(f"{where}: not a netx network (no /layer group)")
            return _parse(f, where)
    except (CheckpointError, UnsupportedLayerError):
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError) as err:
        msg = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"{where}: cannot read it as a netx .net (HDF5) file: {msg}") from None
