"""Run a bundle's deployment graph (`deploy.h5`) in Lava (fixed_pt), residual graphs included.

Runs with the Lava interpreter (.venv-lava, Python 3.10); imports nothing from neurodistill (only
`start_from_rest` from its sibling run_netx.py) and reads `deploy.h5` with h5py (layout:
neurodistill/formats/deploy_h5.py). Files in, files out:
    python run_graph.py DEPLOY_H5 INPUT.npz OUT.npz
INPUT.npz and OUT.npz are as for run_netx.py: `bias` (N, *encoding population shape) int, the
host's encoding output as bias mantissas, and `steps`; OUT.npz gets `spikes_<k>` (N, steps,
*shape in C,H,W order) for every firing population k in graph order and `v_readout`
(N, steps, *readout shape).

The network is built from lava-nc processes, one per population and one per synapse layer:
- population: `LIFReset` (du = iDecay - 1, dv = vDecay, vth = vThMant, bias_mant, bias_exp = 6,
  as netx maps a CUBA neuron), reset every `steps` steps at step depth + 1 of each sample, the
  schedule netx's `reset_interval` gives a chain and neurodistill's simulator uses;
- conv synapse without delay: `Conv` (weights flipped and laid out (C_out, x, y, C_in), stride
  and padding in (x, y) order, exactly as netx builds its conv blocks);
- dense synapse without delay: `Dense`;
- synapse with a path-matching delay d: `DelaySparse` with every synaptic delay d (Loihi's
  synaptic delay; a conv is unrolled into its sparse matrix), so it arrives 1 + d steps later
  and no extra neuron or spike is added;
- several synapse layers into one population all connect to its `a_in`, which sums them.
Dense and sparse synapses are given `sign_mode=MIXED, num_weight_bits=8, weight_exp=0`: Lava
then keeps every even weight in [-256, 254] (the grid neurodistill quantizes to) unchanged.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_netx import start_from_rest  # noqa: E402


def whc(shape) -> tuple:
    return tuple(int(s) for s in shape)[::-1]  # (C, H, W) -> Lava's (W, H, C); (N,) stays


def to_lava(a: np.ndarray) -> np.ndarray:
    return a.transpose(tuple(range(a.ndim))[::-1])


def lava_position(shape) -> np.ndarray:
    """pos[i] = index in Lava's flattened (W, H, C) order of the i-th element of (C, H, W) in C order."""
    n = int(np.prod(shape))
    return to_lava(np.arange(n).reshape(whc(shape))).reshape(-1)


def read_graph(path: str) -> tuple[list[dict], list[dict]]:
    import h5py

    def group(g) -> dict:
        d = {k: json.loads(v) for k, v in g.attrs.items()}
        for k in g:
            d[k] = g[k][()]
        return d

    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != "neurodistill-deploy":
            raise SystemExit(f"{path} is not a neurodistill deployment graph (deploy.h5)")
        pops = [group(f[f"populations/{i}"]) for i in range(len(f["populations"]))]
        syns = [group(f[f"synapses/{i}"]) for i in range(len(f["synapses"]))]
    return pops, syns


def conv_matrix(syn: dict):
    """The conv layer as a sparse (out, in) matrix over (C, H, W) C-order indices (OIHW cross-correlation)."""
    from scipy.sparse import coo_matrix

    w = np.asarray(syn["weight_int"], np.int64)
    (c_in, h, wd), (c_out, ho, wo) = syn["in_shape"], syn["out_shape"]
    (sy, sx), (py, px), groups = syn["stride"], syn["padding"], int(syn["groups"])
    o, i, ky, kx, oy, ox = np.meshgrid(*(np.arange(n) for n in (*w.shape, ho, wo)), indexing="ij")
    iy, ix = oy * sy - py + ky, ox * sx - px + kx
    ci = (o // (c_out // groups)) * w.shape[1] + i
    val = w[o, i, ky, kx]
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd) & (val != 0)
    rows, cols = ((o * ho + oy) * wo + ox)[ok], ((ci * h + iy) * wd + ix)[ok]
    return coo_matrix((val[ok], (rows, cols)), shape=(c_out * ho * wo, c_in * h * wd)).tocsr()


def lava_matrix(syn: dict):
    """The synapse's (out, in) matrix with rows and columns in Lava's flattened (W, H, C) order."""
    from scipy.sparse import coo_matrix, csr_matrix

    m = conv_matrix(syn) if syn["kind"] == "conv" else csr_matrix(np.asarray(syn["weight_int"], np.int64))
    m = m.tocoo()
    rows, cols = lava_position(syn["out_shape"])[m.row], lava_position(syn["in_shape"])[m.col]
    out = coo_matrix((m.data.astype(np.int64), (rows, cols)), shape=m.shape).tocsr()
    out.eliminate_zeros()
    out.sort_indices()
    return out


def conv_fits(syn: dict) -> bool:
    """Lava's Conv model keeps groups, stride, padding and kernel size in int8 Vars."""
    vals = [int(syn["groups"]), *syn["stride"], *syn["padding"], *np.shape(syn["weight_int"])[2:]]
    return max(vals) <= 127


