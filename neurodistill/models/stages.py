"""Stage outputs of a registered model: where tssd's weak classifier and esd's branches attach.

One rule serves both methods. A model's stages are read from its top-level `body`
(`nn.Sequential`), up to the classifier head (the first flatten, adaptive pool or linear
layer):
- residual nets (ResNet, SEW-ResNet): a stage is a run of blocks of one width and resolution;
  its output is its last block's (a block that changes width or resolution, i.e. has a
  projection shortcut, opens a new stage);
- chains (VGG, snn_digits): a stage ends at the last spiking neuron before each downsampling
  (a pooling layer or a strided conv) and before the head.
The stem and the head are not stages. For the CIFAR ResNet-18/34 this gives the ends of the
four stages (widths 64/128/256/512), for ResNet-19 the three (128/256/512), for VGG-11/16 the
neurons before each of the five pools, for snn_digits two (16x8x8, 32x4x4).
"""

from __future__ import annotations

from torch import nn


def stage_points(model: nn.Module) -> list[str]:
    """Module paths of the last module of each stage, in order; the last is the final stage.

    A model without a sequential `body` has no named stages: the list is empty (the callers
    then ask for explicit module paths). A DistributedDataParallel wrapper is looked through.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Sequential):
        return []
    children = list(body.named_children())
    head = next((i for i, (_, m) in enumerate(children)
                 if isinstance(m, nn.Flatten | nn.AdaptiveAvgPool2d | nn.AdaptiveAvgPool1d | nn.Linear)),
                len(children))  # fmt: skip
    features = children[:head]
    blocks = [(n, m) for n, m in features if _is_block(m)]
    points: list[str] = []
    if blocks:
        for n, m in blocks:
            if not points or _block_starts_stage(m):
                points.append(n)
            else:
                points[-1] = n
    else:
        last = None
        for n, m in features:
            if _is_neuron(m):
                last = n
            elif _downsamples(m) and last is not None and (not points or points[-1] != last):
                points.append(last)
        if last is not None and (not points or points[-1] != last):
            points.append(last)
    return [f"body.{n}" for n in points]


def _is_neuron(m: nn.Module) -> bool:
    from spikingjelly.activation_based import neuron

    return isinstance(m, neuron.BaseNode)


def _is_block(m: nn.Module) -> bool:
    """A residual block: a composite child holding convolutions and neurons."""
    mods = list(m.modules())[1:]
    return any(isinstance(c, nn.Conv2d) for c in mods) and any(_is_neuron(c) for c in mods)


def _block_starts_stage(m: nn.Module) -> bool:
    """A block that changes width or resolution (it has a projection shortcut) opens a new stage."""
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    return any(tuple(c.stride) != (1, 1) for c in convs) or convs[0].in_channels != convs[0].out_channels


def _downsamples(m: nn.Module) -> bool:
    if isinstance(m, nn.AvgPool2d | nn.MaxPool2d):
        return True
    return isinstance(m, nn.Conv2d) and tuple(m.stride) != (1, 1)


__all__ = ["stage_points"]
