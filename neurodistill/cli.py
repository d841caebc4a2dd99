"""Command line: one click command per stage; each parses options and calls one stage function.

User errors (ours, typed in `errors.py`, and click's usage errors) print one line,
`error: ...`, and exit with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import ConfigError, NeurodistillError

# flag -> (config path, click type, help). Every default is None: only flags the user gives
# override the config file, which overrides the dataclass defaults.
TRAIN_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--model", "model", str, "registered model; 'neurodistill models' lists them [snn_digits]"),
    ("--dataset", "dataset", str, "digits | synthetic | cifar10 | cifar100 | imagenet | cifar10-dvs | dvs-gesture [digits]"),
    ("--data-dir", "data_dir", click.Path(file_okay=False), "directory holding the dataset (never downloaded)"),
    ("--method", "method", str, "none | tet | kd | tser | tssd | esd [none]"),
    ("--backprop", "backprop", click.Choice(["bptt", "rate"]),
     "bptt: through all T steps; rate: rate-based backprop, memory ~constant in T (spiking models; methods none, kd, esd) "
     "[bptt; esd: rate]"),
    ("--teacher", "teacher", click.Path(dir_okay=False), "ANN teacher checkpoint (kd, tser)"),
    ("--init", "init", click.Path(dir_okay=False), "start from this checkpoint's weights (fine-tuning) [random init]"),
    ("--deploy", "deploy", click.Choice(["loihi2"]),
     "quantization-aware training: the forward pass is the exported Loihi 2 fixed-point network [off]"),
    ("--weight-bits", "qat.weight_bits", int, "--deploy loihi2: weight bits, 2..8 (export with the same) [8]"),
    ("--qat-calib", "qat.calib", int, "--deploy: training samples that set the encoding scale (export's --calib) [256]"),
    ("--timesteps", "timesteps", int, "time steps T for spiking models [4]"),
    ("--epochs", "epochs", int, "epochs [30]"),
    ("--batch-size", "batch_size", int, "batch size per process [64]"),
    ("--optimizer", "optimizer", click.Choice(["sgd", "adamw"]), "optimizer [sgd]"),
    ("--lr", "lr", float, "peak learning rate [0.1]"),
    ("--momentum", "momentum", float, "SGD momentum [0.9]"),
    ("--weight-decay", "weight_decay", float, "weight decay on conv/linear weights [5e-4]"),
    ("--schedule", "schedule", click.Choice(["cosine", "constant"]), "learning-rate schedule [cosine]"),
    ("--amp/--no-amp", "amp", bool, "mixed precision on CUDA [on]"),
    ("--seed", "seed", int, "random seed [0]"),
    ("--val-split", "val_split", float,
     "fraction of the training split held out to select best.pt [0.1]; 0 selects on the test split, as the "
     "seeds' papers do (not a clean protocol: say so if you publish it)"),
    ("--device", "device", click.Choice(["auto", "cpu", "cuda"]), "device [auto]"),
    ("--backend", "backend", click.Choice(["auto", "torch", "cuda", "triton", "cupy"]),
     "spikingjelly neuron kernels on CUDA; cupy is an alias of cuda in spikingjelly 2.x [auto]"),
    ("--workers", "workers", int, "DataLoader worker processes [0]"),
    ("--limit-train-batches", "limit_train_batches", int, "stop each epoch after N batches (smoke tests) [0 = all]"),
    ("--out", "out", click.Path(), "run directory [runs/train]"),
    ("--tensorboard/--no-tensorboard", "tensorboard", bool, "write TensorBoard events to OUT/tb [off]"),
    ("--neuron", "neuron.kind", click.Choice(["lif", "if"]), "neuron model [lif]"),
    ("--tau", "neuron.tau", float, "LIF membrane time constant [2.0]"),
    ("--decay-input/--no-decay-input", "neuron.decay_input", bool, "LIF input is divided by tau [on]"),
    ("--v-threshold", "neuron.v_threshold", float, "firing threshold [1.0]"),
    ("--reset", "neuron.reset", click.Choice(["hard", "soft"]), "hard: v -> v_reset (Loihi 2); soft: v -= threshold [hard]"),
    ("--v-reset", "neuron.v_reset", float, "hard reset value [0.0]"),
    ("--detach-reset/--no-detach-reset", "neuron.detach_reset", bool, "no gradient through the reset [on]"),
    ("--surrogate", "neuron.surrogate", click.Choice(["atan", "sigmoid", "piecewise_quadratic", "erf"]), "surrogate gradient [atan]"),
    ("--surrogate-alpha", "neuron.surrogate_alpha", float, "surrogate sharpness [spikingjelly's default]"),
    ("--alpha", "loss.alpha", float, "distillation weight; CE gets 1 - alpha [0.5]"),
    ("--kd-temperature", "loss.temperature", float, "softmax temperature tau of kd/tser [5.0]"),
    ("--lam", "loss.lam", float, "tser entropy weight lambda [0.01]"),
    ("--kl-tau-squared/--no-kl-tau-squared", "loss.kl_tau_squared", bool, "scale KL by tau^2 [on]"),
    ("--entropy-on-softened/--no-entropy-on-softened", "loss.entropy_on_softened", bool, "tser: entropy of softmax_tau [on]"),
    ("--separate-ce/--no-separate-ce", "loss.separate_ce", bool, "tser: CE on each step's output [on]"),
    ("--separate-kl/--no-separate-kl", "loss.separate_kl", bool, "tser: KL on each step's output [on]"),
    ("--tssd-alpha", "tssd.alpha", float, "tssd: weight of the temporal KL (T_t-step teacher -> T-step output) [1.0]"),
    ("--tssd-beta", "tssd.beta", float, "tssd: weight of the spatial KL (final output -> weak classifier) [0.3]"),
    ("--tssd-temperature", "tssd.temperature", float, "tssd: softmax temperature tau of both KLs [3.0]"),
    ("--teacher-timesteps", "tssd.teacher_timesteps", int, "tssd: steps T_t of the temporal teacher, > T [0 = 2T]"),
    ("--weak-attach", "tssd.attach", str, "tssd: weak classifier input: auto, stageN or a module path such as body.7 "
     "[auto = stage3; with fewer stages the next-to-last]"),
    ("--weak-head", "tssd.weak_head", click.Choice(["linear", "conv"]),
     "tssd: weak classifier: linear = avg pool + linear; conv = conv3x3-BN-ReLU, avg pool, linear [linear]"),
    ("--tssd-ce-teacher/--no-tssd-ce-teacher", "tssd.ce_teacher", bool, "tssd: CE of the T_t-step output in the loss [on]"),
    ("--tssd-ce-weak/--no-tssd-ce-weak", "tssd.ce_weak", bool, "tssd: CE of the weak classifier in the loss [on]"),
    ("--tssd-kl-tau-squared/--no-tssd-kl-tau-squared", "tssd.kl_tau_squared", bool, "tssd: scale both KLs by tau^2 [on]"),
    ("--teacher-bn-stats/--no-teacher-bn-stats", "tssd.teacher_bn_stats", bool,
     "tssd: the T_t pass also updates BatchNorm running statistics [off]"),
    ("--esd-alpha", "esd.alpha", float, "esd: CE weight of every exit [1.0]"),
    ("--esd-alpha-final", "esd.alpha_final", float, "esd: CE weight of the final exit [= --esd-alpha]"),
    ("--esd-beta", "esd.beta", float, "esd: weight of the distillation from the reliable teacher [0.3]"),
    ("--esd-temperature", "esd.temperature", float, "esd: softmax temperature tau (and the tau^2 factor) [3.0]"),
    ("--esd-distill-final/--no-esd-distill-final", "esd.distill_final", bool, "esd: distil the final exit too [on]"),
    ("--esd-stages", "esd.stages", str, "esd: comma-separated module paths of the stage outputs, the last = the final "
     "stage (no branch), e.g. body.2,body.5 [derived from the model]"),
    ("--augment/--no-augment", "data.augment", bool, "random crop + flip on the train split [on]"),
    ("--autoaugment/--no-autoaugment", "data.autoaugment", bool, "CIFAR AutoAugment policy [off]"),
    ("--cutout", "data.cutout", int, "Cutout side in pixels, 0 = off [0]"),
    ("--frames", "data.frames", int, "event datasets: frames per sample [16]"),
    ("--image-size", "data.image_size", int, "ImageNet crop size [224]"),
    ("--synthetic-shape", "data.synthetic_shape", str, "synthetic: sample shape, e.g. 3,32,32 [3,32,32]"),
    ("--synthetic-classes", "data.synthetic_classes", int, "synthetic: classes [10]"),
    ("--synthetic-size", "data.synthetic_size", int, "synthetic: train samples [256]"),
]


class CLI(click.Group):
    """A click group whose user errors are one line and exit status 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(2)
        except NeurodistillError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _nir_consumers() -> list[str]:
    from .formats.nir.consumers import names

    return names()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr, force=True)