def build(pops: list[dict], syns: list[dict], steps: int, bias0: np.ndarray):
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import DelaySparse, Sparse
    from lava.utils.weightutils import SignMode

    chip = [s for s in syns if s["source"] != "input"]
    enc = {s["target"] for s in syns if s["source"] == "input"}
    if len(enc) != 1:
        raise SystemExit(f"expected one population fed by the host encoding layer, found {sorted(enc)}")
    lif = {}
    for p in pops:
        bias = bias0 if p["name"] in enc else np.asarray(p["bias_mant"]).reshape(p["shape"])
        lif[p["name"]] = LIFReset(shape=whc(p["shape"]), du=int(p["i_decay"]) - 1, dv=int(p["v_decay"]),
                                  vth=int(p["v_th_mant"]), bias_mant=to_lava(np.asarray(bias, np.int64)), bias_exp=6,
                                  reset_interval=steps, reset_offset=int(p["depth"]) + 1, name=p["name"])
    exact = {"sign_mode": SignMode.MIXED, "num_weight_bits": 8, "weight_exp": 0}
    synapses = []
    for s in chip:
        src, dst = lif[s["source"]], lif[s["target"]]
        delay = int(s["delay"])
        if s["kind"] == "conv" and delay == 0 and conv_fits(s):
            w = np.asarray(s["weight_int"], np.int64)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)  # (C_out, x, y, C_in)
            proc = Conv(weight=np.ascontiguousarray(w), input_shape=whc(s["in_shape"]), stride=tuple(s["stride"])[::-1],
                        padding=tuple(s["padding"])[::-1], groups=int(s["groups"]), name=s["name"])
            src.s_out.connect(proc.s_in)
            out = proc.a_out
        else:
            m = lava_matrix(s)
            if delay == 0 and s["kind"] == "dense":
                proc = Dense(weights=m.toarray().astype(np.int64), name=s["name"], **exact)
            elif delay == 0:
                proc = Sparse(weights=m, name=s["name"], **exact)
            else:
                if delay > 62:
                    raise SystemExit(f"synapse {s['name']}: delay {delay} is beyond Loihi's 62")
                d = m.copy()
                d.data = np.full(d.nnz, delay, dtype=int)
                proc = DelaySparse(weights=m, delays=d, max_delay=delay, name=s["name"], **exact)
            (src.s_out.flatten() if len(s["in_shape"]) > 1 else src.s_out).connect(proc.s_in)
            out = proc.a_out.reshape(whc(s["out_shape"])) if len(s["out_shape"]) > 1 else proc.a_out
        if tuple(out.shape) != whc(s["out_shape"]):
            raise SystemExit(f"synapse {s['name']}: Lava output {out.shape}, expected {whc(s['out_shape'])} (W, H, C)")
        out.connect(dst.a_in)  # several connections into one a_in are summed
        synapses.append(proc)
    return lif, synapses, next(iter(enc))


def main(graph_path: str, in_path: str, out_path: str) -> int:
    import lava.proc.conv.utils as conv_utils

    conv_utils.TORCH_IS_AVAILABLE = False  # as lava-dl's own tests: torch in Lava's workers can break
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.monitor.process import Monitor

    data = np.load(in_path)
    bias, steps = data["bias"].astype(np.int64), int(data["steps"])
    n = bias.shape[0]
    pops, syns = read_graph(graph_path)
    lif, synapses, enc = build(pops, syns, steps, bias[0])
    firing = [p for p in pops if p["neuron"]["kind"] != "readout"]
    readout = pops[-1]
    monitors = []
    for p in firing:
        mon = Monitor()
        mon.probe(lif[p["name"]].s_out, n * steps)
        monitors.append(mon)
    vmon = Monitor()
    vmon.probe(lif[readout["name"]].v, n * steps)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    root = lif[enc]
    try:
        for i in range(n):
            if i > 0:
                root.bias_mant.set(to_lava(bias[i]))
                start_from_rest(lif.values(), synapses)
            root.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        out = {}
        for k, (p, mon) in enumerate(zip(firing, monitors, strict=True)):
            s = mon.get_data()[p["name"]]["s_out"]  # (n*steps, W, H, C) or (n*steps, N)
            s = s.reshape(n, steps, *whc(p["shape"]))
            out[f"spikes_{k}"] = s.transpose(0, 1, *range(s.ndim - 1, 1, -1)).astype(np.uint8)
        v = vmon.get_data()[readout["name"]]["v"].reshape(n, steps, *whc(readout["shape"]))
        out["v_readout"] = v.transpose(0, 1, *range(v.ndim - 1, 1, -1)).astype(np.int64)
    finally:
        root.stop()
    np.savez(out_path, **out)
    kinds = sorted({type(s).__name__ for s in synapses})
    print(f"ran {n} samples x {steps} steps in Lava (fixed_pt): {len(pops)} populations, "
          f"{len(synapses)} synapse layers ({', '.join(kinds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
