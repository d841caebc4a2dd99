"""Training: ANN teachers and spiking students, BPTT, checkpoints, torchrun."""

from .checkpoint import atomic_write, load_checkpoint, save_checkpoint
from .loop import load_teacher, model_from_checkpoint, seed_everything, train

__all__ = ["atomic_write", "load_checkpoint", "load_teacher", "model_from_checkpoint", "save_checkpoint", "seed_everything", "train"]