def _show_progress() -> bool:
    # Bars on a terminal only: logs and CI get one line per epoch instead.
    return sys.stderr.isatty() and not os.environ.get("CI")


@click.group(cls=CLI, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="neurodistill")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def main(verbose: bool) -> None:
    """neurodistill: distil, export to Loihi 2, simulate and report spiking neural networks."""
    _setup_logging(verbose)
    from .progress import show

    show(_show_progress())


def _with_train_options(fn):
    for flag, dest, tp, help_ in reversed(TRAIN_OPTIONS):
        name = "opt_" + dest.replace(".", "__")
        if tp is bool:
            fn = click.option(flag, name, default=None, help=help_)(fn)
        else:
            fn = click.option(flag, name, type=tp, default=None, help=help_)(fn)
    return fn


def _overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Nested config overrides from the flags that were given."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if not key.startswith("opt_") or value is None:
            continue
        path = key[4:].split("__")
        if path[-1] == "synthetic_shape":
            value = _int_list("--synthetic-shape", value)
        elif path[-1] == "stages":
            value = _str_list("--esd-stages", value)
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return out


def _int_list(flag: str, text: str) -> list[int]:
    from .errors import ConfigError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a comma-separated list of integers (e.g. 3,32,32)") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{flag} {text!r}: every size must be >= 1")
    return values


