"""`neurodistill simulate`: a bundle on test data, or a netx .net file on given inputs."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from .group import main, show_progress


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
    from ..io.output import check_out

    check_out(Path(out), overwrite, "the simulation")
    src = Path(source)
    if src.is_file():
        from ..sim.run_net import simulate_net

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
    from ..sim.run import simulate as run_sim

    if steps is not None:
        raise ConfigError("--steps is for .net files with bias input; a bundle runs its own T (the manifest's timesteps)")
    sim = run_sim(src, Path(out), backend=backend, samples=samples, batch_size=batch_size,
                  encoding_once=encoding_once, lava_python=lava_python, data_dir=data_dir, save_spikes=save_spikes,
                  all_steps=all_steps, device=device, inputs=None if inputs is None else Path(inputs),
                  progress=show_progress(), overwrite=overwrite)
    where = "test samples" if inputs is None else f"samples of {inputs}"
    if sim["samples"] < samples:
        click.echo(f"note: --samples {samples} asked for; {'the test split' if inputs is None else inputs} has "
                   f"{sim['samples']}, so {sim['samples']} ran")
    acc = "no labels" if sim["accuracy"] is None else f"accuracy {sim['accuracy']:.4f}"
    click.echo(f"{backend}: {acc} on {sim['samples']} {where}; firing rate "
               f"{sim['firing_rate_neuron_weighted']:.4f} (neuron-weighted); {sim['totals']['synaptic_events']:.3g} "
               f"synaptic events; simulation.json in {out}")
