"""The independent reference for the loss tests: softmax, cross-entropy, KL and entropy in plain
Python floats, written from their definitions (no torch), one logit vector at a time."""

from __future__ import annotations

import math


def softmax(v, tau=1.0):
    e = [math.exp(x / tau) for x in v]
    s = sum(e)
    return [x / s for x in e]


def ce(v, y):
    return -math.log(softmax(v)[y])


def kl(p_logits, q_logits, tau):
    """KL(p || q) of the two logit vectors' softmaxes at temperature tau."""
    p, q = softmax(p_logits, tau), softmax(q_logits, tau)
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))


def ent(v, tau):
    p = softmax(v, tau)
    return -sum(pi * math.log(pi) for pi in p)
