"""The fuzz cases: base inputs built once per session, and one generator per mutated case.

Every case works in a directory of its own: it copies the base inputs it needs in, mutates
them with `random.Random(seed * 1000 + index)`, and returns the command to run there
(`Command`). Kinds:

- checkpoint: `export CKPT` (loihi2, nir, onnx), `train --teacher`, `train --init`, `train --resume`
  (a damaged `last.pt` or run `config.yaml`);
- config: `train --config FILE` in YAML and TOML;
- nir: `export MODEL.nir --from neurodistill|spikingjelly|snntorch|norse|sinabs`;
- npz: `simulate BUNDLE --inputs X.npz` and `export MODEL.nir --calib X.npz`;
- profile: `report SIM --profile FILE.toml` and `profiles show FILE.toml`;
- simdir: `report SIMDIR` (and `--table methods`);
- bundle: `inspect`, `simulate` (bundle and `network.net`), `export network.nir`, with the
  mutations of tests/test_fuzz_bundle.py;
- out: every command's `--out` as a non-empty directory, a symlink to a directory (holding a user's
  file, or empty), a dangling symlink, a regular file, and a directory of its own earlier output
  and a user's file with `--overwrite`;
- security: HDF5 external links, external storage and virtual datasets pointing at decoy files
  outside the input's directory (deploy.h5, network.net, .nir; run under strace), pickles with
  a refused global, YAML `!!python/...` tags.

A case named `pristine` runs the unmutated input: it must be `ok` (the harness's own check).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import shutil
import sys
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SEED = 20250611
TINY = ["--epochs", "1", "--limit-train-batches", "2", "--val-split", "0", "--device", "cpu"]
SECRET = "NEURODISTILL-FUZZ-SECRET-7f3a9c"  # == harness.SECRET
PAYLOAD = "FUZZPAYLOAD"  # in every pickle/YAML payload's arguments: the audit hook looks for it
USER = "USER_NOTES.txt"  # a user's file inside an --out directory: must survive every command
PRODUCERS = ("neurodistill", "spikingjelly", "snntorch", "norse", "sinabs")
INF, NAN = float("inf"), float("nan")

# base inputs, relative to Base.root
ANN_RUN, SNN_RUN = "ann", "snn"
ANN_CKPT, SNN_CKPT = "ann/best.pt", "snn/best.pt"
BUNDLE, SIM, REPORT = "bundle", "sim", "report"
INPUTS, CALIB, NET_INPUTS, BOMB = "npz/inputs.npz", "npz/calib.npz", "npz/net_inputs.npz", "npz/bomb.npz"
PRIOR = {"train": ANN_RUN, "export-loihi2": "loihi2export", "export-nir": "nirexport", "export-onnx": "onnxexport",
         "export-nir-source": "fromnir", "simulate": SIM, "report": REPORT}


def nir_file(producer: str) -> str:
    return f"nir/{producer}.nir"


@dataclass
class Command:
    argv: list[str]
    what: str
    out: str | None = None  # the --out path, relative to the case directory
    check: str = "none"  # how an exit-0 result is validated (harness.VALIDATORS)
    user_files: tuple[str, ...] = ()  # a user's files: never to be changed or deleted
    # Files outside the case that a documented reference inside an input names, and that the tool
    # may therefore read (docs/design.md, "Files a file names"): a simulation's bundle manifest and
    # that bundle's training summary. Anything else outside stays an outside read.
    references: tuple[str, ...] = ()


@dataclass
class Base:
    root: Path
    decoy: Path
    net_input_key: str = "spikes"


@dataclass
class CaseEnv:
    dir: Path
    rng: random.Random
    base: Base

    def copy(self, src: str, dest: str | None = None) -> str:
        dest = dest or src
        s, d = self.base.root / src, self.dir / dest
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, symlinks=True)
            for sim in d.rglob("simulation.json"):  # it names its bundle by absolute path: the case's own copy
                text = sim.read_text()
                if str(self.base.root) in text:
                    sim.write_text(text.replace(str(self.base.root), str(self.dir)))
        else:
            shutil.copy2(s, d)
        return dest

    def path(self, rel: str) -> Path:
        return self.dir / rel


@dataclass
class Case:
    index: int
    kind: str
    name: str
    make: Callable[[CaseEnv], Command]
    runner: str = "inproc"  # inproc | subprocess (the real CLI under strace: C-level opens, memory)
    security: bool = False  # passes only if refused
    seconds: float | None = None

    @property
    def case_id(self) -> str:
        return f"{self.index:03d}-{self.kind}-{self.name}"


def case_rng(index: int, seed: int = SEED) -> random.Random:
    return random.Random(seed * 1000 + index)


# --- base inputs ------------------------------------------------------------------------------------

@contextlib.contextmanager
def _cwd(p: Path):
    old = os.getcwd()
    os.chdir(p)
    try:
        yield
    finally:
        os.chdir(old)


def _cli(root: Path, *args: Any) -> None:
    import traceback

    from click.testing import CliRunner

    from neurodistill.cli import main

    with _cwd(root):
        res = CliRunner().invoke(main, [str(a) for a in args])
    if res.exit_code != 0:
        tb = "".join(traceback.format_exception(*res.exc_info)) if res.exc_info else ""
        raise RuntimeError(f"base input: 'neurodistill {' '.join(map(str, args))}' failed (exit {res.exit_code}): "
                           f"{res.output[-1500:]}{tb[-3000:]}")


def build_base(work: Path, with_bomb: bool = True) -> Base:
    """Every base input (about 30 s on 2 cores); the decoy directory beside it."""
    import torch

    from tests.test_fuzz_bundle import make_tiny_bundle

    root = work / "base"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    base = Base(root, work / "decoy")
    _cli(root, "train", "--model", "ann_digits", *TINY, "--out", ANN_RUN)
    _cli(root, "train", "--model", "snn_digits", "--timesteps", "2", *TINY, "--out", SNN_RUN)
    make_tiny_bundle(root / BUNDLE)
    _cli(root, "simulate", BUNDLE, "--samples", "4", "--device", "cpu", "--out", SIM)
    _cli(root, "report", SIM, "--out", REPORT)
    _cli(root, "export", SNN_CKPT, "--target", "nir", "--out", "nirexport")
    _cli(root, "export", SNN_CKPT, "--calib", "16", "--out", "loihi2export")
    _cli(root, "export", ANN_CKPT, "--target", "onnx", "--out", "onnxexport")
    (root / "nir").mkdir()
    shutil.copy2(root / "nirexport" / "network.nir", root / nir_file("neurodistill"))
    _foreign_nir(root)
    _cli(root, "export", nir_file("neurodistill"), "--target", "loihi2", "--calib", "16", "--out", "fromnir")
    # npz inputs: digits samples (images in [0, 1] scaled as the bundle expects them), labels
    from neurodistill.export.bundle import dataset_samples

    (root / "npz").mkdir()
    x, y = dataset_samples("digits", None, {}, 8, "test")
    np.savez(root / INPUTS, x=x.numpy().astype(np.float32), y=y.numpy().astype(np.int64))
    x, y = dataset_samples("digits", None, {}, 16, "train")
    np.savez(root / CALIB, x=x.numpy().astype(np.float32), y=y.numpy().astype(np.int64))
    _net_inputs(base)
    if with_bomb:
        zip_bomb(root / BOMB, 6 * 2**30)
    (root / "config").mkdir()
    (root / "config" / "base.yaml").write_text(_yaml(CFG_BASE))
    (root / "config" / "base.toml").write_text(toml_dumps(CFG_BASE))
    (root / "profiles").mkdir()
    import neurodistill

    shipped = Path(neurodistill.__file__).resolve().parents[1] / "hw_profiles"
    for name in ("loihi2", "cmos45-fp32"):
        shutil.copy2(shipped / f"{name}.toml", root / "profiles" / f"{name}.toml")
    torch.manual_seed(0)
    build_decoy(base)
    return base


def build_decoy(base: Base) -> None:
    """Files outside every case directory that no case may open: a secret, HDF5 copies of the inputs,
    a bundle directory."""
    d = base.decoy
    d.mkdir(parents=True, exist_ok=True)
    secret = (SECRET + "\n").encode()
    (d / "secret.bin").write_bytes(secret + bytes(2**20 - len(secret)))
    for name, src in (("deploy.h5", f"{BUNDLE}/deploy.h5"), ("network.net", f"{BUNDLE}/network.net"),
                      ("network.nir", nir_file("neurodistill"))):
        shutil.copy2(base.root / src, d / name)
        with h5py.File(d / name, "r+") as f:
            f.attrs["secret"] = SECRET
    prof = (base.root / "profiles" / "loihi2.toml").read_text()
    (d / "loihi2.toml").write_text(prof.replace('notes = "', f'notes = "{SECRET} ', 1))
    if (d / "bundle").exists():
        shutil.rmtree(d / "bundle")
    shutil.copytree(base.root / BUNDLE, d / "bundle")
    m = json.loads((d / "bundle" / "manifest.json").read_text())
    m["secret"] = SECRET
    (d / "bundle" / "manifest.json").write_text(json.dumps(m))


def _foreign_nir(root: Path) -> None:
    """One small conv + LIF + classifier network from each framework's own NIR exporter (as tests/test_nir_in_*.py)."""
    import torch

    from tests import test_nir_in_norse, test_nir_in_sinabs, test_nir_in_snntorch
    from tests.test_nir_in_common import spiking_weights

    torch.manual_seed(0)
    test_nir_in_snntorch.write(test_nir_in_snntorch.leaky_net(), root / nir_file("snntorch"))
    test_nir_in_sinabs.write(test_nir_in_sinabs.lif_net(1), root / nir_file("sinabs"))
    import norse.torch as norse

    net = norse.SequentialState(torch.nn.Conv2d(1, 4, 3, padding=1), norse.LIFBoxCell(test_nir_in_norse.params()),
                                torch.nn.Conv2d(4, 10, 8)).eval()
    spiking_weights(net[0], net[2], seed=3)
    test_nir_in_norse.write(net, root / nir_file("norse"))
    from spikingjelly.activation_based import layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    sj = torch.nn.Sequential(layer.Conv2d(1, 4, 3, padding=1, step_mode="m"),
                             neuron.LIFNode(tau=3.0, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m"),
                             layer.Flatten(step_mode="m"), layer.Linear(256, 10, step_mode="m"))
    spiking_weights(sj[0], sj[3], seed=1)
    export_to_nir(sj.eval(), torch.zeros(4, 1, 1, 8, 8), save_path=root / nir_file("spikingjelly"))


def _net_inputs(base: Base) -> None:
    from neurodistill.core.fxp_spikes import input_mode
    from neurodistill.formats.netx.reader import read_netx

    graph = read_netx(base.root / BUNDLE / "network.net")
    rng = np.random.default_rng(0)
    if input_mode(graph) == "bias":
        base.net_input_key = "bias"
        shape = tuple(graph.populations[0].shape)
        np.savez(base.root / NET_INPUTS, bias=rng.integers(-100, 400, (4, *shape)), steps=np.array(4),
                 labels=np.arange(4) % 10)
    else:
        base.net_input_key = "spikes"
        np.savez(base.root / NET_INPUTS, spikes=(rng.random((4, 4, *graph.input_shape)) < 0.3).astype(np.uint8),
                 labels=np.arange(4) % 10)


def zip_bomb(path: Path, nbytes: int) -> None:
    """An .npz of a few MB whose 'x' (N, 1, 8, 8) float32 and 'y' (N,) int64 inflate to `nbytes` and N*8 bytes.

    The deflate stream of zeros is compressed once per 64 MiB chunk with a full flush (which resets the
    compressor, so every chunk compresses to the same bytes) and repeated."""
    import zlib

    from numpy.lib import format as npformat

    n = nbytes // (64 * 4)
    chunk = bytes(64 * 2**20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)

    class Repeat:  # stands in for zipfile's compressor: the precompressed block per full chunk
        def __init__(self):
            self.z = zlib.compressobj(9, zlib.DEFLATED, -15)

        def compress(self, data):
            if len(data) == len(chunk) and not any(data[:4096]):
                return block
            return self.z.compress(data) + self.z.flush(zlib.Z_FULL_FLUSH)

        def flush(self):
            return self.z.flush()

    orig = zipfile._get_compressor
    zipfile._get_compressor = lambda ctype, level=None: Repeat() if ctype == zipfile.ZIP_DEFLATED else orig(ctype, level)
    try:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, descr, shape, size in (("x.npy", "<f4", (n, 1, 8, 8), n * 256), ("y.npy", "<i8", (n,), n * 8)):
                hdr = io.BytesIO()
                npformat.write_array_header_2_0(hdr, {"descr": descr, "fortran_order": False, "shape": shape})
                with z.open(name, "w", force_zip64=True) as f:
                    f.write(hdr.getvalue())
                    left = size
                    while left > 0:
                        k = min(left, len(chunk))
                        f.write(chunk if k == len(chunk) else bytes(k))
                        left -= k
    finally:
        zipfile._get_compressor = orig


# --- shared mutation helpers -------------------------------------------------------------------------

def truncate_file(p: Path, rng: random.Random) -> str:
    data = p.read_bytes()
    n = rng.randrange(0, max(1, len(data)))
    p.write_bytes(data[:n])
    return f"truncate {p.name} at {n} of {len(data)}"


def flip_file(p: Path, rng: random.Random) -> str:
    data = bytearray(p.read_bytes())
    where = sorted(rng.randrange(len(data)) for _ in range(rng.choice((1, 2, 4, 16))))
    for i in where:
        data[i] ^= (1 << rng.randrange(8)) if rng.random() < 0.5 else rng.randrange(1, 256)
    p.write_bytes(bytes(data))
    return f"flip {p.name} bytes {where[:4]}{'...' if len(where) > 4 else ''}"


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else "inf" if v == INF else "-inf" if v == -INF else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"TOML has no {type(v).__name__}")