def _str_list(flag: str, text: str) -> list[str]:
    from .errors import ConfigError

    values = [v.strip() for v in text.split(",")]
    if not text.strip() or any(not v for v in values):
        raise ConfigError(f"{flag} {text!r} is not a comma-separated list of module paths (e.g. body.2,body.5)")
    return values


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or TOML config; flags override it")
@click.option("--ablation", type=click.Choice(["kd", "ts_kl", "ts_ce", "ts_both", "ts_both_er"]),
              help="tser: one of TSER's Table 3 configurations (sets the separate_* switches and lam)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last.pt")
@click.option("--overwrite", is_flag=True, help="replace a run that already exists in --out")
@_with_train_options
def train(config_file: str | None, ablation: str | None, resume: bool, overwrite: bool, **kwargs: Any) -> None:
    """Train an ANN teacher or distil a spiking student.

    \b
    Teacher:  neurodistill train --model ann_digits --out runs/teacher
    Student:  neurodistill train --model snn_digits --method tser --teacher runs/teacher/best.pt --out runs/student
    Several processes: torchrun --nproc_per_node 2 -m neurodistill.cli train ...
    """
    from .config import read_config_file, resolve
    from .distributed import launched_as_main
    from .train import train as run_train

    overrides = _overrides(kwargs)
    if ablation:
        from .distill import TSER_ABLATION

        overrides.setdefault("loss", {}).update(TSER_ABLATION[ablation])
    file_values = read_config_file(config_file) if config_file else {}
    where = f"config file {config_file!r}" if config_file else "options"
    cfg = resolve(file_values, overrides, where)
    if resume and not config_file and (Path(cfg.out) / "config.yaml").is_file():
        from .io.files import inside

        # Resuming: the run's own resolved config, with only the flags given now on top.
        run_config = inside(cfg.out, "config.yaml", "--resume: run file")
        cfg = resolve(read_config_file(run_config), overrides, f"{cfg.out}/config.yaml")
    summary = run_train(cfg, resume=resume, overwrite=overwrite, progress=_show_progress())
    if not launched_as_main():  # torchrun: rank 0 prints the one summary line
        return
    click.echo(f"test accuracy {summary['test_acc']:.4f} after {summary['epochs']} epochs (last.pt; best.pt, "
               f"epoch {summary['best_epoch']} chosen on {summary['selection']['split']}: {summary['best_test_acc']:.4f}) "
               f"({summary['train_seconds']:.1f} s); run in {cfg.out}")


