"""The deployment graph and what it means, in numpy and torch only: the graph (`graph`), folding
(`fold`), capture from torch.fx (`capture`), Loihi 2's fixed point (`quantize`, `loihi2`), the
float and fixed-point simulators (`float_graph`, `fxp`, `fxp_spikes`), and counting (`counters`,
`neurobench`). Export, simulate and report build on it; it imports none of them."""
