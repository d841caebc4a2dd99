"""NIR for one consumer: the canonical float graph rewritten into the conventions its importer reads.

NIR fixes the equations of its nodes but not how each framework's importer reads them: which dt
it assumes, whether it integrates `dt/tau` by forward Euler or `exp(-dt/tau)`, how it counts
`Flatten` dimensions, what it does with `r`, `v_leak` and the readout. `from_torch.to_nir_graph`
writes the canonical graph (spikingjelly's reading, which `to_torch` and spikingjelly's own
importer run exactly); a consumer module here rewrites a copy of it so that the consumer's
own `from_nir`/`import_from_nir` reproduces neurodistill's float simulation spike for spike,
or raises `UnsupportedLayerError` naming the consumer and the layer it cannot express.

Each consumer module defines `CONSUMER = Consumer(...)`; `_MODULES` lists them, in the order
`export --target nir --for` shows them. docs/export.md has the table of what each one loads,
matches and refuses (filled from tests/test_nir_consumer_*.py, which run the real libraries).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ....errors import ConfigError

if TYPE_CHECKING:  # the CLI lists the names at start-up without importing nir
    import nir

DEFAULT = "spikingjelly"


@dataclass(frozen=True)
class Consumer:
    name: str  # the value of --for
    package: str  # the distribution whose importer reads the file (its version goes into the metadata)
    importer: str  # the function that reads it, for docs and errors
    adapt: Callable[[nir.NIRGraph], nir.NIRGraph]  # canonical graph (a private copy) -> graph for this consumer
    conventions: str  # one line: what the rewritten file assumes


_MODULES = ("spikingjelly", "snntorch", "norse", "sinabs", "rockpool")


def consumers() -> dict[str, Consumer]:
    found = (importlib.import_module(f"{__name__}.{m}").CONSUMER for m in _MODULES)
    return {c.name: c for c in found}


def names() -> list[str]:
    return list(_MODULES)


def get(name: str) -> Consumer:
    table = consumers()
    if name not in table:
        raise ConfigError(f"--for {name!r} is not a known NIR consumer; choose one of {', '.join(table)}")
    return table[name]


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def adapt_for(graph: nir.NIRGraph, name: str) -> nir.NIRGraph:
    """A copy of the canonical `graph` in consumer `name`'s conventions, with the metadata saying so.

    Raises:
        ConfigError: an unknown consumer.
        UnsupportedLayerError: the consumer's importer cannot express one of the layers (named).
    """
    consumer = get(name)
    out = consumer.adapt(copy.deepcopy(graph))
    meta = dict(out.metadata or {})
    meta.update({
        "consumer": consumer.name, "consumer_importer": consumer.importer,
        "consumer_conventions": consumer.conventions,
    })
    ver = _version(consumer.package)
    if ver is not None:
        meta["consumer_version_at_export"] = ver
    out.metadata = meta
    return out
