"""The quantized deployment graph of a QAT model's live weights, and its accuracy in `run_fxp`.

Evaluation runs the network export writes (capture, `quantize_graph` with the deployment's
scales, the host's encoding) in the bit-exact simulator, so the accuracy a QAT run reports is
the one `simulate --backend fxp` of its bundle gives, by construction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.capture import capture
from ..core.fxp import run_fxp
from ..core.graph import DeployGraph
from ..core.loihi2 import encoding_bias, encoding_current, quantize_graph
from .forward import Deployment


def deploy_graph(dep: Deployment, model: nn.Module, timesteps: int) -> DeployGraph:
    graph = capture(model, dep.plan.input_shape, timesteps=timesteps)
    quantize_graph(graph, dep.weight_bits, scales=dep.scales(model))
    return graph


@torch.no_grad()
def fxp_readout(graph: DeployGraph, x: torch.Tensor, timesteps: int, batch: int = 1024) -> torch.Tensor:
    """The readout voltage after the last step, `(N, K)` int64, for static inputs `x (N, *input_shape)`."""
    out = []
    for i in range(0, len(x), batch):
        bias, _ = encoding_bias(graph, encoding_current(graph, x[i: i + batch].cpu().numpy()))
        out.append(run_fxp(graph, torch.as_tensor(bias), timesteps, record=False)["v_readout"])
    return torch.cat(out)


def fxp_accuracy(dep: Deployment, model: nn.Module, x: torch.Tensor, y: torch.Tensor, timesteps: int) -> dict:
    """Accuracy and predictions of the deployed network on `x`, `y` (what export's manifest computes)."""
    graph = deploy_graph(dep, model, timesteps)
    pred = fxp_readout(graph, x, timesteps).argmax(-1)
    return {"acc": float((pred == y.cpu()).float().mean()), "pred": pred}
