"""Run under torchrun by tests/test_loader.py: `neurodistill train` on `one-image`, a digits-shaped
data set whose training samples are all one image, so two ranks' batches can differ by their
augmentation alone.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_one_image.py RECORD_DIR|- train ...

With a RECORD_DIR, each rank writes the training samples its main process drew, in order, to
RECORD_DIR/drawn-rank<R>.pt (with --workers 0 that is every sample it trained on). With
KILL_AFTER_EPOCH=N in the environment, rank 0 dies right after writing epoch N's last.pt, as a
killed run would leave it (torchrun then stops the other rank).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from neurodistill.data import DatasetInfo, register_dataset
from neurodistill.data.digits import RandomShift, digits_arrays

drawn: list[torch.Tensor] = []


class Recorded(RandomShift):
    def __getitem__(self, i: int):
        x, y = super().__getitem__(i)
        drawn.append(x.clone())
        return x, y


@register_dataset("one-image")
def load_one_image(data_dir, options):
    x, y, x_test, y_test = digits_arrays()
    train = Recorded(x[:1].repeat(96, 1, 1, 1), y[:1].repeat(96))
    return train, TensorDataset(x_test[:40], y_test[:40]), DatasetInfo("one-image", 10, (1, 8, 8))


def _die_after(epoch: int) -> None:
    from neurodistill.train import loop

    save = loop.save_checkpoint

    def save_then_die(path, payload):
        save(path, payload)
        if payload["epoch"] == epoch and Path(path).name == "last.pt":
            os._exit(3)

    loop.save_checkpoint = save_then_die


if __name__ == "__main__":
    from neurodistill.cli import main

    record = sys.argv[1]
    if os.environ.get("KILL_AFTER_EPOCH"):
        _die_after(int(os.environ["KILL_AFTER_EPOCH"]))
    try:
        main(sys.argv[2:])
    finally:
        if record != "-":
            torch.save(torch.stack(drawn), Path(record) / f"drawn-rank{os.environ.get('RANK', '0')}.pt")
