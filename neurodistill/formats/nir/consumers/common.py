"""Rewrites and checks that several consumers' importers need, and the one refusal line they share."""

from __future__ import annotations

from collections import defaultdict

import nir
import numpy as np

from ....errors import UnsupportedLayerError


def below_f32(v: np.ndarray) -> np.ndarray:
    """The largest float32 below each value, as float64: in float32 `x > below_f32(t)` is `x >= t`,
    so a consumer that fires on `v > v_threshold` fires where spikingjelly's `v >= v_threshold` does."""
    return np.nextafter(np.asarray(v, dtype=np.float32), np.float32(-np.inf)).astype(np.float64)


def flatten_from_end(node: nir.Flatten) -> None:
    """In place: Flatten dims counted from the last axis, so that `torch.nn.Flatten(start_dim, end_dim)`
    means the same on `[B, ...]` as NIR's batch-free reading (nir's type check accepts negative dims)."""
    ndim = len(node.input_type["input"])
    node.start_dim = int(node.start_dim - ndim if node.start_dim >= 0 else node.start_dim)
    node.end_dim = int(node.end_dim - ndim if node.end_dim >= 0 else node.end_dim)
    node.__post_init__()  # recompute output_type from the new dims


def uniform(v) -> bool:
    return np.unique(np.asarray(v)).size == 1


def sums_of_more_than_two(graph: nir.NIRGraph, how: str) -> list[str]:
    """Nodes with over two incoming edges: float sums of three or more depend on the order, which the
    importer does not take from the model (`how`)."""
    counts: dict[str, int] = defaultdict(int)
    for _, dst in graph.edges:
        counts[dst] += 1
    return [f"{n} ({c} inputs: {how}, so the float sum can differ from the model's)" for n, c in counts.items() if c > 2]


def nirtorch_load_order(graph: nir.NIRGraph) -> list[str]:
    """The node order nirtorch 2.6's deprecated `nirtorch.load` (graph_utils.trace_execution, run by
    GraphExecutor) executes: pre-order depth-first from the input node, children in edge order.
    It is not a dependency order, which is what `misordered_joins` finds."""
    children: dict[str, list[str]] = defaultdict(list)
    for src, dst in graph.edges:
        children[src].append(dst)
    start = next(n for n, node in graph.nodes.items() if isinstance(node, nir.Input))
    order: list[str] = []
    stack = [start]
    while stack:
        node = stack.pop()
        if node in order:
            continue
        order.append(node)
        stack.extend(reversed([c for c in children[node] if c not in order]))
    return order


def misordered_joins(graph: nir.NIRGraph) -> dict[str, str]:
    """Node -> an input that `nirtorch.load` runs after it: that input's output is missing from the
    node's sum at this step (it arrives from the previous step's cache, one step late)."""
    position = {n: i for i, n in enumerate(nirtorch_load_order(graph))}
    late = {}
    for src, dst in graph.edges:
        if position.get(src, -1) > position.get(dst, -1):
            late.setdefault(dst, src)
    return late


def refuse(consumer: str, found_in: str, importer: str, problems: list[str]) -> None:
    """One UnsupportedLayerError line naming the consumer and every node it cannot run, if any."""
    if problems:
        raise UnsupportedLayerError(f"--for {consumer}: {found_in}'s importer ({importer}) cannot run this graph "
                                    f"as exported: {'; '.join(problems)}")


def grouped(found: dict[str, list[str]]) -> list[str]:
    """Problems kept as reason -> nodes, as `refuse` lists them: 'a, b (reason)'."""
    return [f"{', '.join(nodes)} ({why})" for why, nodes in found.items()]
