"""Event frames [T, 2, H, W]: resizing and the train-split augmentation of the CIFAR10-DVS references."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def resize_frames(x: torch.Tensor, size: int) -> torch.Tensor:
    """Frames [T, 2, H, W] resized to [T, 2, size, size] (0: unchanged).

    Bilinear with antialiasing: what torchvision's Resize does to a tensor, and what both
    reference codes apply to CIFAR10-DVS. Each output pixel is a weighted mean of event counts,
    so the mean count per pixel is kept and a frame's total shrinks with its area: at 48 x 48 a
    frame holds (48/128)^2 = 0.14 of its events.
    """
    if size == 0 or x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def flip_and_roll(x: torch.Tensor, flip: bool, roll: int) -> torch.Tensor:
    """A horizontal flip with probability 1/2 (if `flip`), then a circular shift by (dy, dx),
    each drawn uniformly from -roll..roll, as the references augment CIFAR10-DVS.

    torch's RNG rather than numpy's or `random`'s: DataLoader reseeds it in every worker.
    """
    if flip and bool(torch.rand(()) < 0.5):
        x = x.flip(-1)
    if roll:
        dy, dx = (int(v) for v in torch.randint(-roll, roll + 1, (2,)))
        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    return x
