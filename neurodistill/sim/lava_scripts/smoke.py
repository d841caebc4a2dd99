"""Smoke check of the Lava environment (.venv-lava, Python 3.10): a 2-layer network runs.

Runs with the Lava interpreter, not the main one, so it imports nothing from neurodistill.
A LIF population driven by its bias spikes into a Dense layer and a second LIF population;
run in Loihi2SimCfg(select_tag='fixed_pt'). Exit 0 and one line when both layers spike.
"""

import sys

import numpy as np
from lava.lib.dl import netx  # noqa: F401  (lava-dl must import, not only lava-nc)
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense
from lava.proc.lif.process import LIF
from lava.proc.monitor.process import Monitor

STEPS = 20


def main() -> int:
    n_in, n_out = 3, 2
    # Fixed-point LIF: bias_mant << bias_exp is added to v each step; vth is scaled by << 6.
    lif1 = LIF(shape=(n_in,), du=4095, dv=0, vth=10, bias_mant=np.array([200, 400, 800]), bias_exp=6)
    dense = Dense(weights=np.full((n_out, n_in), 64, dtype=int))
    lif2 = LIF(shape=(n_out,), du=4095, dv=0, vth=10, bias_mant=0)
    lif1.s_out.connect(dense.s_in)
    dense.a_out.connect(lif2.a_in)
    mon1, mon2 = Monitor(), Monitor()
    mon1.probe(lif1.s_out, STEPS)
    mon2.probe(lif2.s_out, STEPS)
    try:
        lif2.run(condition=RunSteps(num_steps=STEPS), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        s1 = mon1.get_data()[lif1.name]["s_out"]
        s2 = mon2.get_data()[lif2.name]["s_out"]
    finally:
        lif2.stop()
    if s1.sum() == 0 or s2.sum() == 0:
        print(f"lava smoke check FAILED: spikes layer1={int(s1.sum())} layer2={int(s2.sum())}", file=sys.stderr)
        return 1
    print(f"lava smoke check ok: 2-layer network ran {STEPS} steps (fixed_pt), spikes {int(s1.sum())} -> {int(s2.sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