@main.command()
def models() -> None:
    """List the registered models (spiking students and their ANN twins)."""
    from .models import list_models

    specs = list_models()
    width = max(len(s.name) for s in specs)
    click.echo(f"{'name':<{width}}  {'kind':<7}  {'twin':<{width}}  description")
    for s in specs:
        click.echo(f"{s.name:<{width}}  {'spiking' if s.spiking else 'ANN':<7}  {s.twin:<{width}}  {s.description}")


@main.command()
@click.argument("ckpt", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", type=click.Choice(["loihi2", "nir", "onnx"]), default="loihi2", show_default=True,
              help="loihi2: netx + NIR + deploy.h5 bundle; nir: float NIR graph; onnx: ANN teacher and unrolled SNN")
@click.option("--out", type=click.Path(), required=True, help="output directory (new or empty; an earlier export there is replaced only with --overwrite)")
@click.option("--calib", default="256", show_default=True,
              help="loihi2: training samples for calibration and accuracy, or (NIR source) an .npz with 'x' (N, *input "
                   "shape) and 'y' (N,)")
@click.option("--weight-bits", type=int, default=None, help="loihi2: weight bits (2..8) [8; a --deploy checkpoint's own]")
@click.option("--timesteps", type=int, default=None, help="time steps T [the checkpoint's]")
@click.option("--dt", type=float, default=1.0, show_default=True, help="seconds per step written to NIR (1.0 = 'one step')")
@click.option("--accept-reset-approximation", is_flag=True,
              help="export a soft-reset model although Loihi resets to 0 (the accuracy change is in the manifest)")
@click.option("--chips", type=int, default=1, show_default=True, help="loihi2: plan for this many chips")
@click.option("--for", "consumer", type=click.Choice(_nir_consumers()), default=None,
              help="nir: write the file in this importer's conventions [spikingjelly: the canonical file] "
                   "(docs/export.md, 'NIR consumers')")
@click.option("--from", "producer", type=click.Choice(["neurodistill", "spikingjelly", "snntorch", "norse", "sinabs"]),
              default=None, help="MODEL.nir: the exporter that wrote it (its dt and neuron conventions; docs/export.md, "
                                 "'NIR in') [neurodistill]")
@click.option("--source-dt", type=float, default=None,
              help="MODEL.nir: seconds per step its exporter assumed [the exporter's default: snntorch and "
                   "spikingjelly 1e-4, norse 1e-3, sinabs 1 step, neurodistill the file's]")
