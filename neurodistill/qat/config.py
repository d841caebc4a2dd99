"""The settings of `--deploy loihi2` (config section `qat:`): a leaf, so that the run configuration
can name them without importing the QAT forward, export or the simulators."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

TARGETS = ("loihi2",)


@dataclass
class QatConfig:
    """Settings of `--deploy loihi2` (config section `qat:`)."""

    weight_bits: int = 8  # Loihi 2 weight bits, 2..8 (export --weight-bits)
    calib: int = 256  # training samples that set the encoding scale (export --calib)

    def __post_init__(self) -> None:
        if not 2 <= self.weight_bits <= 8:
            raise ConfigError(f"qat.weight_bits = {self.weight_bits} is not allowed; Loihi 2 takes 2..8 bit weights")
        if self.calib < 1:
            raise ConfigError(f"qat.calib = {self.calib} is not allowed; it must be >= 1")


def check_deploy_name(where: str, deploy: str | None) -> None:
    if deploy is not None and deploy not in TARGETS:
        raise ConfigError(f"{where}: deploy = {deploy!r} is not allowed; choose one of {', '.join(TARGETS)} (or leave it out)")
