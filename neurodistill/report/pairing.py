"""Which float accuracy a deployed accuracy is compared with: the exported checkpoint's own."""

from __future__ import annotations


def float_accuracy(summary: dict, checkpoint: str | None) -> tuple[float | None, list | None]:
    """Test accuracy (and per-step accuracies) of the checkpoint a bundle came from: a deployed
    accuracy compared with another checkpoint's float accuracy shows a quantization loss or gain
    that does not exist. summary.json holds last.pt's (test_acc) and best.pt's (best_test_acc, no
    per-step); another file of the run has no recorded test accuracy."""
    per = summary.get("test_acc_per_timestep")
    per = per if isinstance(per, list) and per else None
    if checkpoint in (None, "last.pt"):
        return summary.get("test_acc"), per
    if checkpoint == "best.pt":
        best = summary.get("best_test_acc")
        # when best.pt is last.pt's epoch, the weights are the same and so are the per-step numbers
        same = best is not None and summary.get("best_epoch") == summary.get("epochs") and best == summary.get("test_acc")
        return best, per if same else None
    return None, None