def toml_dumps(d: dict, prefix: str = "") -> str:
    """A small TOML writer: scalars and arrays first, then one [table] per nested mapping (None is left out)."""
    lines, tables = [], []
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{prefix}{_toml_key(k)}"
        text += f"\n[{name}]\n" + toml_dumps(v, name + ".")
    return text


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _has_none(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, dict):
        return any(_has_none(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_none(x) for x in v)
    return False


def _leaves(v: Any) -> list:
    if isinstance(v, dict):
        return [x for y in v.values() for x in _leaves(y)]
    return [v]


def _dict_paths(obj: dict, depth: int = 3, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(obj, dict) and depth:
        for k, v in obj.items():
            out.append((*prefix, k))
            out += _dict_paths(v, depth - 1, (*prefix, k))
    return out


def _set_path(d: dict, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = value


def _del_path(d: dict, path: tuple) -> None:
    for k in path[:-1]:
        d = d[k]
    del d[path[-1]]


# --- payloads ---------------------------------------------------------------------------------------

def gadget(tag: str) -> dict:
    """A global no checkpoint or config may name: it only tells the harness that it ran."""
    sys.audit("fuzz.payload", tag)
    return {}


class SystemPayload:
    def __reduce__(self):
        return os.system, (f"true {PAYLOAD}",)


class GadgetPayload:
    def __reduce__(self):
        return gadget, (PAYLOAD,)


# --- checkpoints --------------------------------------------------------------------------------------

def _torch():
    import torch

    return torch


def _load_ckpt(p: Path) -> dict:
    return _torch().load(p, weights_only=True)


def _save_ckpt(p: Path, obj: Any, legacy: bool = False) -> None:
    _torch().save(obj, p, _use_new_zipfile_serialization=not legacy)


CKPT_WRONG = [None, True, -1, 0, 2**63 - 1, 1e9, NAN, "", "x", [], {}, [1, 2]]


def ck_payload_drop(p: Path, rng: random.Random) -> str:
    ck = _load_ckpt(p)
    paths = [q for q in _dict_paths(ck) if not (len(q) > 1 and q[0] in ("optimizer", "rng", "history"))]
    path = rng.choice(paths)
    _del_path(ck, path)
    _save_ckpt(p, ck)
    return f"checkpoint: drop {'.'.join(map(str, path))}"


def ck_payload_wrong(p: Path, rng: random.Random) -> str:
    ck = _load_ckpt(p)
    path = rng.choice([q for q in _dict_paths(ck) if len(q) <= 2 or rng.random() < 0.3])
    value = rng.choice(CKPT_WRONG + [_torch().zeros(2)])
    _set_path(ck, path, value)
    _save_ckpt(p, ck)
    return f"checkpoint: {'.'.join(map(str, path))} = {value!r}"


CKPT_EDITS: list[tuple[tuple, Any]] = [
    (("format",), "other"), (("format_version",), 99), (("format_version",), "1"), (("model",), None),
    (("model",), "ann_digits"), (("model", "name"), "nope"), (("model", "name"), "../../etc/passwd"),
    (("model", "num_classes"), 0), (("model", "num_classes"), -3), (("model", "num_classes"), 2**31),
    (("model", "in_channels"), 0), (("model", "spiking"), "yes"), (("model", "neuron"), {"kind": "nope"}),
    (("state_dict",), {}), (("state_dict",), []), (("state_dict",), "x"), (("config",), None),
    (("config", "timesteps"), 2**63 - 1), (("config", "timesteps"), 10**9), (("config", "timesteps"), 0),
    (("config", "timesteps"), -1), (("config", "timesteps"), 1.5), (("config", "model"), 5),
    (("dataset",), None), (("dataset", "input_shape"), [1, 100000, 100000]), (("dataset", "input_shape"), []),
    (("dataset", "input_shape"), [-1, 8, 8]), (("dataset", "num_classes"), 0), (("dataset", "name"), "nope"),
    (("epoch",), -1), (("epoch",), 2**63 - 1), (("epoch",), "one"), (("history",), None), (("optimizer",), {}),
    (("optimizer", "param_groups"), []), (("scheduler",), None), (("rng",), {}), (("best",), None),
]


def ck_edit(i: int) -> Callable[[Path, random.Random], str]:
    path, value = CKPT_EDITS[i]

    def m(p: Path, rng: random.Random) -> str:
        ck = _load_ckpt(p)
        _set_path(ck, path, value)
        _save_ckpt(p, ck)
        return f"checkpoint: {'.'.join(path)} = {value!r}"
    return m


def ck_tensor(p: Path, rng: random.Random) -> str:
    torch = _torch()
    ck = _load_ckpt(p)
    sd = ck["state_dict"]
    key = rng.choice([k for k, v in sd.items() if v.dim() > 0 and v.is_floating_point()])
    t = sd[key]
    op = rng.choice(["drop", "extra", "transpose", "flatten", "unsqueeze", "int64", "bool", "float16", "complex", "nan",
                     "inf", "huge", "empty", "scalar", "expanded"])
    if op == "drop":
        del sd[key]
    elif op == "extra":
        sd[key + "_extra"] = torch.zeros(3)
    elif op == "transpose":
        sd[key] = t.reshape(-1).flip(0).reshape(t.shape[::-1]) if t.dim() > 1 else t.reshape(1, -1)
    elif op == "flatten":
        sd[key] = t.reshape(-1)
    elif op == "unsqueeze":
        sd[key] = t.unsqueeze(0)
    elif op in ("int64", "bool", "float16"):
        sd[key] = t.to(getattr(torch, op))
    elif op == "complex":
        sd[key] = t.to(torch.complex64)
    elif op == "nan":
        sd[key] = torch.full_like(t, NAN)
    elif op == "inf":
        sd[key] = torch.full_like(t, INF)
    elif op == "huge":
        sd[key] = torch.full_like(t, 1e38)
    elif op == "empty":
        sd[key] = torch.zeros(0)
    elif op == "scalar":
        sd[key] = torch.tensor(1.0)
    else:  # one stored element, 10**10 elements seen
        sd[key] = torch.zeros(1).expand(10**10)
    _save_ckpt(p, ck)
    return f"checkpoint: state_dict[{key!r}] {op}"


def ck_bytes(kind: str) -> Callable[[Path, random.Random], str]:
    def m(p: Path, rng: random.Random) -> str:
        if kind == "empty":
            p.write_bytes(b"")
        elif kind == "text":
            p.write_text("this is not a checkpoint\n")
        elif kind == "random":
            p.write_bytes(rng.randbytes(4096))
        elif kind == "npz":
            buf = io.BytesIO()
            np.savez(buf, state_dict=np.zeros(3))
            p.write_bytes(buf.getvalue())
        elif kind == "h5":
            with h5py.File(p, "w") as f:
                f["state_dict"] = np.zeros(3)
        elif kind == "json":
            p.write_text(json.dumps({"format": "neurodistill-checkpoint", "model": {}, "state_dict": {}}))
        elif kind == "legacy":  # the pre-zip torch format: still a valid checkpoint
            _save_ckpt(p, _load_ckpt(p), legacy=True)
        else:
            _zip_edit(p, kind, rng)
        return f"checkpoint bytes: {kind}"
    return m


def _zip_edit(p: Path, kind: str, rng: random.Random) -> None:
    with zipfile.ZipFile(p) as z:
        members = [(i, z.read(i.filename)) for i in z.infolist()]
    if kind == "zip_crc":  # one byte of a stored tensor changed, the recorded CRC kept
        data = bytearray(p.read_bytes())
        with zipfile.ZipFile(p) as z:
            info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size > 8)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start + rng.randrange(info.file_size)] ^= 0xFF
        p.write_bytes(bytes(data))
        return
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED if kind == "zip_deflated" else zipfile.ZIP_STORED) as z:
        for info, data in members:
            name = info.filename
            if kind == "zip_garbage_pkl" and name.endswith("data.pkl"):
                data = rng.randbytes(len(data))
            if kind == "zip_drop_member" and "/data/" in name and name.endswith("/0"):
                continue
            if kind == "zip_drop_pkl" and name.endswith("data.pkl"):
                continue
            z.writestr(name, data)
        if kind == "zip_extra_member":
            z.writestr("../../escape.txt", b"x")
    p.write_bytes(out.getvalue())


CKPT_BYTE_KINDS = ("empty", "text", "random", "npz", "h5", "json", "legacy", "zip_crc", "zip_garbage_pkl",
                   "zip_drop_member", "zip_drop_pkl", "zip_deflated", "zip_rewrite", "zip_extra_member")
CKPT_ENTRIES = ("export-loihi2", "export-nir", "export-onnx", "teacher", "init", "resume")


def _ckpt_command(env: CaseEnv, entry: str, mutate: Callable[[Path, random.Random], str] | None) -> Command:
    if entry == "resume":
        env.copy(ANN_RUN, "run")
        what = mutate(env.path("run/last.pt"), env.rng) if mutate else "unchanged"
        return Command(["train", "--resume", "--out", "run", "--epochs", "2"], what, "run", "train")
    src = SNN_CKPT if entry in ("export-loihi2", "export-nir") else ANN_CKPT
    env.copy(src, "model.pt")
    what = mutate(env.path("model.pt"), env.rng) if mutate else "unchanged"
    if entry.startswith("export"):
        target = entry.split("-")[1]
        argv = ["export", "model.pt", "--target", target, *(["--calib", "16"] if target == "loihi2" else []),
                "--out", "out"]
        return Command(argv, what, "out", entry)
    if entry == "teacher":
        argv = ["train", "--model", "snn_digits", "--timesteps", "2", "--method", "kd", "--teacher", "model.pt", *TINY,
                "--out", "out"]
    else:
        argv = ["train", "--model", "ann_digits", "--init", "model.pt", *TINY, "--out", "out"]
    return Command(argv, what, "out", "train")


