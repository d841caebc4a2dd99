"""NIR in: what Loihi/neurodistill cannot express is refused through the CLI, one `error:` line,
exit 2, nothing written. The graphs come from the frameworks' own exporters where one writes
such a graph (snnTorch, Norse, sinabs); delays and a flat recurrent edge are built with NIR's
own classes (no exporter here writes them)."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from .test_nir_in_common import digits, invoke, reset_args


def _refused(path, producer, tmp_path, *words, extra=(), reset=True):
    out = tmp_path / "bundle"
    given = reset_args(producer) if reset and "--source-reset" not in extra else ()
    res = invoke("export", path, "--from", producer, "--timesteps", 4, "--out", out, *given, *extra)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    for w in words:
        assert w in res.output, res.output
    assert not out.exists() and not list(tmp_path.glob(".bundle.*"))
    return res.output


def test_per_neuron_tau_that_differs_is_refused(tmp_path):
    from .test_nir_in_snntorch import leaky_net, write

    beta = torch.full((4, 8, 8), 0.8)
    beta[0, 0, 0] = 0.7
    path = write(leaky_net(beta=beta), tmp_path / "g.nir")
    _refused(path, "snntorch", tmp_path, "'1' (LIF)", "tau differs between neurons", "one value per layer")


def test_a_recurrent_snntorch_layer_is_refused(tmp_path):
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16),
                              snn.RLeaky(beta=0.8, linear_features=16, init_hidden=True, reset_mechanism="zero"),
                              torch.nn.Linear(16, 10))
    nir.write(tmp_path / "g.nir", export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0]))
    # nirtorch flattens snnTorch's RLeaky subgraph into the graph: its w_rec edge closes a cycle
    _refused(tmp_path / "g.nir", "snntorch", tmp_path, "'2.w_rec' -> '2.lif' closes a cycle", "feed-forward")


def test_a_flat_recurrent_edge_is_refused(tmp_path):
    lif = dict(tau=np.full(4, 2.0), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4), v_reset=np.zeros(4))
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "fc": nir.Affine(np.ones((4, 3)), np.zeros(4)),
                            "lif": nir.LIF(**lif), "rec": nir.Linear(np.eye(4)),
                            "out": nir.Affine(np.ones((2, 4)), np.zeros(2)), "output": nir.Output(np.array([2]))},
                     edges=[("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out"),
                            ("out", "output")])
    nir.write(tmp_path / "g.nir", g)
    _refused(tmp_path / "g.nir", "spikingjelly", tmp_path, "closes a cycle", "feed-forward")


def test_a_synaptic_current_time_constant_into_the_encoding_layer_is_refused(tmp_path):
    # a decaying current is read (tests/test_cuba.py), but the population fed by the input gets it as a
    # bias into v on Loihi 2, which has no current to build up
    import norse.torch as norse
    from norse.torch.functional.lif import LIFParameters

    from .test_nir_in_norse import write

    p = LIFParameters(tau_syn_inv=torch.full((4, 8, 8), 200.0), tau_mem_inv=torch.full((4, 8, 8), 100.0),
                      v_leak=torch.zeros(4, 8, 8), v_th=torch.ones(4, 8, 8), v_reset=torch.zeros(4, 8, 8))
    net = norse.SequentialState(torch.nn.Conv2d(1, 4, 3, padding=1), norse.LIFCell(p), torch.nn.Conv2d(4, 10, 8))
    path = write(net, tmp_path / "g.nir")
    _refused(path, "norse", tmp_path, "'1' (CubaLIF)", "fed by the analog input", "allowed there: c_decay = 0")


def test_a_delay_is_refused(tmp_path):
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "d": nir.Delay(np.ones(3)),
                            "fc": nir.Affine(np.ones((2, 3)), np.zeros(2)), "output": nir.Output(np.array([2]))},
                     edges=[("input", "d"), ("d", "fc"), ("fc", "output")])
    nir.write(tmp_path / "g.nir", g)
    _refused(tmp_path / "g.nir", "spikingjelly", tmp_path, "'d' (Delay)", "synaptic delays", "allowed:")


def test_an_unsupported_node_type_is_refused(tmp_path):
    import sinabs.layers as sl
    from sinabs.nir import to_nir

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), sl.ExpLeak(tau_mem=torch.full((4, 8, 8), 4.0)),
                              torch.nn.Flatten(), torch.nn.Linear(256, 10))
    g = to_nir(net, torch.zeros(1, 1, 8, 8))
    g.infer_types()
    nir.write(tmp_path / "g.nir", g)
    _refused(tmp_path / "g.nir", "sinabs", tmp_path, "(LI)", "not supported", "allowed: Input")


@pytest.mark.parametrize("producer", ["snntorch", "sinabs"])
def test_a_reset_the_file_does_not_record_must_be_named_and_subtract_is_refused(producer, tmp_path):
    from .test_nir_in_sinabs import lif_net
    from .test_nir_in_sinabs import write as write_sinabs
    from .test_nir_in_snntorch import leaky_net
    from .test_nir_in_snntorch import write as write_snntorch

    path = (write_snntorch(leaky_net(), tmp_path / "g.nir") if producer == "snntorch"
            else write_sinabs(lif_net(1), tmp_path / "g.nir"))
    _refused(path, producer, tmp_path, "does not record", "--source-reset zero|subtract", reset=False)
    _refused(path, producer, tmp_path, "--source-reset subtract", "Loihi 2", "allowed:",
             extra=("--source-reset", "subtract"))


def test_source_reset_is_refused_where_the_file_records_it(tmp_path):
    from spikingjelly.activation_based import layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    net = torch.nn.Sequential(layer.Conv2d(1, 4, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m"),
                              layer.Flatten(step_mode="m"), layer.Linear(256, 10, step_mode="m"))
    export_to_nir(net, torch.zeros(4, 1, 1, 8, 8), save_path=tmp_path / "g.nir")
    _refused(tmp_path / "g.nir", "spikingjelly", tmp_path, "records v_reset", extra=("--source-reset", "zero"))


def test_an_snntorch_synaptic_layer_with_reset_to_zero_is_refused(tmp_path):
    import snntorch as snn

    from .test_nir_in_snntorch import write

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1),
                              snn.Synaptic(alpha=torch.zeros(4, 8, 8), beta=torch.full((4, 8, 8), 0.5),
                                           threshold=torch.ones(4, 8, 8), init_hidden=True, reset_mechanism="zero"),
                              torch.nn.Flatten(), torch.nn.Linear(256, 10))
    path = write(net, tmp_path / "g.nir")
    _refused(path, "snntorch", tmp_path, "'1' (CubaLIF)", "Synaptic", "that step's input included",
             "allowed: Leaky")


def test_an_output_neuron_not_fed_by_a_classifier_is_refused(tmp_path):
    """A LIF after a classifier is a spike-count readout (tests/test_spike_readout.py); one after another LIF is not."""
    import snntorch as snn

    from .test_nir_in_snntorch import leaky_net, write

    net = leaky_net(output_neuron=True)
    net.append(snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10), init_hidden=True, reset_mechanism="zero",
                         output=True))
    net[4].output = False
    path = write(net, tmp_path / "g.nir")
    _refused(path, "snntorch", tmp_path, "'5' (LIF) feeds the Output", "final Affine, Linear or Conv2d",
             "fed by such a classifier")


def test_a_tau_below_dt_is_refused_with_the_dt_named(tmp_path):
    from .test_nir_in_snntorch import leaky_net, write

    path = write(leaky_net(), tmp_path / "g.nir")  # tau = 5e-4 s: read with dt = 1 ms it is < one step
    _refused(path, "snntorch", tmp_path, "tau > dt", "--source-dt", extra=("--source-dt", "1e-3"))


@pytest.mark.parametrize("what,arrays,words", [
    ("no y", {"x": np.zeros((4, 1, 8, 8), np.float32)}, ["missing y"]),
    ("wrong shape", {"x": np.zeros((4, 1, 6, 6), np.float32), "y": np.zeros(4, np.int64)}, ["(N, 1, 8, 8)"]),
    ("float labels", {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.zeros(4)}, ["integer labels"]),
])
def test_a_bad_calibration_file_is_one_error_line(what, arrays, words, tmp_path):
    from .test_nir_in_snntorch import leaky_net, write

    path = write(leaky_net(), tmp_path / "g.nir")
    np.savez(tmp_path / "calib.npz", **arrays)
    _refused(path, "snntorch", tmp_path, *words, extra=("--calib", tmp_path / "calib.npz"))


def test_calibration_on_given_data_and_a_shape_no_dataset_has(tmp_path):
    """--calib FILE.npz: the manifest's accuracies are on the file's samples (checked against
    spikingjelly's own run of the same network); a (1, 6, 6) graph without a file is refused."""
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    from .test_nir_in_common import spiking_weights

    net = torch.nn.Sequential(layer.Conv2d(1, 4, 3, padding=1, step_mode="m"),
                              neuron.LIFNode(tau=2.0, decay_input=False, step_mode="m"),
                              layer.Flatten(step_mode="m"), layer.Linear(144, 3, step_mode="m")).eval()
    spiking_weights(net[0], net[3], seed=5)
    export_to_nir(net, torch.zeros(4, 1, 1, 6, 6), save_path=tmp_path / "g.nir")
    x, _ = digits(40)
    x = x[:, :, 1:7, 1:7].contiguous()
    functional.reset_net(net)
    with torch.no_grad():
        pred = net(x.unsqueeze(0).expand(4, *x.shape).contiguous()).mean(0).argmax(-1)
    y = pred.clone()
    y[:10] = (y[:10] + 1) % 3  # 30 of 40 labels agree with the float network
    np.savez(tmp_path / "calib.npz", x=x.numpy(), y=y.numpy())
    _refused(tmp_path / "g.nir", "spikingjelly", tmp_path, "[1, 6, 6]", "--calib FILE.npz")
    res = invoke("export", tmp_path / "g.nir", "--from", "spikingjelly", "--timesteps", 4, "--calib",
                 tmp_path / "calib.npz", "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["accuracy_float"] == pytest.approx(0.75, abs=1e-12)
    assert m["calibration_samples"] == 40 and m["calibration_split"] == "given (calib.npz)"
    assert "dataset" not in m
