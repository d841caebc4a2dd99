"""Files that point outside themselves, and outputs that must never destroy a user's files.

HDF5 can make libhdf5 open other files (external links, external storage, virtual datasets):
each is planted, pointing at a decoy outside the input directory, in each HDF5 kind the tool
reads (a bundle's deploy.h5, a netx .net, a .nir graph). The real CLI runs in a subprocess under
strace, which sees libhdf5's own opens (an audit hook would not): the command must refuse with
one line naming the object, and the decoy must never be opened.

The output rule (neurodistill.io.output) is checked through the CLI: a user's file in --out
survives every command, --overwrite included, and the demo never deletes a directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodistill.cli import main
from neurodistill.errors import UnsafeFileError
from neurodistill.io.output import MARKER, owned_dir

from .test_bad_input import assert_cli_error
from .test_cli_errors import assert_user_error
from .test_fuzz_bundle import make_tiny_bundle

STRACE = shutil.which("strace")
SECRET = b"SECRET-0123456789abcdef" * 8


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("safety") / "bundle")


@pytest.fixture()
def decoys(tmp_path) -> dict[str, Path]:
    """An HDF5 file and a raw file outside every input directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    raw = outside / "secret.bin"
    raw.write_bytes(SECRET)
    h5 = outside / "secret.h5"
    with h5py.File(h5, "w") as f:
        f["data"] = np.frombuffer(SECRET[:64], dtype=np.uint8).astype(np.float32)
    return {"raw": raw, "h5": h5}


def plant(path: Path, dataset: str, kind: str, decoys: dict[str, Path]) -> str:
    """Replace `dataset` of the HDF5 file at `path` by one whose data lives in a decoy file (or add an
    external link beside it). Returns the planted object's path."""
    with h5py.File(path, "r+") as f:
        old = f[dataset]
        shape, dtype = old.shape or (1,), old.dtype if old.dtype.kind in "iuf" else np.dtype(np.float32)
        parent, name = dataset.rsplit("/", 1)
        if kind == "external_link":
            f[f"{parent}/linked"] = h5py.ExternalLink(str(decoys["h5"]), "/data")
            return f"{parent}/linked"
        del f[dataset]
        if kind == "external_storage":
            nbytes = int(np.prod(shape)) * dtype.itemsize
            f.create_dataset(dataset, shape=shape, dtype=dtype, external=[(str(decoys["raw"]), 0, nbytes)])
        else:  # a virtual dataset mapping the decoy's /data
            layout = h5py.VirtualLayout(shape=(64,), dtype=np.float32)
            layout[:] = h5py.VirtualSource(str(decoys["h5"]), "data", shape=(64,))
            f.create_virtual_dataset(dataset, layout)
    return dataset


