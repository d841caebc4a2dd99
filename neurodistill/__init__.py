"""neurodistill: distillation training, Loihi 2 export and energy reports for SNNs."""

__version__ = "0.1.0"