def _ckpt_case(entry: str, mutate) -> Callable[[CaseEnv], Command]:
    return lambda env: _ckpt_command(env, entry, mutate)


def _resume_config(mutate: Callable[[Path, random.Random], str]) -> Callable[[CaseEnv], Command]:
    def make(env: CaseEnv) -> Command:
        env.copy(ANN_RUN, "run")
        what = mutate(env.path("run/config.yaml"), env.rng)
        return Command(["train", "--resume", "--out", "run", "--epochs", "2"], "run/config.yaml: " + what, "run", "train")
    return make


def _text_edit(fn: Callable[[str], str], label: str) -> Callable[[Path, random.Random], str]:
    def m(p: Path, rng: random.Random) -> str:
        p.write_text(fn(p.read_text()))
        return label
    return m


def _bytes_edit(data: bytes, label: str) -> Callable[[Path, random.Random], str]:
    def m(p: Path, rng: random.Random) -> str:
        p.write_bytes(data)
        return label
    return m


def _delete(p: Path, rng: random.Random) -> str:
    p.unlink()
    return f"delete {p.name}"


def _replace_line(key: str, value: str) -> Callable[[str], str]:
    return lambda t: "\n".join(f"{key}: {value}" if ln.startswith(f"{key}:") else ln for ln in t.splitlines()) + "\n"


RESUME_CONFIG_MUTS = [
    ("truncate", truncate_file), ("flip", flip_file),
    ("non-utf8", _bytes_edit(b"model: ann_digits\nepochs: 1\nseed: \xff\xfe\x00\x81\n", "non-UTF-8 bytes")),
    ("wrong-type", _text_edit(_replace_line("timesteps", "x"), "timesteps: x")),
    ("unknown-key", _text_edit(lambda t: t + "nonsense_key: 1\n", "unknown key")),
    ("model-mismatch", _text_edit(_replace_line("model", "snn_digits"), "model: snn_digits (last.pt is ann_digits)")),
    ("empty", _bytes_edit(b"", "empty")), ("list", _bytes_edit(b"- 1\n- 2\n", "a YAML list")),
    ("delete", _delete), ("epochs-negative", _text_edit(_replace_line("epochs", "-1"), "epochs: -1")),
    ("tabs", _text_edit(lambda t: t.replace("  ", "\t"), "tab indentation")),
]


def checkpoint_cases(add: Callable) -> None:
    for entry in CKPT_ENTRIES:
        add("checkpoint", f"pristine-{entry}", _ckpt_case(entry, None))
    n = 0
    for label, fn, reps in (("truncate", truncate_file, 1), ("flip", flip_file, 1), ("drop", ck_payload_drop, 1),
                            ("wrong", ck_payload_wrong, 1), ("tensor", ck_tensor, 2)):
        for _ in range(reps):
            for entry in CKPT_ENTRIES:
                add("checkpoint", f"{entry}-{label}", _ckpt_case(entry, fn))
    for kind in CKPT_BYTE_KINDS:
        entry = CKPT_ENTRIES[n % len(CKPT_ENTRIES)]
        n += 1
        add("checkpoint", f"{entry}-{kind}", _ckpt_case(entry, ck_bytes(kind)))
    for i in range(len(CKPT_EDITS)):
        entry = CKPT_ENTRIES[i % len(CKPT_ENTRIES)]
        add("checkpoint", f"{entry}-edit{i}", _ckpt_case(entry, ck_edit(i)))
    for label, fn in RESUME_CONFIG_MUTS:
        add("checkpoint", f"resume-config-{label}", _resume_config(fn))


# --- configs --------------------------------------------------------------------------------------------

CFG_BASE: dict[str, Any] = {"model": "ann_digits", "epochs": 1, "limit_train_batches": 2, "val_split": 0.0,
                            "device": "cpu"}
SNN = {"model": "snn_digits", "timesteps": 2}
SYN = {"dataset": "synthetic", "data": {"synthetic_shape": [1, 8, 8], "synthetic_size": 64}}
CONFIG_EDITS: list[dict] = [
    {**SNN, "timesteps": 2**63 - 1}, {**SNN, "timesteps": 1e9}, {**SNN, "timesteps": 10**9}, {**SNN, "timesteps": 0},
    {"workers": -1}, _merge(SYN, {"data": {"synthetic_classes": -1}}), _merge(SYN, {"data": {"synthetic_classes": 0}}),
    _merge(SYN, {"data": {"synthetic_classes": 2**40}}), _merge(SYN, {"data": {"synthetic_shape": [3, 100000, 100000]}}),
    _merge(SYN, {"data": {"synthetic_shape": [0]}}), _merge(SYN, {"data": {"synthetic_shape": []}}),
    _merge(SYN, {"data": {"synthetic_size": 2**40}}), _merge(SYN, {"data": {"synthetic_size": -1}}),
    _merge(SYN, {"data": {"synthetic_size": 0}}), {"batch_size": 2**63 - 1}, {"batch_size": 0}, {"epochs": -1},
    {"epochs": "1"}, {"epochs": 1.0}, {"epochs": True}, {"lr": -1.0}, {"lr": NAN}, {"lr": INF}, {"momentum": NAN},
    {"weight_decay": -1.0}, {"weight_decay": INF}, {"val_split": 1.0}, {"val_split": -0.1}, {"val_split": 0.9999},
    {"val_split": NAN}, {"seed": -1}, {"seed": 2**64}, {"limit_train_batches": -1},
    {**SNN, "neuron": {"tau": 0.0}}, {**SNN, "neuron": {"tau": -1.0}}, {**SNN, "neuron": {"tau": NAN}},
    {**SNN, "neuron": {"v_threshold": NAN}}, {**SNN, "neuron": {"v_threshold": 0.0}}, {**SNN, "neuron": {"kind": "foo"}},
    {**SNN, "neuron": {"surrogate_alpha": -1.0}}, {**SNN, "neuron": {"reset": "bounce"}},
    {**SNN, "method": "tssd", "tssd": {"temperature": 0.0}}, {**SNN, "method": "tssd", "tssd": {"teacher_timesteps": -1}},
    {**SNN, "method": "esd", "esd": {"stages": ["nope"]}}, {**SNN, "method": "esd", "esd": {"stages": []}},
    {**SNN, "method": "tssd", "tssd": {"attach": "body.999"}}, {"loss": {"alpha": 2.0}},
    {**SNN, "deploy": "loihi2", "qat": {"weight_bits": 0}}, {**SNN, "deploy": "loihi2", "qat": {"weight_bits": 99}},
    {**SNN, "deploy": "loihi2", "qat": {"calib": -1}}, {**SNN, "deploy": "loihi2", "qat": {"calib": 2**40}},
    {"deploy": "loihi2"}, {"deploy": "loihi3"}, {"method": "kd"}, {"method": "kd", "teacher": "/nonexistent/t.pt"},
    {"method": "kd", "teacher": ""}, {"init": "cfg.yaml"}, {"init": "."}, {"data_dir": "/nonexistent"},
    {"dataset": "cifar10"}, {"dataset": "cifar10", "data_dir": "."}, {"dataset": "../../etc"}, {"model": ""},
    {"model": "nope"}, {"model": 5}, {"data": {"cutout": -1}}, {"data": {"cutout": 10**6}}, {"data": {"frames": 0}},
    {"data": {"image_size": 0}}, {"backend": "cupy"}, {"device": "cuda"}, {"device": "tpu"}, {"amp": "yes"},
    {"backprop": "rate"}, {"optimizer": "adam"}, {"schedule": "linear"}, {"neuron": 5}, {"data": []}, {"loss": None},
]
CFG_WRONG = [None, True, -1, 0, 1.5, -0.5, NAN, INF, "", "x", [], [0], {}, {"a": 1}, 2**31]
CFG_NO_WRONG = ("workers", "out", "epochs", "limit_train_batches")  # a fork bomb or a long run is not a finding


def _cfg_command(env: CaseEnv, text: str | bytes, suffix: str, what: str, flags: tuple[str, ...] = ()) -> Command:
    name = f"cfg{suffix}"
    p = env.path(name)
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return Command(["train", "--config", name, *flags, "--out", "out"], what, "out", "train")


def _cfg_edit(edit: dict, fmt: str) -> Callable[[CaseEnv], Command]:
    def make(env: CaseEnv) -> Command:
        data = _merge(CFG_BASE, edit)
        use = ".yaml" if fmt == "yaml" or _has_none(data) else ".toml"
        text = _yaml(data) if use == ".yaml" else toml_dumps(data)
        return _cfg_command(env, text, use, f"{use[1:]}: {json.dumps(edit, default=str)[:160]}")
    return make


def _cfg_random_wrong(fmt: str) -> Callable[[CaseEnv], Command]:
    def make(env: CaseEnv) -> Command:
        from neurodistill.config import TrainConfig

        full = TrainConfig().to_dict()
        paths = [q for q in _dict_paths(full, 2) if q[0] not in CFG_NO_WRONG and not isinstance(
            full[q[0]] if len(q) == 1 else full[q[0]][q[1]], dict)]
        path = env.rng.choice(paths)
        value = env.rng.choice(CFG_WRONG)
        data = _merge(CFG_BASE, {})
        _set_path(data, path, value)
        use = ".yaml" if fmt == "yaml" or _has_none(data) else ".toml"
        text = _yaml(data) if use == ".yaml" else toml_dumps(data)
        return _cfg_command(env, text, use, f"{use[1:]}: {'.'.join(path)} = {value!r}")
    return make


def _cfg_text(text: str | bytes, suffix: str, label: str) -> Callable[[CaseEnv], Command]:
    """A whole config text; the tiny-run flags on the command line (a file that parses to {} must not mean
    30 full epochs)."""
    return lambda env: _cfg_command(env, text, suffix, label, tuple(TINY))


def _cfg_bytes_mut(fmt: str, fn: Callable[[Path, random.Random], str]) -> Callable[[CaseEnv], Command]:
    def make(env: CaseEnv) -> Command:
        name = f"cfg.{fmt}"
        env.copy(f"config/base.{fmt}", name)
        what = fn(env.path(name), env.rng)
        return Command(["train", "--config", name, "--out", "out"], what, "out", "train")
    return make


def _cfg_huge(kind: str) -> Callable[[CaseEnv], Command]:
    def make(env: CaseEnv) -> Command:
        base = _yaml(CFG_BASE)
        if kind == "yaml-comments":  # 96 MiB of comment lines after a valid config
            line = "# " + "x" * 1021 + "\n"
            with open(env.path("cfg.yaml"), "w") as f:
                f.write(base)
                for _ in range(96 * 1024):
                    f.write(line)
            return Command(["train", "--config", "cfg.yaml", "--out", "out"], "96 MiB YAML of comments", "out", "train")
        if kind == "yaml-list":  # a 2-million-element list where a short one belongs
            env.path("cfg.yaml").write_text(base + "data:\n  synthetic_shape: [" + ", ".join(["1"] * 2_000_000) + "]\n")
            return Command(["train", "--config", "cfg.yaml", "--out", "out"], "YAML list of 2e6 ints", "out", "train")
        env.path("cfg.toml").write_text(toml_dumps(CFG_BASE) + f'method = "{"m" * (48 * 2**20)}"\n')
        return Command(["train", "--config", "cfg.toml", "--out", "out"], "48 MiB TOML string", "out", "train")
    return make