def run_traced(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The CLI in a subprocess under strace: (result, every path it opened successfully)."""
    log = tmp_path / "strace.log"
    cmd = [STRACE, "-f", "-qq", "-e", "trace=open,openat,openat2,creat", "-e", "status=successful", "-o", str(log),
           sys.executable, "-m", "neurodistill.cli", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    opened = []
    for line in log.read_text().splitlines():
        if '"' in line:
            opened.append(line.split('"')[1])
    return res, opened


def _need_strace() -> None:
    if STRACE is None:
        if os.environ.get("CI"):
            pytest.fail("strace is missing: .ci/run installs it (apt-get install strace)")
        pytest.skip("strace is not installed here")


# (HDF5 kind, how to build the command, a dataset to plant in)
KINDS = {
    "deploy.h5": ("populations/0/float_bias",
                  lambda b, out: ["simulate", str(b), "--samples", "2", "--out", str(out)]),
    "network.net": ("layer/1/weight",
                    lambda b, out: ["simulate", str(b / "network.net"), "--inputs", str(b / "in.npz"), "--out", str(out)]),
    "network.nir": ("node/nodes/0_conv/weight",
                    lambda b, out: ["export", str(b / "network.nir"), "--target", "nir", "--out", str(out)]),
}


@pytest.mark.parametrize("kind", ["external_link", "external_storage", "virtual"])
@pytest.mark.parametrize("file", list(KINDS))
def test_hdf5_pointing_outside_is_refused_and_never_opened(bundle, decoys, tmp_path, file, kind):
    _need_strace()
    b = tmp_path / "bundle"
    shutil.copytree(bundle, b)
    np.savez(b / "in.npz", bias=np.zeros((1, 4, 8, 8), np.int64), steps=np.array(3))  # refused before it is read
    dataset, command = KINDS[file]
    if file == "network.nir":
        with h5py.File(b / file, "r") as f:
            dataset = next(f"node/nodes/{n}/weight" for n in f["node/nodes"] if "weight" in f["node/nodes"][n])
    planted = plant(b / file, dataset, kind, decoys)
    out = tmp_path / "out"
    res, opened = run_traced(command(b, out), tmp_path)
    line = assert_cli_error(res, file, planted.rsplit("/", 1)[0], "refused")
    assert {"external_link": "external link", "external_storage": "external file",
            "virtual": "virtual dataset"}[kind] in line, line
    assert SECRET.decode()[:20] not in res.stderr + res.stdout
    outside = str(decoys["h5"].parent)
    touched = [p for p in opened if p.startswith(outside) or p.endswith(("secret.h5", "secret.bin"))]
    assert not touched, touched
    assert any(p.endswith(file) for p in opened), "strace saw the input opened (the check itself works)"
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_the_strace_check_sees_libhdf5_follow_a_link(decoys, tmp_path):
    """The oracle can fail: plain h5py reading a planted external link is seen opening the decoy."""
    _need_strace()
    f = tmp_path / "plain.h5"
    with h5py.File(f, "w") as h:
        h["x"] = np.zeros(3)
        h["linked"] = h5py.ExternalLink(str(decoys["h5"]), "/data")
    log = tmp_path / "s.log"
    subprocess.run([STRACE, "-f", "-qq", "-e", "trace=openat", "-o", str(log), sys.executable, "-c",
                    f"import h5py; h5py.File({str(f)!r})['linked'][()]"], check=True, timeout=120)
    assert str(decoys["h5"]) in log.read_text()


def test_in_process_readers_refuse_each_kind(bundle, decoys, tmp_path):
    from neurodistill.formats.deploy_h5 import read_graph
    from neurodistill.formats.netx.reader import read_netx
    from neurodistill.formats.nir.file import read_nir_file

    readers = {"deploy.h5": read_graph, "network.net": read_netx, "network.nir": read_nir_file}
    for file, (dataset, _) in KINDS.items():
        for kind in ("external_link", "external_storage", "virtual"):
            b = tmp_path / f"{file}-{kind}"
            shutil.copytree(bundle, b)
            if file == "network.nir":
                with h5py.File(b / file, "r") as f:
                    dataset = next(f"node/nodes/{n}/weight" for n in f["node/nodes"] if "weight" in f["node/nodes"][n])
            plant(b / file, dataset, kind, decoys)
            with pytest.raises(UnsafeFileError, match="refused"):
                readers[file](b / file)


def test_unknown_filter_is_refused_before_a_plugin_is_searched(bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    with h5py.File(b / "deploy.h5", "r+") as f:
        data = f["populations/0/float_bias"][()]
        del f["populations/0/float_bias"]
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(data.shape)
        dcpl.set_filter(32004, h5py.h5z.FLAG_OPTIONAL, ())  # LZ4's registered id: not built into libhdf5
        space = h5py.h5s.create_simple(data.shape)
        h5py.h5d.create(f["populations/0"].id, b"float_bias", h5py.h5t.NATIVE_DOUBLE, space, dcpl=dcpl)
    assert_user_error(invoke("simulate", b, "--samples", "2", "--out", tmp_path / "o"), "populations/0/float_bias",
                      "filter 32004", "plugin")
    assert not (tmp_path / "o").exists()


# --- the output rule -------------------------------------------------------------------------------

def test_demo_never_deletes_a_users_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert_user_error(invoke("demo", "--out", out), str(out), "is not empty", "thesis.tex")
    assert (out / "thesis.tex").read_text() == "years of work"
    link = tmp_path / "link"
    link.symlink_to(out)
    assert_user_error(invoke("demo", "--out", link), "is not empty")
    assert (out / "thesis.tex").read_text() == "years of work"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert_user_error(invoke("demo", "--out", dangling), "dangling symlink")
    assert not (tmp_path / "nowhere").exists()


def test_a_demo_directory_is_replaced_but_a_users_file_in_it_stays(tmp_path):
    """The demo replaces its own earlier files (the marker lists them), never anything else, and a
    failing run removes only what it made."""
    out = tmp_path / "demo"
    with owned_dir(out, "demo", "the demo", replace_own="demo") as d:
        (d / "teacher").mkdir()
        (d / "teacher" / "best.pt").write_text("old")
    marker = json.loads((out / MARKER).read_text())
    assert marker["command"] == "demo" and marker["files"] == ["teacher/best.pt"]
    (out / "teacher" / "my-notes.txt").write_text("mine")
    (out / "plot.png").write_text("mine too")
    with pytest.raises(RuntimeError):
        with owned_dir(out, "demo", "the demo", replace_own="demo") as d:
            assert not (d / "teacher" / "best.pt").exists()  # the old demo's file is gone
            (d / "student").mkdir()
            (d / "student" / "last.pt").write_text("half")
            raise RuntimeError("a stage failed")
    assert not (out / "student").exists()
    assert (out / "teacher" / "my-notes.txt").read_text() == "mine" and (out / "plot.png").read_text() == "mine too"
    # a marker that lists paths outside the directory is not followed
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / MARKER).write_text(json.dumps({"command": "demo", "files": ["../victim.txt", str(victim), "plot.png/.."]}))
    with owned_dir(out, "demo", "the demo", replace_own="demo"):
        pass
    assert victim.read_text() == "keep" and (out / "plot.png").exists()


@pytest.fixture(scope="module")
def ann_ckpt(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ann") / "run"
    res = invoke("train", "--model", "ann_digits", "--epochs", "1", "--limit-train-batches", "2", "--val-split", "0",
                 "--device", "cpu", "--out", run)
    assert res.exit_code == 0, res.output
    return run / "best.pt"


def test_no_overwrite_deletes_a_file_it_did_not_write(bundle, ann_ckpt, tmp_path):
    """Every command with --overwrite, over its own earlier output with a user's file beside it."""
    def user_file(d: Path) -> Path:
        d.mkdir(parents=True, exist_ok=True)
        f = d / "keep-me.txt"
        f.write_text("the user's")
        return f

    sim = tmp_path / "sim"
    cases = {
        "export": ["export", ann_ckpt, "--target", "onnx", "--out", tmp_path / "onnx"],
        "simulate": ["simulate", bundle, "--samples", "2", "--out", sim],
        "report": ["report", sim, "--profile", "loihi2", "--out", tmp_path / "rep"],
        "train": ["train", "--model", "ann_digits", "--epochs", "1", "--limit-train-batches", "1", "--val-split", "0",
                  "--device", "cpu", "--out", tmp_path / "run"],
    }
    for name, args in cases.items():
        out = Path(args[-1])
        assert invoke(*args).exit_code == 0, name
        keep = user_file(out)
        res = invoke(*args)
        assert res.exit_code == 2 and "--overwrite" in res.stderr, (name, res.output)
        res = invoke(*args, "--overwrite")
        assert res.exit_code == 0, (name, res.output)
        assert keep.read_text() == "the user's", name
        # and a user's file in place of nothing the command writes is never touched by the marker
        assert all((out / f).exists() for f in json.loads((out / MARKER).read_text())["files"]), name


@pytest.mark.parametrize("command", ["train", "export", "simulate", "report"])
def test_out_as_symlink_file_or_dangling_link(bundle, ann_ckpt, tmp_path, command):
    sim = tmp_path / "sim0"
    if command == "report":
        assert invoke("simulate", bundle, "--samples", "2", "--out", sim).exit_code == 0
    args = {"train": ["train", "--model", "ann_digits", "--epochs", "1", "--limit-train-batches", "1", "--val-split",
                      "0", "--device", "cpu"],
            "export": ["export", ann_ckpt, "--target", "onnx"],
            "simulate": ["simulate", bundle, "--samples", "2"],
            "report": ["report", sim, "--profile", "loihi2"]}[command]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert_user_error(invoke(*args, "--out", dangling), "dangling symlink")
    assert not (tmp_path / "nowhere").exists() and dangling.is_symlink()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert_user_error(invoke(*args, "--out", a_file), "not a directory")
    assert a_file.read_text() == "x"
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    res = invoke(*args, "--out", link)
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and (real / MARKER).is_file()  # written through the link, the link kept


def test_train_creates_nothing_when_an_input_is_bad(tmp_path, ann_ckpt):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    for extra in (["--method", "kd", "--teacher", bad], ["--init", bad], ["--method", "kd", "--teacher", ann_ckpt,
                                                                             "--data-dir", tmp_path / "none",
                                                                             "--dataset", "cifar10"]):
        out = tmp_path / "deep" / "run"
        res = invoke("train", "--model", "snn_digits", "--epochs", "1", "--device", "cpu", *extra, "--out", out)
        assert res.exit_code == 2, res.output
        assert not (tmp_path / "deep").exists(), extra


def test_refused_pickle_global_names_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "neurodistill-checkpoint", "x": Payload()}, evil)
    for args in (["export", evil, "--out", tmp_path / "o"], ["train", "--method", "kd", "--teacher", evil, "--out",
                                                            tmp_path / "r"]):
        line = assert_user_error(invoke(*args), str(evil), "system", "not a neurodistill checkpoint")
        assert "weights_only" not in line