@click.option("--overwrite", is_flag=True, help="replace an existing output directory")
def export(ckpt: str, target: str, out: str, calib: str, weight_bits: int, timesteps: int | None, dt: float,
           accept_reset_approximation: bool, chips: int, consumer: str | None, producer: str | None,
           source_dt: float | None, overwrite: bool) -> None:
    """Export a trained checkpoint, or a NIR graph (MODEL.nir, from neurodistill, spikingjelly, snnTorch, Norse or
    sinabs), to a Loihi 2 bundle, a float NIR graph or ONNX models."""
    from .export import bundle

    ck, dest = Path(ckpt), Path(out)
    if timesteps is not None and timesteps < 1:  # 0 used to mean "the checkpoint's T" silently
        raise ConfigError(f"--timesteps {timesteps} is not allowed; it must be >= 1 (leave it out for the checkpoint's T)")
    if consumer is not None and target != "nir":
        raise ConfigError(f"--for {consumer} is for --target nir (a {target} export has no consumer choice)")
    _check_export_numbers(timesteps, dt, chips)
    if ck.suffix == ".nir":
        _export_nir_source(ck, dest, target, calib, weight_bits or 8, timesteps, dt, chips, producer, source_dt, consumer,
                           accept_reset_approximation, overwrite)
        return
    if producer is not None or source_dt is not None:
        raise ConfigError(f"--from and --source-dt are for NIR files (MODEL.nir); {ckpt!r} is a checkpoint")
    calib = _calib_count(calib)
    if target == "loihi2":
        m = bundle.export_loihi2(ck, dest, calib=calib, weight_bits=weight_bits, timesteps=timesteps, dt=dt,
                                 accept_reset_approximation=accept_reset_approximation, overwrite=overwrite,
                                 chips=chips)
        click.echo(_loihi2_line(dest, m, "", f"calibration samples of the {m.get('calibration_split', 'train')} split"))
    elif target == "nir":
        m = bundle.export_nir(ck, dest, timesteps=timesteps, dt=dt, consumer=consumer,
                              accept_reset_approximation=accept_reset_approximation, overwrite=overwrite)
        click.echo(f"float NIR graph for {m['consumer']} in {dest}/network.nir: {m.get('nodes')} nodes, "
                   f"T={m.get('timesteps')}, dt={m['dt']:g}; {m['consumer_conventions']}")
    else:
        m = bundle.export_onnx(ck, dest, timesteps=timesteps, overwrite=overwrite)
        click.echo(f"ONNX models in {dest}: {', '.join(sorted(m.get('models', {})))}")


def _check_export_numbers(timesteps: int | None, dt: float, chips: int) -> None:
    import math

    from .io.limits import MAX_TIMESTEPS, check_range

    if timesteps is not None:
        check_range("--timesteps", "T", timesteps, 1, MAX_TIMESTEPS)
    if not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"--dt {dt} is not allowed; it must be a positive number of seconds per step")
    check_range("--chips", "chips", chips, 1, 1024)


def _loihi2_line(dest: Path, m: dict, origin: str, samples: str) -> str:
    """The one summary line of a loihi2 export: size, latency, accuracies and where they were measured."""
    return (f"loihi2 bundle in {dest}{origin}: {len(m['layers'])} populations, {m['resources']['cores']} cores, "
            f"latency {m['latency_steps']} steps; accuracy float {m['accuracy_float']:.4f}, quantized "
            f"{m['accuracy_quantized']:.4f} on {m['calibration_samples']} {samples}"
            + ("" if m["netx"] is None else f"; no network.net ({m['netx']['reason']})"))


def _calib_count(text: str) -> int:
    from .io.limits import MAX_SAMPLES, check_range

    try:
        return check_range("--calib", "samples", int(text), 1, MAX_SAMPLES)
    except ValueError:
        raise ConfigError(f"--calib {text!r}: a checkpoint calibrates on its own training data; give a sample count "
                          "(an .npz file is for NIR sources)") from None


def _export_nir_source(src: Path, dest: Path, target: str, calib: str, weight_bits: int, timesteps: int | None,
                       dt: float, chips: int, producer: str | None, source_dt: float | None, consumer: str | None,
                       accept_reset_approximation: bool, overwrite: bool) -> None:
    from .export import bundle

    if consumer is not None:
        raise ConfigError(f"--for {consumer} is for checkpoints; a NIR source is written in the canonical conventions")
    if accept_reset_approximation:
        raise ConfigError("--accept-reset-approximation is for checkpoints; NIR only has a reset to v_reset")
    try:
        calib_arg: int | Path = int(calib)
    except ValueError:
        calib_arg = Path(calib)
    m = bundle.export_nir_source(src, dest, target=target, source=producer or "neurodistill", source_dt=source_dt,
                                 calib=calib_arg, weight_bits=weight_bits, timesteps=timesteps, dt=dt,
                                 overwrite=overwrite, chips=chips)
    origin = f"NIR from {m['nir_in']['exporter']} (dt {m['nir_in']['source_dt']:g} s per step)"
    if target == "loihi2":
        click.echo(_loihi2_line(dest, m, f" from {origin}", f"samples ({m['calibration_split']})"))
    elif target == "nir":
        click.echo(f"canonical NIR graph in {dest}/network.nir from {origin}: {m['nodes']} nodes, T={m['timesteps']}, "
                   f"dt=1 step")
    else:
        click.echo(f"ONNX model in {dest} from {origin}: snn.onnx, T={m['models']['snn']['timesteps']}")


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
def inspect(bundle_dir: str) -> None:
    """Show a bundle: layers, neuron parameters, scales, clipping, resources."""
    from .export.inspect import render

    click.echo(render(Path(bundle_dir)))