def _cfg_path(kind: str) -> Callable[[CaseEnv], Command]:
    def make(env: CaseEnv) -> Command:
        text = _yaml(CFG_BASE)
        if kind == "json":
            env.path("cfg.json").write_text(json.dumps(CFG_BASE))
            name = "cfg.json"
        elif kind == "yml":
            env.path("cfg.yml").write_text(text)
            name = "cfg.yml"
        elif kind == "no-suffix":
            env.path("cfg").write_text(text)
            name = "cfg"
        elif kind == "directory":
            env.path("cfg.yaml").mkdir()
            name = "cfg.yaml"
        elif kind == "missing":
            name = "missing.yaml"
        elif kind == "fifo":
            os.mkfifo(env.path("cfg.yaml"))
            name = "cfg.yaml"
        else:  # a symlink loop
            os.symlink("cfg.yaml", env.path("cfg.yaml"))
            name = "cfg.yaml"
        return Command(["train", "--config", name, "--out", "out"], f"config path: {kind}", "out", "train")
    return make


YAML_SYNTAX = [
    ("unbalanced", "model: [ann_digits\nepochs: 1\n"), ("tab-indent", "data:\n\tcutout: 1\n"),
    ("duplicate-keys", _yaml(CFG_BASE) + "epochs: 2\nepochs: 3\n"), ("scalar", "5\n"), ("list", "- a\n- b\n"),
    ("empty", ""), ("comments-only", "# nothing\n"), ("null-doc", "~\n"), ("two-docs", _yaml(CFG_BASE) + "---\nepochs: 2\n"),
    ("billion-laughs", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                       "data:\n  synthetic_shape: *h\n"),
    ("deep-nesting", "data: " + "[" * 20000 + "]" * 20000 + "\n"),
    ("merge-key", "<<: {model: ann_digits}\nepochs: 1\n"), ("complex-key", "? [a, b]\n: 1\n"),
    ("binary", "model: !!binary aGVsbG8=\n"), ("set", "model: !!set {a, b}\n"), ("timestamp", "seed: 2001-12-14\n"),
    ("tuple-tag", "data:\n  synthetic_shape: !!python/tuple [1, 8, 8]\n"),
    ("object-tag", "model: !!python/object:collections.OrderedDict {}\n"),
    ("name-tag", "model: !!python/name:os.path.join\n"),
    ("module-tag", "model: !!python/module:os\n"), ("bad-tag", "model: !nonsense x\n"),
]
TOML_SYNTAX = [
    ("invalid", "model = \n"), ("int-overflow", toml_dumps(CFG_BASE) + "seed = 99999999999999999999\n"),
    ("datetime", toml_dumps(CFG_BASE) + "seed = 1979-05-27T07:32:00Z\n"),
    ("duplicate", toml_dumps(CFG_BASE) + "epochs = 2\n"), ("array-of-tables", "[[neuron]]\ntau = 2.0\n"),
    ("table-wrong", "[neuron]\ntau = \"x\"\n"), ("inline-table", "neuron = {tau = [1, 2]}\n"),
    ("nan", toml_dumps(CFG_BASE) + "lr = nan\n"), ("dotted", "neuron.tau.x = 1\n"), ("bom", "\ufeff" + toml_dumps(CFG_BASE)),
]
NON_UTF8 = [
    ("yaml-latin1", ".yaml", b"model: ann_digits\n# caf\xe9\nepochs: 1\ndevice: cpu\nlimit_train_batches: 2\n"),
    ("yaml-ff", ".yaml", b"model: \xff\xfe\xfd\n"), ("toml-bytes", ".toml", b"model = \"\xc3\x28\"\n"),
    ("yaml-utf16", ".yaml", "model: ann_digits\nepochs: 1\n".encode("utf-16")),
    ("yaml-nul", ".yaml", b"model: ann\x00digits\n"),
]


def config_cases(add: Callable) -> None:
    add("config", "pristine-yaml", _cfg_edit({}, "yaml"))
    add("config", "pristine-toml", _cfg_edit({}, "toml"))
    for i, edit in enumerate(CONFIG_EDITS):
        heavy = any(v in (10**9, 2**40) or v == [3, 100000, 100000] for v in _leaves(edit))  # memory: the real CLI
        add("config", f"edit{i}", _cfg_edit(edit, "yaml" if i % 2 == 0 else "toml"),
            runner="subprocess" if heavy else "inproc")
    for i in range(12):
        add("config", "wrong", _cfg_random_wrong("yaml" if i % 2 == 0 else "toml"))
    for fmt in ("yaml", "toml"):
        add("config", f"{fmt}-truncate", _cfg_bytes_mut(fmt, truncate_file))
        add("config", f"{fmt}-flip", _cfg_bytes_mut(fmt, flip_file))
    for label, text in YAML_SYNTAX:
        add("config", f"yaml-{label}", _cfg_text(text, ".yaml", f"YAML: {label}"))
    for label, text in TOML_SYNTAX:
        add("config", f"toml-{label}", _cfg_text(text, ".toml", f"TOML: {label}"))
    for label, suffix, data in NON_UTF8:
        add("config", f"non-utf8-{label}", _cfg_text(data, suffix, f"non-UTF-8: {label}"))
    for kind in ("yaml-comments", "yaml-list", "toml-string"):
        add("config", f"huge-{kind}", _cfg_huge(kind), runner="subprocess")
    for kind in ("json", "yml", "no-suffix", "directory", "missing", "fifo", "symlink-loop"):
        add("config", f"path-{kind}", _cfg_path(kind))


# --- NIR files --------------------------------------------------------------------------------------------

def _nodes(f: h5py.File) -> h5py.Group:
    return f["node/nodes"]


def _node_type(g: h5py.Group) -> str:
    t = g["type"][()] if "type" in g else b""
    return t.decode() if isinstance(t, bytes) else str(t)


def _replace(g: h5py.Group, key: str, value: Any) -> None:
    if key in g:
        del g[key]
    if isinstance(value, str | bytes):
        g.create_dataset(key, data=value.encode() if isinstance(value, str) else value, dtype=h5py.string_dtype())
    else:
        g.create_dataset(key, data=value)


def _pick(f: h5py.File, rng: random.Random, keys: tuple[str, ...]) -> tuple[str, str] | None:
    cands = [(n, k) for n in sorted(_nodes(f)) for k in keys if isinstance(_nodes(f)[n], h5py.Group)
             and k in _nodes(f)[n]]
    return rng.choice(cands) if cands else None


def nir_set(keys: tuple[str, ...], values: Callable[[np.ndarray, random.Random], Any], label: str):
    def op(f: h5py.File, rng: random.Random) -> str:
        got = _pick(f, rng, keys)
        if got is None:
            return f"no node has {keys} (unchanged)"
        n, k = got
        old = np.asarray(_nodes(f)[n][k][()])
        new = values(old, rng)
        _replace(_nodes(f)[n], k, new)
        return f"node {n} {k} {label}"
    return op


def nir_type(f: h5py.File, rng: random.Random) -> str:
    n = rng.choice(sorted(_nodes(f)))
    t = rng.choice(["Foo", "", "NIRGraph", "Input", "Output", "LIF", "Conv2d", "Affine", "Delay", "CubaLIF", "IF"])
    _replace(_nodes(f)[n], "type", t)
    return f"node {n} type {t!r}"


def nir_scalar(f: h5py.File, rng: random.Random) -> str:
    cands = [(n, k) for n in sorted(_nodes(f)) for k in _nodes(f)[n] if isinstance(_nodes(f)[n][k], h5py.Dataset)
             and _nodes(f)[n][k].size > 1 and _nodes(f)[n][k].dtype.kind in "iuf"]
    n, k = rng.choice(cands)
    old = np.asarray(_nodes(f)[n][k][()])
    _replace(_nodes(f)[n], k, old.reshape(-1)[0])
    return f"node {n} {k} stored as a scalar"


def nir_meta(key: str, value: Any):
    def op(f: h5py.File, rng: random.Random) -> str:
        g = f["node"].require_group("metadata")
        _replace(g, key, value)
        return f"metadata {key} = {value!r}"
    return op


def nir_input_shape(value: Any):
    def op(f: h5py.File, rng: random.Random) -> str:
        ins = [n for n in sorted(_nodes(f)) if _node_type(_nodes(f)[n]) == "Input"]
        if not ins:
            return "no Input node (unchanged)"
        _replace(_nodes(f)[ins[0]], "shape", value)
        return f"Input {ins[0]} shape = {value!r}"
    return op


def nir_edges(kind: str):
    def op(f: h5py.File, rng: random.Random) -> str:
        edges = [tuple(x.decode() if isinstance(x, bytes) else x for x in e) for e in f["node/edges"][()]]
        names = sorted(_nodes(f))
        if kind == "missing-node":
            edges.append(("nope", names[0]))
        elif kind == "self-loop":
            n = rng.choice(names)
            edges.append((n, n))
        elif kind == "cycle":
            edges.append((edges[-1][1], edges[0][0]))
        elif kind == "reversed":
            edges = [(b, a) for a, b in edges]
        if kind == "empty":
            value = np.zeros((0, 2), dtype=object)
        elif kind == "ints":
            value = np.arange(len(edges) * 2).reshape(-1, 2)
        elif kind == "flat":
            value = np.array([x for e in edges for x in e], dtype=object)
        else:
            value = np.array(edges, dtype=object)
        del f["node/edges"]
        f["node"].create_dataset("edges", data=value, dtype=h5py.string_dtype() if value.dtype == object else None)
        return f"edges: {kind}"
    return op


def nir_delete(what: str):
    def op(f: h5py.File, rng: random.Random) -> str:
        if what == "node":
            n = rng.choice(sorted(_nodes(f)))
            del _nodes(f)[n]
            return f"delete node {n}"
        if what == "param":
            n = rng.choice(sorted(_nodes(f)))
            k = rng.choice(sorted(_nodes(f)[n]))
            del _nodes(f)[n][k]
            return f"delete node {n} {k}"
        path = {"edges": "node/edges", "nodes": "node/nodes", "metadata": "node/metadata", "type": "node/type"}[what]
        if path in f:
            del f[path]
        return f"delete {path}"
    return op


