"""The shipped example configs (examples/*.yaml) stay valid as the config schema changes."""

from __future__ import annotations

import re

import pytest

from neurodistill.config import read_config_file, resolve
from neurodistill.models import list_models

from .conftest import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"cifar100-tser.yaml", "imagenet-sew34-tser.yaml", "cifar10-esd.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_resolves(path):
    cfg = resolve(read_config_file(path), {}, str(path))
    assert cfg.model in {s.name for s in list_models()}
    assert cfg.out.startswith("runs/")
    if cfg.method == "esd":
        assert cfg.backprop == "rate"


@pytest.mark.parametrize("doc", ["README.md", "docs/training.md", "docs/getting-started.md"])
def test_docs_name_only_shipped_examples(doc):
    named = set(re.findall(r"examples/([\w.-]+\.yaml)", (ROOT / doc).read_text()))
    assert named, f"{doc} names no example config"
    assert named <= {p.name for p in EXAMPLES}