@main.command()
@click.argument("source", metavar="BUNDLE|NET", type=click.Path(exists=True))
@click.option("--backend", type=click.Choice(["fxp", "float", "lava"]), default="fxp", show_default=True,
              help="fxp: bit-accurate Loihi 2 fixed point; float: the float graph (bundles); lava: Lava fixed_pt")
@click.option("--samples", type=int, default=256, show_default=True, help="bundle: test samples to run")
@click.option("--batch-size", type=int, default=64, show_default=True, help="samples per batch (fxp, float)")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="bundle: dataset directory [the bundle's]")
@click.option("--encoding-once", is_flag=True, help="count the encoding layer's MACs once per inference, not per step")
@click.option("--inputs", "inputs", type=click.Path(dir_okay=False), default=None,
              help=".net file: .npz/.npy with 'spikes' (N, steps, *shape) or 'bias' (N, *shape), optional 'labels'; "
                   "bundle: .npz with images 'x' (N, *input_shape) and optional labels 'y' (N,) [its test split]")
@click.option("--steps", type=int, default=None, help=".net file with bias input: steps per sample")
@click.option("--save-spikes", is_flag=True, help="also write every layer's spikes to spikes.h5 (NIR's data format)")
@click.option("--device", default="auto", show_default=True,
              help="fxp, float: auto (CUDA when available), cpu, cuda or cuda:N")
@click.option("--all-steps", is_flag=True,
              help="fxp: run every chip step (T + latency) and count pipeline-fill spikes; default: each layer's own "
                   "T-step window (same accuracy and counts, faster)")
@click.option("--lava-python", type=click.Path(dir_okay=False), default=None, help="Lava interpreter [.venv-lava]")
@click.option("--out", type=click.Path(), required=True, help="directory for simulation.json")
@click.option("--overwrite", is_flag=True, help="replace the simulation an existing --out holds")
def simulate(source: str, backend: str, samples: int, batch_size: int, data_dir: str | None, encoding_once: bool,
             inputs: str | None, steps: int | None, save_spikes: bool, device: str, all_steps: bool,
             lava_python: str | None, out: str, overwrite: bool) -> None:
    """Replay a Loihi 2 bundle on test data, or a lava-dl .net file on given inputs: accuracy, spikes,
    synaptic events, ACs and MACs per layer."""
    from .io.output import check_out

    check_out(Path(out), overwrite, "the simulation")
    src = Path(source)
    if src.is_file():
        from .sim.run_net import simulate_net

        if src.suffix != ".net":
            raise ConfigError(f"{source!r} is a file but not a netx .net file; give a bundle directory or a .net file")
        if inputs is None:
            raise ConfigError("simulating a .net file needs --inputs FILE (.npz or .npy); see 'neurodistill simulate -h'")
        sim = simulate_net(src, Path(out), Path(inputs), backend=backend, steps=steps, batch_size=batch_size,
                           lava_python=lava_python, save_spikes=save_spikes, device=device, overwrite=overwrite)
        acc = f"accuracy {sim['accuracy']:.4f} on" if sim["accuracy"] is not None else "ran"
        click.echo(f"{backend}: {acc} {sim['samples']} samples x {sim['steps_per_sample']} steps; firing rate "
                   f"{sim['firing_rate_neuron_weighted']:.4f} (neuron-weighted); {sim['totals']['synaptic_events']:.3g} "
                   f"synaptic events; simulation.json in {out}")
        return
    from .sim.run import simulate as run_sim

    if steps is not None:
        raise ConfigError("--steps is for .net files with bias input; a bundle runs its own T (the manifest's timesteps)")
    sim = run_sim(src, Path(out), backend=backend, samples=samples, batch_size=batch_size,
                  encoding_once=encoding_once, lava_python=lava_python, data_dir=data_dir, save_spikes=save_spikes,
                  all_steps=all_steps, device=device, inputs=None if inputs is None else Path(inputs),
                  progress=_show_progress(), overwrite=overwrite)
    where = "test samples" if inputs is None else f"samples of {inputs}"
    if sim["samples"] < samples:
        click.echo(f"note: --samples {samples} asked for; {'the test split' if inputs is None else inputs} has "
                   f"{sim['samples']}, so {sim['samples']} ran")
    acc = "no labels" if sim["accuracy"] is None else f"accuracy {sim['accuracy']:.4f}"
    click.echo(f"{backend}: {acc} on {sim['samples']} {where}; firing rate "
               f"{sim['firing_rate_neuron_weighted']:.4f} (neuron-weighted); {sim['totals']['synaptic_events']:.3g} "
               f"synaptic events; simulation.json in {out}")