def nir_weight(kind: str):
    def op(f: h5py.File, rng: random.Random) -> str:
        got = _pick(f, rng, ("weight",))
        if got is None:
            return "no weight (unchanged)"
        n, k = got
        g = _nodes(f)[n]
        old = np.asarray(g[k][()])
        if kind == "shape":
            new = old.reshape(-1)[: max(1, old.size // 2)]
        elif kind == "nan":
            new = np.full_like(old, NAN)
        elif kind == "inf":
            new = np.full_like(old, INF)
        elif kind == "huge-values":
            new = np.full_like(old, 1e38)
        elif kind == "int":
            new = old.astype(np.int64)
        else:  # declared, nothing stored: h5py fills with the fill value when it is read
            rows = {"declared": 3 * 2**19, "declared-64GiB": 2**24}[kind]
            del g[k]
            g.create_dataset(k, shape=(rows, 1024), dtype=np.float32, chunks=(1024, 1024), compression="gzip")
            return f"node {n} weight declared ({rows}, 1024) float32 ({rows * 4096 / 2**30:.0f} GiB), nothing stored"
        _replace(g, k, new)
        return f"node {n} weight {kind}"
    return op


def _file_op(kind: str):
    def m(p: Path, rng: random.Random) -> str:
        if kind == "truncate":
            return truncate_file(p, rng)
        if kind == "flip":
            return flip_file(p, rng)
        if kind == "text":
            p.write_text("not HDF5\n")
        elif kind == "empty":
            p.write_bytes(b"")
        elif kind == "not-nir":
            with h5py.File(p, "w") as f:
                f["x"] = np.zeros(3)
        elif kind == "version":
            with h5py.File(p, "r+") as f:
                _replace(f, "version", "9.9.9")
        return f"file: {kind}"
    return m


NIR_OPS: list[tuple[str, Any]] = [
    ("type", nir_type), ("type", nir_type), ("type", nir_type), ("type", nir_type), ("type", nir_type),
    ("scalar", nir_scalar), ("scalar", nir_scalar), ("scalar", nir_scalar), ("scalar", nir_scalar),
    ("scalar", nir_scalar),
    ("tau0", nir_set(("tau", "tau_mem"), lambda a, r: np.zeros_like(a), "= 0")),
    ("tau0", nir_set(("tau", "tau_mem"), lambda a, r: np.zeros_like(a), "= 0")),
    ("tau-neg", nir_set(("tau", "tau_mem"), lambda a, r: -np.abs(a), "< 0")),
    ("tau-nan", nir_set(("tau", "tau_mem"), lambda a, r: np.full_like(a, NAN), "= nan")),
    ("r0", nir_set(("r",), lambda a, r: np.zeros_like(a), "= 0")),
    ("vth-nan", nir_set(("v_threshold",), lambda a, r: np.full_like(a, NAN), "= nan")),
    ("vth-inf", nir_set(("v_threshold",), lambda a, r: np.full_like(a, INF), "= inf")),
    ("stride0", nir_set(("stride",), lambda a, r: np.zeros_like(a), "= 0")),
    ("stride0", nir_set(("stride",), lambda a, r: np.zeros_like(a), "= 0")),
    ("stride-neg", nir_set(("stride",), lambda a, r: -np.ones_like(a), "= -1")),
    ("stride-huge", nir_set(("stride",), lambda a, r: np.full_like(a, 2**40), "= 2**40")),
    ("padding-neg", nir_set(("padding",), lambda a, r: -np.ones_like(a), "= -1")),
    ("padding-huge", nir_set(("padding",), lambda a, r: np.full_like(a, 10**5), "= 1e5")),
    ("dilation0", nir_set(("dilation",), lambda a, r: np.zeros_like(a), "= 0")),
    ("groups-1d", nir_set(("groups",), lambda a, r: np.array([1]), "shape (1,)")),
    ("groups0", nir_set(("groups",), lambda a, r: np.array(0), "= 0")),
    ("groups3", nir_set(("groups",), lambda a, r: np.array(3), "= 3")),
    ("meta-T-1e9", nir_meta("timesteps", 1e9)), ("meta-T-int", nir_meta("timesteps", 10**9)),
    ("meta-T-max", nir_meta("timesteps", 2**63 - 1)), ("meta-T-neg", nir_meta("timesteps", -1)),
    ("meta-T-0", nir_meta("timesteps", 0)), ("meta-T-str", nir_meta("timesteps", "x")),
    ("meta-dt-0", nir_meta("dt", 0.0)), ("meta-dt-nan", nir_meta("dt", NAN)), ("meta-dt-neg", nir_meta("dt", -1.0)),
    ("meta-shape-huge", nir_meta("input_shape", np.array([1, 100000, 100000]))),
    ("meta-shape-neg", nir_meta("input_shape", np.array([-1, 8, 8]))),
    ("input-shape-wrong", nir_input_shape(np.array([1, 9, 9]))),
    ("input-shape-0", nir_input_shape(np.array([0, 8, 8]))),
    ("input-shape-huge", nir_input_shape(np.array([2**40, 1, 1]))),
    ("input-shape-scalar", nir_input_shape(np.array(5))),
    ("edges-missing", nir_edges("missing-node")), ("edges-self", nir_edges("self-loop")),
    ("edges-cycle", nir_edges("cycle")), ("edges-reversed", nir_edges("reversed")), ("edges-empty", nir_edges("empty")),
    ("edges-ints", nir_edges("ints")), ("edges-flat", nir_edges("flat")),
    ("del-node", nir_delete("node")), ("del-node", nir_delete("node")), ("del-param", nir_delete("param")),
    ("del-param", nir_delete("param")), ("del-edges", nir_delete("edges")), ("del-nodes", nir_delete("nodes")),
    ("del-metadata", nir_delete("metadata")), ("del-type", nir_delete("type")),
    ("weight-shape", nir_weight("shape")), ("weight-nan", nir_weight("nan")), ("weight-inf", nir_weight("inf")),
    ("weight-huge-values", nir_weight("huge-values")), ("weight-int", nir_weight("int")),
]
NIR_FILE_OPS = ["truncate", "truncate", "truncate", "truncate", "flip", "flip", "flip", "flip", "text", "empty",
                "not-nir", "version"]
NIR_TARGETS = ("nir", "loihi2", "nir", "onnx")


def _nir_command(env: CaseEnv, producer: str, target: str, mutate) -> Command:
    env.copy(nir_file(producer), "m.nir")
    p = env.path("m.nir")
    if mutate is None:
        what = "unchanged"
    elif isinstance(mutate, str):
        what = _file_op(mutate)(p, env.rng)
    else:
        with h5py.File(p, "r+") as f:
            what = mutate(f, env.rng)
    argv = ["export", "m.nir", "--from", producer, "--target", target]
    if target == "loihi2":
        argv += ["--calib", "16"]
    if producer != "neurodistill":
        argv += ["--timesteps", "4"]
    if producer in ("snntorch", "sinabs"):  # their files do not record the reset; the fixture nets reset to zero
        argv += ["--source-reset", "zero"]
    return Command(argv + ["--out", "out"], f"{producer}: {what}", "out", f"export-{target}")


def _nir_case(producer: str, target: str, mutate) -> Callable[[CaseEnv], Command]:
    return lambda env: _nir_command(env, producer, target, mutate)


def nir_cases(add: Callable) -> None:
    for i, producer in enumerate(PRODUCERS):
        add("nir", f"pristine-{producer}", _nir_case(producer, NIR_TARGETS[i % len(NIR_TARGETS)], None))
    n = 0
    for label, op in NIR_OPS:
        producer, target = PRODUCERS[n % len(PRODUCERS)], NIR_TARGETS[(n // len(PRODUCERS)) % len(NIR_TARGETS)]
        n += 1
        add("nir", f"{producer}-{label}", _nir_case(producer, target, op))
    for kind in NIR_FILE_OPS:
        producer, target = PRODUCERS[n % len(PRODUCERS)], NIR_TARGETS[(n // len(PRODUCERS)) % len(NIR_TARGETS)]
        n += 1
        add("nir", f"{producer}-{kind}", _nir_case(producer, target, kind))
    for producer in ("neurodistill", "snntorch"):
        add("nir", f"{producer}-weight-declared-6GiB", _nir_case(producer, "nir", nir_weight("declared")),
            runner="subprocess")
    add("nir", "sinabs-weight-declared-64GiB", _nir_case("sinabs", "loihi2", nir_weight("declared-64GiB")),
        runner="subprocess")


# --- npz inputs and calibration files ------------------------------------------------------------------------

def _npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy_bytes(descr: str, shape: tuple, data: bytes, fortran: bool = False, raw_header: bytes | None = None) -> bytes:
    from numpy.lib import format as npformat

    if raw_header is not None:
        body = raw_header + b" " * ((64 - (len(raw_header) + 11) % 64) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body + data
    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue() + data


def _zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npz_mut(kind: str):
    """(mutation of a valid x/y .npz at `p`, with the original arrays)."""
    def m(p: Path, rng: random.Random) -> str:
        with np.load(p) as z:
            x, y = z["x"], z["y"]
        n = len(x)
        new: bytes | None = None
        if kind == "truncate":
            return truncate_file(p, rng)
        if kind == "flip":
            return flip_file(p, rng)
        if kind == "crc":  # one byte of x's stored data changed, CRC kept
            data = bytearray(p.read_bytes())
            with zipfile.ZipFile(p) as z:
                info = z.getinfo("x.npy")
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            data[start + 128 + rng.randrange(info.file_size - 128)] ^= 0x55
            p.write_bytes(bytes(data))
            return "npz: bad CRC-32 of x.npy"
        if kind == "npy":
            buf = io.BytesIO()
            np.save(buf, x)
            new = buf.getvalue()
        elif kind == "object-x":
            new = _npz_bytes(x=np.array([{"a": 1}] * n, dtype=object), y=y)
        elif kind == "object-y":
            new = _npz_bytes(x=x, y=np.array([None] * n, dtype=object))
        elif kind == "shape-1e12":
            new = _zip_of({"x.npy": _npy_bytes("<f4", (10**12, 1, 8, 8), bytes(4096)), "y.npy": _npy_bytes("<i8", (n,), y.tobytes())})
        elif kind == "shape-neg":
            new = _zip_of({"x.npy": _npy_bytes("<f4", (-1, 1, 8, 8), bytes(4096)), "y.npy": _npy_bytes("<i8", (n,), y.tobytes())})
        elif kind == "header-garbage":
            new = _zip_of({"x.npy": _npy_bytes("", (), b"", raw_header=b"{'descr': __import__('os').getcwd()}"),
                           "y.npy": _npy_bytes("<i8", (n,), y.tobytes())})
        elif kind == "header-object":
            new = _zip_of({"x.npy": _npy_bytes("|O", (n, 1, 8, 8), b"\x80\x04N."), "y.npy": _npy_bytes("<i8", (n,), y.tobytes())})
        elif kind == "short-data":
            new = _zip_of({"x.npy": _npy_bytes("<f4", x.shape, x.tobytes()[:100]), "y.npy": _npy_bytes("<i8", (n,), y.tobytes())})
        elif kind == "void":
            new = _npz_bytes(x=np.zeros((n, 1, 8, 8), dtype="V4"), y=y)
        elif kind == "big-endian":
            new = _npz_bytes(x=x.astype(">f4"), y=y.astype(">i8"))
        elif kind == "str-x":
            new = _npz_bytes(x=x.astype("U8"), y=y)
        elif kind == "complex-x":
            new = _npz_bytes(x=x.astype(np.complex64), y=y)
        elif kind == "bool-x":
            new = _npz_bytes(x=x > 0.5, y=y)
        elif kind == "int8-x":
            new = _npz_bytes(x=(x * 10).astype(np.int8), y=y)
        elif kind == "float16-x":
            new = _npz_bytes(x=x.astype(np.float16), y=y)
        elif kind == "float-y":
            new = _npz_bytes(x=x, y=y.astype(np.float64))
        elif kind == "str-y":
            new = _npz_bytes(x=x, y=y.astype("U3"))
        elif kind == "uint64-y-huge":
            new = _npz_bytes(x=x, y=np.full(n, 2**64 - 1, dtype=np.uint64))
        elif kind == "neg-y":
            new = _npz_bytes(x=x, y=np.full(n, -1, dtype=np.int64))
        elif kind == "y-1000":
            new = _npz_bytes(x=x, y=np.full(n, 1000, dtype=np.int64))
        elif kind == "nan-x":
            x2 = x.copy()
            x2.reshape(-1)[rng.randrange(x2.size)] = NAN
            new = _npz_bytes(x=x2, y=y)
        elif kind == "inf-x":
            new = _npz_bytes(x=np.full_like(x, INF), y=y)
        elif kind == "huge-x":
            new = _npz_bytes(x=np.full_like(x, 3e38), y=y)
        elif kind == "empty-n0":
            new = _npz_bytes(x=x[:0], y=y[:0])
        elif kind == "shape-2d":
            new = _npz_bytes(x=x.reshape(n, -1), y=y)
        elif kind == "shape-wrong":
            new = _npz_bytes(x=np.zeros((n, 1, 8, 9), np.float32), y=y)
        elif kind == "channels":
            new = _npz_bytes(x=np.zeros((n, 3, 8, 8), np.float32), y=y)
        elif kind == "0d":
            new = _npz_bytes(x=np.float32(1.0), y=y)
        elif kind == "extra-dim":
            new = _npz_bytes(x=x[..., None], y=y)
        elif kind == "len-mismatch":
            new = _npz_bytes(x=x, y=y[: n // 2])
        elif kind == "missing-x":
            new = _npz_bytes(y=y)
        elif kind == "missing-y":
            new = _npz_bytes(x=x)
        elif kind == "extra-arrays":
            new = _npz_bytes(x=x, y=y, z=np.zeros(3), steps=np.array(4))
        elif kind == "empty-zip":
            new = _zip_of({})
        elif kind == "dir-entry":
            new = _zip_of({"x.npy/": b"", "y.npy": _npy_bytes("<i8", (n,), y.tobytes())})
        elif kind == "traversal-names":
            new = _zip_of({"../x.npy": _npy_bytes("<f4", x.shape, x.tobytes()), "y.npy": _npy_bytes("<i8", (n,), y.tobytes())})
        elif kind == "many-samples":
            new = _npz_bytes(x=np.tile(x, (2500, 1, 1, 1)), y=np.tile(y, 2500))
        elif kind == "compressed":
            buf = io.BytesIO()
            np.savez_compressed(buf, x=x, y=y)
            new = buf.getvalue()
        elif kind == "fortran":
            new = _zip_of({"x.npy": _npy_bytes("<f4", x.shape, np.asfortranarray(x).tobytes(order="F"), fortran=True),
                           "y.npy": _npy_bytes("<i8", (n,), y.tobytes())})
        elif kind == "deflate64":
            data = bytearray(p.read_bytes())  # compression method 9 (Deflate64), which zipfile cannot read
            with zipfile.ZipFile(p) as z:
                info = z.getinfo("x.npy")
            data[info.header_offset + 8] = 9  # the local header and the central directory both say so
            central = data.find(b"PK\x01\x02")
            while central >= 0 and data[central + 46:central + 46 + 5] != b"x.npy":
                central = data.find(b"PK\x01\x02", central + 4)
            data[central + 10] = 9
            p.write_bytes(bytes(data))
            return "npz: x.npy compression method 9 (Deflate64)"
        else:
            raise ValueError(kind)
        p.write_bytes(new)
        return f"npz: {kind}"
    return m


NPZ_KINDS = ["truncate", "truncate", "flip", "flip", "crc", "npy", "object-x", "object-y", "shape-neg", "header-garbage",
             "header-object", "short-data", "void", "big-endian", "str-x", "complex-x", "bool-x", "int8-x", "float16-x",
             "float-y", "str-y", "uint64-y-huge", "neg-y", "y-1000", "nan-x", "inf-x", "huge-x", "empty-n0", "shape-2d",
             "shape-wrong", "channels", "0d", "extra-dim", "len-mismatch", "missing-x", "missing-y", "extra-arrays",
             "empty-zip", "dir-entry", "traversal-names", "many-samples", "compressed", "fortran", "deflate64"]
NPZ_BOTH = ("crc", "nan-x", "empty-n0", "npy", "object-x")


def _npz_command(env: CaseEnv, consumer: str, kind: str | None) -> Command:
    if consumer == "inputs":
        env.copy(BUNDLE)
        env.copy(INPUTS, "x.npz")
        argv = ["simulate", "bundle", "--inputs", "x.npz", "--samples", "4", "--device", "cpu", "--out", "out"]
        check = "simulate"
    else:
        env.copy(nir_file("neurodistill"), "m.nir")
        env.copy(CALIB, "x.npz")
        argv = ["export", "m.nir", "--target", "loihi2", "--calib", "x.npz", "--out", "out"]
        check = "export-loihi2"
    if kind == "bomb":
        shutil.copy2(env.base.root / BOMB, env.path("x.npz"))
        what = "zip bomb: 6 MiB inflating to 6 GiB"
    elif kind == "shape-1e12":
        what = _npz_mut(kind)(env.path("x.npz"), env.rng)
    elif kind is None:
        what = "unchanged"
    else:
        what = _npz_mut(kind)(env.path("x.npz"), env.rng)
    return Command(argv, f"{consumer}: {what}", "out", check)


def npz_cases(add: Callable) -> None:
    for consumer in ("inputs", "calib"):
        add("npz", f"pristine-{consumer}", lambda env, c=consumer: _npz_command(env, c, None))
    for i, kind in enumerate(NPZ_KINDS):
        consumers = ("inputs", "calib") if kind in NPZ_BOTH else (("inputs", "calib")[i % 2],)
        for c in consumers:
            add("npz", f"{c}-{kind}", lambda env, c=c, k=kind: _npz_command(env, c, k))
    for c in ("inputs", "calib"):
        add("npz", f"{c}-bomb", lambda env, c=c: _npz_command(env, c, "bomb"), runner="subprocess")
        add("npz", f"{c}-shape-1e12", lambda env, c=c: _npz_command(env, c, "shape-1e12"), runner="subprocess")


# --- hardware profiles ------------------------------------------------------------------------------------

def _profile_command(env: CaseEnv, name: str, consumer: str, mutate) -> Command:
    env.copy(f"profiles/{name}.toml", f"prof/{name}.toml")
    p = env.path(f"prof/{name}.toml")
    what = "unchanged" if mutate is None else mutate(p, env.rng)
    if consumer == "report":
        env.copy(BUNDLE)
        env.copy(SIM)
        return Command(["report", "sim", "--profile", f"prof/{name}.toml", "--out", "out"], what, "out", "report")
    return Command(["profiles", "show", f"prof/{name}.toml"], what, None, "stdout")


def _prof_dict(fn: Callable[[dict, random.Random], str]) -> Callable[[Path, random.Random], str]:
    def m(p: Path, rng: random.Random) -> str:
        d = tomllib.loads(p.read_text())
        what = fn(d, rng)
        p.write_text(toml_dumps(d))
        return what
    return m


def _first_const(d: dict) -> dict:
    return d["constants"][sorted(d["constants"])[0]]


def _const_set(key: str, value: Any):
    def fn(d: dict, rng: random.Random) -> str:
        _first_const(d)[key] = value
        return f"constant {key} = {value!r}"
    return fn


def _top_set(key: str, value: Any):
    def fn(d: dict, rng: random.Random) -> str:
        if value is None:
            d.pop(key, None)
            return f"drop {key}"
        d[key] = value
        return f"{key} = {value!r}"
    return fn


def _const_drop(key: str):
    def fn(d: dict, rng: random.Random) -> str:
        _first_const(d).pop(key, None)
        return f"constant: drop {key}"
    return fn


def _prof_many(d: dict, rng: random.Random) -> str:
    c = _first_const(d)
    d["reference"] = {f"r{i}": {**c, "kind": "measured-total", "applies_to": "none"} for i in range(20000)}
    return "20000 reference entries"


def _prof_second_priced(kind: str):
    def fn(d: dict, rng: random.Random) -> str:
        c = dict(_first_const(d))
        _first_const(d)["kind"] = kind
        d["constants"]["e_extra"] = {**c, "applies_to": "spikes" if d["model"] == "synaptic-op" else "acs"}
        return f"a second priced constant beside a {kind} one"
    return fn


def _prof_measured_priced(d: dict, rng: random.Random) -> str:
    _first_const(d)["kind"] = "measured-total"
    return "a measured-total constant priced"


PROFILE_MUTS: list[tuple[str, Any]] = [
    ("name-mismatch", _prof_dict(_top_set("name", "other"))), ("name-missing", _prof_dict(_top_set("name", None))),
    ("name-traversal", _prof_dict(_top_set("name", "../loihi2"))),
    ("description-missing", _prof_dict(_top_set("description", None))),
    ("model-wrong", _prof_dict(_top_set("model", "foo"))), ("model-int", _prof_dict(_top_set("model", 3))),
    ("convention-missing", _prof_dict(_top_set("convention", None))),
    ("constants-missing", _prof_dict(_top_set("constants", None))), ("constants-empty", _prof_dict(_top_set("constants", {}))),
    ("constants-str", _prof_dict(_top_set("constants", "x"))), ("unknown-key", _prof_dict(_top_set("colour", "red"))),
    ("technology-int", _prof_dict(_top_set("technology", 45))), ("reference-str", _prof_dict(_top_set("reference", "x"))),
    ("value-str", _prof_dict(_const_set("value", "4.6"))), ("value-neg", _prof_dict(_const_set("value", -1.0))),
    ("value-nan", _prof_dict(_const_set("value", NAN))), ("value-inf", _prof_dict(_const_set("value", INF))),
    ("value-1e308", _prof_dict(_const_set("value", 1e308))), ("value-bool", _prof_dict(_const_set("value", True))),
    ("value-list", _prof_dict(_const_set("value", [1]))), ("value-bigint", _prof_dict(_const_set("value", 2**63 - 1))),
    ("unit-kJ", _prof_dict(_const_set("unit", "kJ"))), ("unit-empty", _prof_dict(_const_set("unit", ""))),
    ("unit-W", _prof_dict(_const_set("unit", "W"))), ("kind-foo", _prof_dict(_const_set("kind", "foo"))),
    ("measured-priced", _prof_dict(_prof_measured_priced)), ("applies-foo", _prof_dict(_const_set("applies_to", "foo"))),
    ("applies-other-model", _prof_dict(_const_set("applies_to", "macs"))),
    ("all-in-plus", _prof_dict(_prof_second_priced("all-in"))), ("source-missing", _prof_dict(_const_drop("source"))),
    ("note-missing", _prof_dict(_const_drop("note"))), ("const-unknown-key", _prof_dict(_const_set("colour", "red"))),
    ("const-table-str", _prof_dict(lambda d, r: (d["constants"].update(e_bad="x"), "constant e_bad = 'x'")[1])),
    ("many-refs", _prof_dict(_prof_many)),
    ("invalid", _bytes_edit(b"name = \n", "invalid TOML")), ("truncate", truncate_file), ("flip", flip_file),
    ("flip", flip_file), ("non-utf8", _bytes_edit(b'name = "\xff\xfe"\n', "non-UTF-8")), ("empty", _bytes_edit(b"", "empty")),
    ("bom", _text_edit(lambda t: "\ufeff" + t, "UTF-8 BOM")),
    ("huge", _text_edit(lambda t: t + "# " + "x" * (80 * 2**20) + "\n", "80 MiB comment")),
    ("duplicate", _text_edit(lambda t: t + '\nname = "x"\n', "duplicate key")),
]


def _profile_path_case(kind: str) -> Callable[[CaseEnv], Command]:
    def make(env: CaseEnv) -> Command:
        if kind == "directory":
            env.path("prof/loihi2.toml").mkdir(parents=True)
        elif kind == "json":
            env.path("prof").mkdir()
            env.path("prof/loihi2.toml").write_text(json.dumps({"name": "loihi2"}))
        elif kind == "fifo":
            env.path("prof").mkdir()
            os.mkfifo(env.path("prof/loihi2.toml"))
        arg = "prof/missing.toml" if kind == "missing" else "prof/loihi2.toml"
        return Command(["profiles", "show", arg], f"profile path: {kind}", None, "stdout")
    return make


def profile_cases(add: Callable) -> None:
    for name, consumer in (("loihi2", "report"), ("cmos45-fp32", "show")):
        add("profile", f"pristine-{consumer}", lambda env, n=name, c=consumer: _profile_command(env, n, c, None))
    for i, (label, fn) in enumerate(PROFILE_MUTS):
        name = ("loihi2", "cmos45-fp32")[i % 2]
        consumer = ("report", "show")[(i // 2) % 2]
        add("profile", f"{consumer}-{label}", lambda env, n=name, c=consumer, f=fn: _profile_command(env, n, c, f))
    for kind in ("directory", "json", "fifo", "missing"):
        add("profile", f"path-{kind}", _profile_path_case(kind))


# --- simulation directories ---------------------------------------------------------------------------------

SIM_WRONG = [None, True, -1, 0, 2**63, 1e400, NAN, "", "x", [], {}, [1]]


def _sim_json(fn: Callable[[Any, random.Random, CaseEnv], str]):
    def m(env: CaseEnv) -> str:
        p = env.path("sim/simulation.json")
        s = json.loads(p.read_text())
        what = fn(s, env.rng, env)
        p.write_text(json.dumps(s["__whole__"] if isinstance(s, dict) and "__whole__" in s else s))
        return what
    return m


def _sim_set(key: str, value: Any):
    def fn(s, rng, env):
        s[key] = value
        return f"simulation.json {key} = {value!r}"
    return fn


def _sim_drop(s, rng, env):
    key = rng.choice(sorted(s))
    del s[key]
    return f"simulation.json: drop {key}"


def _sim_wrong(s, rng, env):
    key = rng.choice(["backend", "samples", "timesteps", "accuracy", "layers", "totals", "accuracy_per_timestep",
                      "steps_per_sample", "bundle"])
    value = rng.choice(SIM_WRONG)
    s[key] = value
    return f"simulation.json {key} = {value!r}"


def _sim_layer_wrong(s, rng, env):
    layer = rng.choice(s["layers"])
    key = rng.choice(sorted(layer))
    value = rng.choice(SIM_WRONG + [-5.0, 1e308])
    layer[key] = value
    return f"simulation.json layer {layer.get('name')} {key} = {value!r}"


def _sim_totals_wrong(s, rng, env):
    key = rng.choice(sorted(s["totals"]))
    value = rng.choice(SIM_WRONG)
    s["totals"][key] = value
    return f"simulation.json totals.{key} = {value!r}"


def _sim_many_layers(s, rng, env):
    s["layers"] = s["layers"] * 5000
    return f"simulation.json with {len(s['layers'])} layers"


def _sim_bundle(kind: str):
    def fn(s, rng, env):
        if kind == "decoy":
            s["bundle"] = str(env.base.decoy / "bundle")
        elif kind == "decoy-relative":
            s["bundle"] = os.path.relpath(env.base.decoy / "bundle", env.dir)
        elif kind == "missing":
            s["bundle"] = "nonexistent/bundle"
        elif kind == "file":
            s["bundle"] = "sim/simulation.json"
        elif kind == "absolute":
            s["bundle"] = str(env.dir / "bundle")
        elif kind == "stale":
            s["bundle_manifest_sha256"] = "0" * 64
        elif kind == "net-decoy":
            s["net"] = str(env.base.decoy / "secret.bin")
            s["net_sha256"] = "0" * 64
        elif kind == "dev":
            s["bundle"] = "/dev/zero"
        else:
            s["bundle"] = {"int": 5, "null": None, "empty": "", "list": ["x"]}[kind]
        return f"simulation.json bundle: {kind} ({s.get('bundle')!r})"
    return fn


def _sim_text(data: bytes, label: str):
    def m(env: CaseEnv) -> str:
        env.path("sim/simulation.json").write_bytes(data)
        return label
    return m


def _sim_file(fn: Callable[[Path, random.Random], str]):
    return lambda env: fn(env.path("sim/simulation.json"), env.rng)


def _sim_layout(kind: str):
    def m(env: CaseEnv) -> str:
        p = env.path("sim/simulation.json")
        p.unlink()
        if kind == "directory":
            p.mkdir()
        elif kind == "symlink-decoy":
            os.symlink(env.base.decoy / "secret.bin", p)
        return f"simulation.json: {kind}"
    return m


SIM_MUTS: list[tuple[str, Any]] = [
    ("truncate", _sim_file(truncate_file)), ("truncate", _sim_file(truncate_file)), ("truncate", _sim_file(truncate_file)),
    ("flip", _sim_file(flip_file)), ("flip", _sim_file(flip_file)), ("flip", _sim_file(flip_file)),
    ("non-utf8", _sim_text(b'{"backend": "\xff\xfe"}', "non-UTF-8")), ("empty", _sim_text(b"", "empty")),
    ("deep", _sim_text(b"[" * 100000 + b"]" * 100000, "JSON nested 100000 deep")),
    ("big-number", _sim_text(b'{"samples": 1' + b"0" * 5000 + b"}", "a 5000-digit integer")),
    ("array", _sim_text(b"[1, 2]", "a JSON array")),
    ("drop", _sim_json(_sim_drop)), ("drop", _sim_json(_sim_drop)), ("drop", _sim_json(_sim_drop)),
    ("wrong", _sim_json(_sim_wrong)), ("wrong", _sim_json(_sim_wrong)), ("wrong", _sim_json(_sim_wrong)),
    ("wrong", _sim_json(_sim_wrong)), ("wrong", _sim_json(_sim_wrong)),
    ("layer-wrong", _sim_json(_sim_layer_wrong)), ("layer-wrong", _sim_json(_sim_layer_wrong)),
    ("layer-wrong", _sim_json(_sim_layer_wrong)), ("layer-wrong", _sim_json(_sim_layer_wrong)),
    ("totals-wrong", _sim_json(_sim_totals_wrong)), ("totals-wrong", _sim_json(_sim_totals_wrong)),
    ("samples-0", _sim_json(_sim_set("samples", 0))), ("samples-neg", _sim_json(_sim_set("samples", -1))),
    ("samples-huge", _sim_json(_sim_set("samples", 2**63))), ("timesteps-0", _sim_json(_sim_set("timesteps", 0))),
    ("timesteps-1e9", _sim_json(_sim_set("timesteps", 10**9))), ("accuracy-2", _sim_json(_sim_set("accuracy", 2.0))),
    ("accuracy-nan", _sim_json(_sim_set("accuracy", NAN))), ("layers-empty", _sim_json(_sim_set("layers", []))),
    ("many-layers", _sim_json(_sim_many_layers)),
    ("bundle-decoy", _sim_json(_sim_bundle("decoy"))), ("bundle-decoy-relative", _sim_json(_sim_bundle("decoy-relative"))),
    ("bundle-missing", _sim_json(_sim_bundle("missing"))), ("bundle-file", _sim_json(_sim_bundle("file"))),
    ("bundle-absolute", _sim_json(_sim_bundle("absolute"))), ("bundle-stale", _sim_json(_sim_bundle("stale"))),
    ("net-decoy", _sim_json(_sim_bundle("net-decoy"))), ("bundle-dev", _sim_json(_sim_bundle("dev"))),
    ("bundle-int", _sim_json(_sim_bundle("int"))), ("bundle-null", _sim_json(_sim_bundle("null"))),
    ("bundle-empty", _sim_json(_sim_bundle("empty"))), ("bundle-list", _sim_json(_sim_bundle("list"))),
    ("directory", _sim_layout("directory")), ("missing", _sim_layout("missing")),
    ("symlink-decoy", _sim_layout("symlink-decoy")),
]


def _sim_command(env: CaseEnv, mutate, table: str = "models") -> Command:
    env.copy(BUNDLE)
    env.copy(SIM)
    what = "unchanged" if mutate is None else mutate(env)
    argv = ["report", "sim", "--out", "out"] + (["--table", "methods"] if table == "methods" else [])
    return Command(argv, what, "out", "methods" if table == "methods" else "report", references=_sim_references(env))


def _sim_references(env: CaseEnv) -> tuple[str, ...]:
    """What the case's simulation.json names: its bundle's manifest.json, and the summary.json of the
    run that manifest names as its source."""
    refs: list[str] = []
    try:
        bundle = json.loads((env.path(SIM) / "simulation.json").read_text()).get("bundle")
    except (OSError, ValueError, AttributeError, RecursionError):
        return ()
    if not isinstance(bundle, str) or not bundle:
        return ()
    manifest = Path(env.dir, bundle) / "manifest.json"
    refs.append(os.path.realpath(manifest))
    try:
        source = json.loads(manifest.read_text()).get("source")
        if isinstance(source, str):
            refs.append(os.path.realpath(Path(source).parent / "summary.json"))
    except (OSError, ValueError, AttributeError, RecursionError):
        pass
    return tuple(refs)


def simdir_cases(add: Callable) -> None:
    add("simdir", "pristine", lambda env: _sim_command(env, None))
    add("simdir", "pristine-methods", lambda env: _sim_command(env, None, "methods"))
    for i, (label, fn) in enumerate(SIM_MUTS):
        table = "methods" if i % 7 == 3 else "models"
        add("simdir", label + ("-methods" if table == "methods" else ""), lambda env, f=fn, t=table: _sim_command(env, f, t))


# --- bundles (the mutations of tests/test_fuzz_bundle.py) ---------------------------------------------------------

def _bundle_mutations() -> list[tuple[str, str, Callable]]:
    from tests import test_fuzz_bundle as fb

    out: list[tuple[str, str, Callable]] = []
    for name in fb.FILES:
        out += [("truncate", name, fb.truncate(name))] * 2 + [("flip", name, fb.flip(name))] * 2
        out.append(("delete", name, fb.delete(name)))
    out += [("manifest_drop", "manifest.json", fb.manifest_drop)] * 4
    out += [("manifest_wrong", "manifest.json", fb.manifest_wrong)] * 6
    out += [("manifest_edit", "manifest.json", fb.manifest_edit(i)) for i in range(0, len(fb.MANIFEST_EDITS), 2)]
    out += [("manifest_layer", "manifest.json", fb.manifest_layer_edit)] * 3
    for op, n in ((fb.h5_del_attr, 2), (fb.h5_json_attr, 3), (fb.h5_raw_attr, 2), (fb.h5_int_attr, 3),
                  (fb.h5_del_dataset, 2), (fb.h5_del_group, 1), (fb.h5_rename_group, 1), (fb.h5_reshape, 3),
                  (fb.h5_dtype, 2), (fb.h5_values, 3)):
        out += [(op.__name__, "deploy.h5", fb._h5("deploy.h5", op))] * n
    out += [("netx_set", "network.net", fb._h5("network.net", op)) for op in fb.NETX_OPS]
    out += [("netx_neuron", "network.net", fb._h5("network.net", fb.netx_neuron))] * 2
    out += [("netx_drop", "network.net", fb._h5("network.net", fb.netx_drop))] * 2
    out += [("h5_values", "network.nir", fb._h5("network.nir", fb.h5_values))] * 2
    out += [("h5_reshape", "network.nir", fb._h5("network.nir", fb.h5_reshape))] * 2
    return out


def _bundle_command(env: CaseEnv, name: str | None, fn: Callable | None, consumer: str) -> Command:
    env.copy(BUNDLE)
    what = "unchanged" if fn is None else fn(env.path(BUNDLE), env.rng)
    if consumer == "inspect":
        return Command(["inspect", "bundle"], what, None, "stdout")
    if consumer == "simulate":
        return Command(["simulate", "bundle", "--samples", "4", "--device", "cpu", "--out", "out"], what, "out", "simulate")
    if consumer == "simulate-net":
        env.copy(NET_INPUTS, "in.npz")
        return Command(["simulate", "bundle/network.net", "--inputs", "in.npz", "--device", "cpu", "--out", "out"], what,
                       "out", "simulate")
    return Command(["export", "bundle/network.nir", "--target", "nir", "--out", "out"], what, "out", "export-nir")


def bundle_cases(add: Callable) -> None:
    for consumer in ("inspect", "simulate", "simulate-net", "export-nir"):
        add("bundle", f"pristine-{consumer}", lambda env, c=consumer: _bundle_command(env, None, None, c))
    for i, (label, name, fn) in enumerate(_bundle_mutations()):
        consumer = {"network.net": "simulate-net", "network.nir": "export-nir"}.get(name) or ("inspect", "simulate")[i % 2]
        add("bundle", f"{consumer}-{label}-{name.split('.')[0]}",
            lambda env, n=name, f=fn, c=consumer: _bundle_command(env, n, f, c))


# --- --out paths ------------------------------------------------------------------------------------------

OUT_COMMANDS = ("train", "export-loihi2", "export-nir", "export-onnx", "export-nir-source", "simulate", "report", "demo")
OUT_VARIANTS = ("nonempty", "symlink-dir", "symlink-empty-dir", "dangling", "file", "overwrite")


def _out_argv(env: CaseEnv, command: str) -> tuple[list[str], str]:
    if command == "train":
        return ["train", "--model", "ann_digits", *TINY], "train"
    if command in ("export-loihi2", "export-nir"):
        env.copy(SNN_CKPT, "model.pt")
        target = command.split("-")[1]
        return ["export", "model.pt", "--target", target] + (["--calib", "16"] if target == "loihi2" else []), command
    if command == "export-onnx":
        env.copy(ANN_CKPT, "model.pt")
        return ["export", "model.pt", "--target", "onnx"], command
    if command == "export-nir-source":
        env.copy(nir_file("neurodistill"), "m.nir")
        return ["export", "m.nir", "--target", "loihi2", "--calib", "16"], "export-loihi2"
    if command == "simulate":
        env.copy(BUNDLE)
        return ["simulate", "bundle", "--samples", "4", "--device", "cpu"], "simulate"
    if command == "report":
        env.copy(BUNDLE)
        env.copy(SIM)
        return ["report", "sim"], "report"
    return ["demo"], "demo"


def _out_command(env: CaseEnv, command: str, variant: str) -> Command:
    argv, check = _out_argv(env, command)
    user: tuple[str, ...] = ()
    if variant == "nonempty":
        env.path("out").mkdir()
        env.path(f"out/{USER}").write_text("the user's notes\n")
        user = (f"out/{USER}",)
    elif variant == "symlink-dir":
        env.path("real").mkdir()
        env.path(f"real/{USER}").write_text("the user's notes\n")
        os.symlink("real", env.path("out"))
        user = (f"real/{USER}",)
    elif variant == "symlink-empty-dir":  # written into the directory the link names, or refused
        env.path("real").mkdir()
        os.symlink("real", env.path("out"))
    elif variant == "dangling":
        os.symlink("missing/target", env.path("out"))
    elif variant == "file":
        env.path("out").write_text("a user's file, not a directory\n")
        user = ("out",)
    else:  # its own earlier output, and a user's file beside it
        if command == "demo":
            for sub in ("teacher", "student", "loihi2", "simulation", "report"):
                env.path(f"out/{sub}").mkdir(parents=True)
        else:
            env.copy(PRIOR[command], "out")
        env.path(f"out/{USER}").write_text("the user's notes\n")
        user = (f"out/{USER}",)
        if command != "demo" or _has_option("demo", "--overwrite"):
            argv = argv + ["--overwrite"]
    return Command(argv + ["--out", "out"], f"--out {variant}", "out", check, user)


def _has_option(command: str, flag: str) -> bool:
    from neurodistill.cli import main

    return any(flag in p.opts for p in main.commands[command].params)


def out_cases(add: Callable) -> None:
    for command in OUT_COMMANDS:
        for variant in OUT_VARIANTS:
            add("out", f"{command}-{variant}", lambda env, c=command, v=variant: _out_command(env, c, v),
                seconds=300 if command == "demo" else None)


# --- security ----------------------------------------------------------------------------------------------

H5_TARGETS = {  # file kind: (copy, file, dataset to replace, group to link)
    "deploy": (BUNDLE, "bundle/deploy.h5", "synapses/1/weight_int", "synapses/1"),
    "net": (BUNDLE, "bundle/network.net", "layer/1/weight", "layer/1"),
    "nir": (nir_file("neurodistill"), "m.nir", "node/nodes/body_0/weight", "node/nodes/body_0"),
}


def _h5_security(env: CaseEnv, kind: str, mech: str, rel: bool) -> Command:
    src, file, ds, group = H5_TARGETS[kind]
    env.copy(src, "m.nir" if kind == "nir" else src)
    p = env.path(file)
    decoy_h5 = env.base.decoy / {"deploy": "deploy.h5", "net": "network.net", "nir": "network.nir"}[kind]
    secret = env.base.decoy / "secret.bin"
    with h5py.File(p, "r+") as f:
        if ds not in f:  # the tiny bundle's layer numbering: the first dataset of that name
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and n.endswith(ds.rsplit("/", 1)[1])
                         and o.size > 1 else None)
            ds = names[0]
            group = ds.rsplit("/", 1)[0]
        if mech == "extlink":
            target = os.path.relpath(decoy_h5, p.parent) if rel else str(decoy_h5)
            del f[group]
            f[group] = h5py.ExternalLink(target, "/" + group)
            what = f"{group} -> external link {target}:/{group}"
        elif mech == "external":
            a = f[ds]
            shape, dtype = a.shape, a.dtype
            nbytes = int(np.prod(shape)) * dtype.itemsize
            target = os.path.relpath(secret, env.dir) if rel else str(secret)
            del f[ds]
            f.create_dataset(ds, shape=shape, dtype=dtype, external=[(target, 64, nbytes)])
            what = f"{ds} stored externally in {target}"
        else:
            a = f[ds]
            shape, dtype = a.shape, a.dtype
            target = os.path.relpath(decoy_h5, p.parent) if rel else str(decoy_h5)
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            with h5py.File(decoy_h5, "r") as d:
                assert d[ds].shape == shape, (ds, d[ds].shape, shape)
            layout[...] = h5py.VirtualSource(target, ds, shape=shape)
            del f[ds]
            f.create_virtual_dataset(ds, layout, fillvalue=0)
            what = f"{ds} a virtual dataset of {target}:{ds}"
    if kind == "deploy":
        argv = ["simulate", "bundle", "--samples", "4", "--device", "cpu", "--out", "out"] if not rel else ["inspect", "bundle"]
        return Command(argv, what, "out" if not rel else None, "simulate" if not rel else "stdout")
    if kind == "net":
        env.copy(NET_INPUTS, "in.npz")
        return Command(["simulate", "bundle/network.net", "--inputs", "in.npz", "--device", "cpu", "--out", "out"], what,
                       "out", "simulate")
    target_cli = ["--target", "nir"] if not rel else ["--target", "loihi2", "--calib", "16"]
    return Command(["export", "m.nir", *target_cli, "--out", "out"], what, "out",
                   "export-nir" if not rel else "export-loihi2")


def _pickle_case(entry: str, payload: str, placement: str) -> Callable[[CaseEnv], Command]:
    def mutate(p: Path, rng: random.Random) -> str:
        obj = SystemPayload() if payload == "os.system" else GadgetPayload()
        if placement == "whole":
            _save_ckpt(p, obj)
        else:
            ck = _load_ckpt(p)
            ck["state_dict"]["fuzz"] = obj
            _save_ckpt(p, ck)
        return f"pickle: {payload} payload ({placement})"
    return _ckpt_case(entry, mutate)


YAML_TAGS = [
    ("apply-system", f'model: !!python/object/apply:os.system ["true {PAYLOAD}"]\n'),
    ("apply-system-doc", f'!!python/object/apply:os.system ["true {PAYLOAD}"]\n'),
    ("new-popen", f'model: !!python/object/new:subprocess.Popen [["true", "{PAYLOAD}"]]\n'),
    ("name-system", "seed: !!python/name:os.system\n"),
    ("apply-gadget", f'model: !!python/object/apply:tests.fuzz_inputs.cases.gadget ["{PAYLOAD}"]\n'),
]


def _yaml_tag_case(text: str, resume: bool) -> Callable[[CaseEnv], Command]:
    def make(env: CaseEnv) -> Command:
        if resume:
            env.copy(ANN_RUN, "run")
            p = env.path("run/config.yaml")
            p.write_text(p.read_text() + "\n" + text.replace("model:", "method:"))
            return Command(["train", "--resume", "--out", "run", "--epochs", "2"], "run/config.yaml: YAML python tag",
                           "run", "train")
        return _cfg_command(env, _yaml(CFG_BASE).replace("model: ann_digits\n", "") + text, ".yaml", "YAML python tag")
    return make


def security_cases(add: Callable) -> None:
    for kind in H5_TARGETS:
        for mech in ("extlink", "external", "vds"):
            for rel in (False, True):
                add("security", f"{kind}-{mech}-{'rel' if rel else 'abs'}",
                    lambda env, k=kind, m=mech, r=rel: _h5_security(env, k, m, r), runner="subprocess", security=True)
    for entry in ("export-nir", "teacher", "init", "resume"):
        for payload in ("os.system", "gadget"):
            add("security", f"pickle-{entry}-{payload}", _pickle_case(entry, payload, "nested"), security=True)
    add("security", "pickle-export-loihi2-os.system-whole", _pickle_case("export-loihi2", "os.system", "whole"),
        security=True)
    add("security", "pickle-export-onnx-gadget-whole", _pickle_case("export-onnx", "gadget", "whole"), security=True)
    for label, text in YAML_TAGS:
        add("security", f"yaml-{label}", _yaml_tag_case(text, False), security=True)
    add("security", "yaml-resume-apply-system", _yaml_tag_case(YAML_TAGS[0][1], True), security=True)


# --- the whole set ----------------------------------------------------------------------------------------------

KINDS = ("checkpoint", "config", "nir", "npz", "profile", "simdir", "bundle", "out", "security")
_BUILDERS = {"checkpoint": checkpoint_cases, "config": config_cases, "nir": nir_cases, "npz": npz_cases,
             "profile": profile_cases, "simdir": simdir_cases, "bundle": bundle_cases, "out": out_cases,
             "security": security_cases}


def all_cases() -> list[Case]:
    """Every case, numbered in a fixed order (the number seeds the case's rng)."""
    out: list[Case] = []

    def add(kind: str, name: str, make: Callable[[CaseEnv], Command], runner: str = "inproc",
            security: bool = False, seconds: float | None = None) -> None:
        out.append(Case(len(out), kind, name, make, runner, security, seconds))

    for kind in KINDS:
        _BUILDERS[kind](add)
    return out


def subset(cases: list[Case], per_kind: int = 10, subprocess_per_kind: int = 1, security_subprocess: int = 3) -> list[Case]:
    """A short deterministic subset spread over every kind: each kind's pristine case(s), then evenly spaced
    in-process cases, and a few subprocess cases (the demo's, minutes long, left out)."""
    picked: list[Case] = []
    for kind in KINDS:
        ks = [c for c in cases if c.kind == kind and (c.seconds or 0) <= 120]
        pristine = [c for c in ks if c.name.startswith("pristine")][:2]
        inproc = [c for c in ks if c.runner == "inproc" and c not in pristine]
        sub = [c for c in ks if c.runner == "subprocess"]
        k = max(0, per_kind - len(pristine))
        m = security_subprocess if kind == "security" else subprocess_per_kind
        if kind == "security":
            k = per_kind - m
        chosen = pristine + _spread(inproc, k - (m if kind != "security" and sub else 0)) + _spread(sub, m)
        picked += chosen
    return sorted(picked, key=lambda c: c.index)


def _spread(xs: list, k: int) -> list:
    if k <= 0 or not xs:
        return []
    if k >= len(xs):
        return list(xs)
    return [xs[round(i * (len(xs) - 1) / (k - 1))] for i in range(k)] if k > 1 else [xs[0]]
