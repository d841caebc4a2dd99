"""A training run killed right after epoch 1's checkpoint, then resumed: the crash a resume must survive."""

from __future__ import annotations

import pytest

from neurodistill.config import resolve
from neurodistill.train import train


class Killed(BaseException):
    """Raised in place of the process dying (BaseException: no `except Exception` in train swallows it)."""


def kill_after_epoch_1_then_resume(config: dict, monkeypatch) -> None:
    """Train `config` until epoch 1's last.pt is on disk, stop there, then `train(..., resume=True)`."""
    from neurodistill.train import loop

    save = loop.save_checkpoint

    def save_then_die(path, payload):
        save(path, payload)
        if payload["epoch"] == 1 and path.name == "last.pt":
            raise Killed  # the process dies right after epoch 1's last.pt, as a kill would leave it

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(resolve(config, {}))
    monkeypatch.setattr(loop, "save_checkpoint", save)
    train(resolve(config, {}), resume=True)