@main.command()
@click.argument("simdirs", metavar="SIMDIR...", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--profile", "profile_names", multiple=True, default=("cmos45-fp32", "cmos45-int8", "loihi", "loihi2"),
              show_default=True, help="hardware profile name or .toml path; repeat for several")
@click.option("--table", "table", type=click.Choice(["models", "methods"]), default="models", show_default=True,
              help="models: the full report of simulations; methods: one row per training run (run or simulation "
                   "directories): accuracy float/deployed/per step, OPs, ACs, MACs, energy, train time per batch, FR")
@click.option("--out", type=click.Path(), required=True, help="report directory")
@click.option("--overwrite", is_flag=True, help="replace the report an existing --out holds")
def report(simdirs: tuple[str, ...], profile_names: tuple[str, ...], table: str, out: str, overwrite: bool) -> None:
    """Price simulations with hardware profiles; write JSON, CSV, Markdown, LaTeX and figures.

    With --table methods, SIMDIR may also be a training run directory (summary.json); a
    simulation finds its run through its bundle's manifest."""
    from .io.output import check_out
    from .report.report import build, read_simulation, write

    check_out(Path(out), overwrite, "the report")
    if table == "methods":
        from .report import methods

        res = methods.write([Path(d) for d in simdirs], list(profile_names), Path(out), overwrite=overwrite)
        click.echo(f"methods table in {out}: {len(res['rows'])} runs, {len(res['files'])} files "
                   f"(methods.md, methods.tex, methods.csv, figures); profiles: {', '.join(res['profiles'])}")
        return

    rep = build([read_simulation(Path(d)) for d in simdirs], list(profile_names))
    files = write(rep, Path(out), overwrite=overwrite)
    click.echo(f"report in {out}: {len(files)} files (report.md, report.tex, figures); profiles: {', '.join(rep['profiles'])}")


@main.group()
def profiles() -> None:
    """Hardware profiles for energy pricing (hw_profiles/*.toml)."""


@profiles.command("list")
def profiles_list() -> None:
    """List the shipped profiles."""
    from .report.profiles import list_table

    click.echo(list_table())


@profiles.command("show")
@click.argument("name")
def profiles_show(name: str) -> None:
    """Show one profile (a shipped name or a .toml path): every constant with its source."""
    from .report.profiles import load_profile, show_table

    click.echo(show_table(load_profile(name)))


@main.command()
@click.option("--out", type=click.Path(), default="runs/demo", show_default=True, help="demo directory")
@click.option("--seed", type=int, default=0, show_default=True, help="random seed")
def demo(out: str, seed: int) -> None:
    """The whole chain on the built-in digits dataset, no download.

    Trains an ANN teacher, then a spiking student (T=4) with TSER; each stage writes its
    files into a subdirectory of OUT.
    """
    from .demo import run_demo

    result = run_demo(Path(out), seed=seed, progress=_show_progress())
    click.echo(result)


if __name__ == "__main__":
    main()
