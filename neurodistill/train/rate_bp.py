"""Rate-based backprop moved to `neurodistill.models.rate_bp` (the methods and QAT use it, and sit
below training); this name stays for code that imports it from here."""

from ..models.rate_bp import *  # noqa: F403
from ..models.rate_bp import (  # noqa: F401
    RateBackprop,
    RateOutput,
    neuron_record,
    rate_step,
    scale_grad,
    surrogate_grad,
)
