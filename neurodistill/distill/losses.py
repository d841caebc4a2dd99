"""Distillation losses as pure functions over per-step logits (docs/methods.md).

Every function takes student logits `z: [T, B, K]`, integer labels `y: [B]` and, where needed,
teacher logits `z_tea: [B, K]`, and returns a dict of loss parts:
`loss` (the total to minimise), the weighted terms `task`, `distill`, `reg` that sum to it,
and the raw quantities `ce`, `kl`, `entropy` for logging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError

Tensor = torch.Tensor


@dataclass
class LossConfig:
    alpha: float = 0.5  # weight of the distillation term; CE gets 1 - alpha
    temperature: float = 5.0  # tau of softmax_tau; TSER: stable for tau in 2..6
    lam: float = 0.01  # entropy regularisation weight (tser); useful in [1e-4, 0.2]
    kl_tau_squared: bool = True  # multiply KL by tau^2 (Hinton) so its gradients keep their scale
    entropy_on_softened: bool = True  # H of softmax_tau(z[t]) rather than of softmax(z[t])
    separate_ce: bool = True  # tser: CE on every step's output (TS) instead of on the mean
    separate_kl: bool = True  # tser: KL on every step's output (TS) instead of on the mean
    # kd/tser: CE on softmax at this temperature. 1 (the default) is CE on the logits; TSER's Eq. 8
    # applies CE to Q^stu(t), which its Eq. 4 defines at tau, so the paper's reading is = temperature
    ce_temperature: float = 1.0

    def __post_init__(self) -> None:
        t = self.ce_temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < float("inf"):
            raise ConfigError(f"loss.ce_temperature = {t!r} is not allowed; it must be a number > 0 "
                              "(1: cross-entropy on the logits)")


def ce(logits: Tensor, y: Tensor, tau: float = 1.0) -> Tensor:
    """CE(softmax_tau(logits), y), averaged over samples; tau = 1 is plain cross-entropy."""
    return F.cross_entropy(logits if tau == 1.0 else logits / tau, y)


def kl(p_logits: Tensor, q_logits: Tensor, tau: float) -> Tensor:
    """KL(softmax_tau(p) || softmax_tau(q)), summed over classes, averaged over samples."""
    return F.kl_div(
        F.log_softmax(q_logits / tau, -1), F.log_softmax(p_logits / tau, -1), log_target=True, reduction="batchmean"
    )


def entropy(logits: Tensor, tau: float = 1.0) -> Tensor:
    """H(softmax_tau(logits)), averaged over samples."""
    logp = F.log_softmax(logits / tau, -1)
    return -(logp.exp() * logp).sum(-1).mean()


def _per_step(fn, z: Tensor) -> Tensor:
    return torch.stack([fn(z[t]) for t in range(z.shape[0])]).mean()


def _parts(task: Tensor, distill: Tensor, reg: Tensor, ce: Tensor, kl_: Tensor, ent: Tensor) -> dict[str, Tensor]:
    return {"loss": task + distill + reg, "task": task, "distill": distill, "reg": reg, "ce": ce, "kl": kl_, "entropy": ent}


def loss_none(z: Tensor, y: Tensor, cfg: LossConfig, z_tea: Tensor | None = None) -> dict[str, Tensor]:
    """L = CE(z_mean, y)."""
    ce = F.cross_entropy(z.mean(0), y)
    zero = ce.new_zeros(())
    return _parts(ce, zero, zero, ce, zero, zero)


def loss_tet(z: Tensor, y: Tensor, cfg: LossConfig, z_tea: Tensor | None = None) -> dict[str, Tensor]:
    """L = mean_t CE(z[t], y)  (TET)."""
    ce = _per_step(lambda zt: F.cross_entropy(zt, y), z)
    zero = ce.new_zeros(())
    return _parts(ce, zero, zero, ce, zero, zero)


def loss_kd(z: Tensor, y: Tensor, cfg: LossConfig, z_tea: Tensor | None = None) -> dict[str, Tensor]:
    """L = (1-a) CE(softmax_tau_ce(z_mean), y) + a tau^2 KL(softmax_tau(z_tea) || softmax_tau(z_mean))  (TSER Eq. 7)."""
    tau, a = cfg.temperature, cfg.alpha
    z_mean = z.mean(0)
    c = ce(z_mean, y, cfg.ce_temperature)
    k = kl(z_tea, z_mean, tau)
    zero = c.new_zeros(())
    return _parts((1 - a) * c, a * _tau2(cfg) * k, zero, c, k, zero)


def loss_tser(z: Tensor, y: Tensor, cfg: LossConfig, z_tea: Tensor | None = None) -> dict[str, Tensor]:
    """Temporal separation + entropy regularisation (TSER Eq. 8-11).

    L_TS = (1-a) mean_t CE(softmax_tau_ce(z[t]), y) + a tau^2 mean_t KL(softmax_tau(z_tea) || softmax_tau(z[t]))
    L_ER = -lam mean_t H(softmax_tau(z[t]))
    With separate_ce / separate_kl off, that term uses z_mean instead (the Table 3 ablation).
    """
    tau, a, tau_ce = cfg.temperature, cfg.alpha, cfg.ce_temperature
    c = _per_step(lambda zt: ce(zt, y, tau_ce), z) if cfg.separate_ce else ce(z.mean(0), y, tau_ce)
    k = _per_step(lambda zt: kl(z_tea, zt, tau), z) if cfg.separate_kl else kl(z_tea, z.mean(0), tau)
    h_tau = tau if cfg.entropy_on_softened else 1.0
    ent = _per_step(lambda zt: entropy(zt, h_tau), z)
    return _parts((1 - a) * c, a * _tau2(cfg) * k, -cfg.lam * ent, c, k, ent)


def _tau2(cfg: LossConfig) -> float:
    return cfg.temperature**2 if cfg.kl_tau_squared else 1.0


# method name -> (loss function, needs an ANN teacher)
METHODS = {
    "none": (loss_none, False),
    "tet": (loss_tet, False),
    "kd": (loss_kd, True),
    "tser": (loss_tser, True),
}

# TSER's Table 3 ablation, as switch settings over LossConfig.
TSER_ABLATION = {
    "kd": dict(separate_ce=False, separate_kl=False, lam=0.0),
    "ts_kl": dict(separate_ce=False, separate_kl=True, lam=0.0),
    "ts_ce": dict(separate_ce=True, separate_kl=False, lam=0.0),
    "ts_both": dict(separate_ce=True, separate_kl=True, lam=0.0),
    "ts_both_er": dict(separate_ce=True, separate_kl=True),
}
