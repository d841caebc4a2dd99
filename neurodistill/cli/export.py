"""`neurodistill export` (checkpoints and NIR sources to loihi2, nir, onnx) and `neurodistill inspect`."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from .group import main


def _nir_consumers() -> list[str]:
    from ..formats.nir.consumers import names

    return names()


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
@click.option("--source-reset", type=click.Choice(["zero", "subtract"]), default=None,
              help="MODEL.nir from snntorch or sinabs (required; norse: [zero]): the neurons' reset, which their "
                   "exporters do not record; subtract is refused (Loihi resets to 0)")
@click.option("--overwrite", is_flag=True, help="replace an existing output directory")
def export(ckpt: str, target: str, out: str, calib: str, weight_bits: int, timesteps: int | None, dt: float,
           accept_reset_approximation: bool, chips: int, consumer: str | None, producer: str | None,
           source_dt: float | None, source_reset: str | None, overwrite: bool) -> None:
    """Export a trained checkpoint, or a NIR graph (MODEL.nir, from neurodistill, spikingjelly, snnTorch, Norse or
    sinabs), to a Loihi 2 bundle, a float NIR graph or ONNX models."""
    from ..export import bundle

    ck, dest = Path(ckpt), Path(out)
    if timesteps is not None and timesteps < 1:  # 0 used to mean "the checkpoint's T" silently
        raise ConfigError(f"--timesteps {timesteps} is not allowed; it must be >= 1 (leave it out for the checkpoint's T)")
    if consumer is not None and target != "nir":
        raise ConfigError(f"--for {consumer} is for --target nir (a {target} export has no consumer choice)")
    _check_export_numbers(timesteps, dt, chips)
    if ck.suffix == ".nir":
        _export_nir_source(ck, dest, target, calib, weight_bits or 8, timesteps, dt, chips, producer, source_dt, consumer,
                           accept_reset_approximation, overwrite, source_reset)
        return
    if producer is not None or source_dt is not None or source_reset is not None:
        raise ConfigError(f"--from, --source-dt and --source-reset are for NIR files (MODEL.nir); {ckpt!r} is a checkpoint")
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

    from ..io.limits import MAX_TIMESTEPS, check_range

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
    from ..io.limits import MAX_SAMPLES, check_range

    try:
        return check_range("--calib", "samples", int(text), 1, MAX_SAMPLES)
    except ValueError:
        raise ConfigError(f"--calib {text!r}: a checkpoint calibrates on its own training data; give a sample count "
                          "(an .npz file is for NIR sources)") from None


def _export_nir_source(src: Path, dest: Path, target: str, calib: str, weight_bits: int, timesteps: int | None,
                       dt: float, chips: int, producer: str | None, source_dt: float | None, consumer: str | None,
                       accept_reset_approximation: bool, overwrite: bool, source_reset: str | None = None) -> None:
    from ..export import bundle

    if consumer is not None:
        raise ConfigError(f"--for {consumer} is for checkpoints; a NIR source is written in the canonical conventions")
    if accept_reset_approximation:
        raise ConfigError("--accept-reset-approximation is for checkpoints; NIR only has a reset to v_reset")
    try:
        calib_arg: int | Path = int(calib)
    except ValueError:
        calib_arg = Path(calib)
    m = bundle.export_nir_source(src, dest, target=target, source=producer or "neurodistill", source_dt=source_dt,
                                 source_reset=source_reset, calib=calib_arg, weight_bits=weight_bits, timesteps=timesteps, dt=dt,
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
    from ..export.inspect import render

    click.echo(render(Path(bundle_dir)))
