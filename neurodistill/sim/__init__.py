"""Simulators over the deployment graph: float (latency-free, spikingjelly semantics) and fixed point (Loihi 2)."""
