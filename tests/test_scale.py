"""Beyond one batch, one process: loader probes, torch.distributed (gloo,
two real processes), and "top" without the second pass, each checked
against the plain in-memory, one-process result."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tensorboard_rnn_units as rnn_units

HERE = os.path.dirname(os.path.abspath(__file__))


class CountingLoader:
    """A re-iterable loader of ``(sequences, labels)`` batches that counts how often it is read."""

    def __init__(self, x, labels, batch_size):
        self.loader = DataLoader(TensorDataset(x, labels), batch_size=batch_size)
        self.reads = 0

    def __iter__(self):
        self.reads += 1
        return iter(self.loader)


def _assert_same(a, b, atol=1e-10, exact_keys=True):
    """Equal features; ``exact_keys``: the same exemplar windows too (not across devices, where
    windows whose signals differ by rounding may swap places)."""
    for name in a.weightings:
        for field in ("average", "rollout", "active_fraction", "effective_sample_size", "position_share",
                      "class_weight", "exemplar_signal"):
            torch.testing.assert_close(getattr(a[name], field), getattr(b[name], field), atol=atol, rtol=1e-7,
                                       msg=lambda m: f"{name}/{field}: {m}")
        if exact_keys:
            assert torch.equal(a[name].exemplar_sequence, b[name].exemplar_sequence)
            assert torch.equal(a[name].exemplar_end, b[name].exemplar_end)
    torch.testing.assert_close(a.signal_mean, b.signal_mean)
    torch.testing.assert_close(a.mean_window, b.mean_window)
    torch.testing.assert_close(a.class_counts, b.class_counts)


@pytest.mark.parametrize("context", ["prefix", "window"])
@pytest.mark.parametrize("weighting", ["relu", "top", ("top", "relu", "bottom")])
def test_a_loader_probe_equals_the_tensor_probe_reading_it_once_or_twice(context, weighting):
    torch.manual_seed(0)
    lstm, head = nn.LSTM(3, 9, batch_first=True).double(), nn.Linear(9, 3).double()
    x = torch.rand(50, 11, 3, dtype=torch.float64)
    labels = torch.arange(50) % 3
    loader = CountingLoader(x, labels, batch_size=7)
    streamed = rnn_units.Probe(loader, window=4, sample_size=600)
    assert loader.reads == 1  # the Probe reads it once to check and hash it
    options = dict(readout=head, rollout=2, weighting=weighting, context=context, batch_size=64)
    from_loader = rnn_units.compute_unit_features(lstm, streamed, **options)
    # relu reads the loader once more; top and bottom need their thresholds first: twice.
    assert loader.reads == 1 + (1 if weighting == "relu" else 2)
    in_memory = rnn_units.compute_unit_features(lstm, rnn_units.Probe(x, window=4, labels=labels, sample_size=600),
                                                **options)
    _assert_same(from_loader, in_memory)
    torch.testing.assert_close(from_loader.mean_rollout, in_memory.mean_rollout)


@pytest.mark.parametrize("embed", [False, True])
def test_a_token_loader_probe_equals_the_token_tensor_probe(embed):
    """Streamed tokens are tokens too: averaged by index, rolled out with argmax feedback by default,
    and (with embed=) checked against the embedding's width, not the vocabulary's."""
    torch.manual_seed(0)
    vocab = list("abcdef")
    tokens = torch.randint(len(vocab), (40, 9))
    embedding = nn.Embedding(len(vocab), 4) if embed else None
    gru = nn.GRU(4 if embed else len(vocab), 5, batch_first=True)
    head = nn.Linear(5, len(vocab))
    options = dict(readout=head, rollout=3, weighting=("top", "relu", "bottom"))
    probe = lambda data: rnn_units.Probe(data, window=3, vocab=vocab, embed=embedding, sample_size=600)
    streamed = rnn_units.compute_unit_features(gru, probe(DataLoader(TensorDataset(tokens), batch_size=6)), **options)
    in_memory = rnn_units.compute_unit_features(gru, probe(tokens), **options)
    _assert_same(streamed, in_memory, atol=1e-6, exact_keys=False)  # windows of equal tokens tie
    torch.testing.assert_close(streamed.mean_rollout, in_memory.mean_rollout)


def test_a_loader_that_changes_its_data_is_refused():
    x = torch.rand(20, 6, 2)
    shuffled = DataLoader(TensorDataset(x), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    probe = rnn_units.Probe(shuffled, window=2)
    with pytest.raises(ValueError, match=r"probe: its loader yielded other data in batch 0 .*\(no shuffle=True\)"):
        rnn_units.compute_unit_features(nn.GRU(2, 3), probe)
    with pytest.raises(ValueError, match=r"sequences: an iterator can be read only once"):
        rnn_units.Probe(iter([x]), window=2)
    with pytest.raises(ValueError, match=r"labels: not with a loader probe \(yield \(sequences, labels\) pairs\)"):
        rnn_units.Probe(DataLoader(TensorDataset(x), batch_size=4), window=2, labels=torch.zeros(20, dtype=int))
    with pytest.raises(ValueError, match=r"loader batch 1 has T=5, D=2; earlier batches had T=6, D=2"):
        rnn_units.Probe(_Batches([x[:3], x[3:, :5]]), window=2)


class _Batches:
    """A re-iterable list of batches (a list itself would be taken for the data)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def test_top_alone_rolls_out_only_the_weighted_windows_with_the_same_results():
    torch.manual_seed(2)
    rnn = nn.RNN(4, 20, batch_first=True).double()
    calls = []

    def readout(h):
        calls.append(h.shape[0])
        return head(h)

    head = nn.Linear(20, 4).double()
    probe = rnn_units.Probe(torch.rand(300, 12, 4, dtype=torch.float64), window=3, sample_size=100)
    both = rnn_units.compute_unit_features(rnn, probe, readout=readout, rollout=3, weighting=("top", "relu"),
                                           model=head)
    rolled_all = sum(calls)
    calls.clear()
    top = rnn_units.compute_unit_features(rnn, probe, readout=readout, rollout=3, weighting="top", model=head)
    assert sum(calls) < 0.8 * rolled_all  # 2% of 3,000 windows per unit, 20 units: far from all
    for field in ("average", "rollout", "effective_sample_size", "exemplar_signal"):
        torch.testing.assert_close(getattr(top["top"], field), getattr(both["top"], field))
    # Its mean rollout is the activation sample's, an unbiased estimate of all windows'.
    assert (top.mean_rollout - both.mean_rollout).abs().max() < 0.1


def test_two_gloo_processes_equal_one_and_split_the_work(tmp_path):
    init_file = tmp_path / "init"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    workers = [
        subprocess.Popen([sys.executable, os.path.join(HERE, "distributed_worker.py"), str(rank), "2",
                          str(init_file), str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True)
        for rank in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    ranks = [np.load(tmp_path / f"rank{rank}.npz") for rank in range(2)]

    sys.path.insert(0, HERE)
    try:
        import distributed_worker
    finally:
        sys.path.remove(HERE)
    rnn, head, probe = distributed_worker.model_and_probe()
    counting = distributed_worker.Counting(rnn)
    single = rnn_units.compute_unit_features(counting, probe, readout=head, rollout=3,
                                             weighting=("top", "relu", "bottom"), batch_size=45)
    expected = {"signal_mean": single.signal_mean, "mean_rollout": single.mean_rollout,
                "sample": single.activation_sample}
    for name in single.weightings:
        for field in ("average", "rollout", "effective_sample_size", "class_weight", "exemplar_sequence",
                      "exemplar_end", "exemplar_signal", "position_share"):
            expected[f"{name}/{field}"] = getattr(single[name], field)
    for arrays in ranks:  # every rank gets the whole answer
        for key, value in expected.items():
            np.testing.assert_allclose(arrays[key], value.numpy(), atol=1e-5, err_msg=key)
    # Each rank ran about half the sequences' steps: no prefix pass is repeated.
    rows = [int(arrays["rows"]) for arrays in ranks]
    assert sum(rows) == counting.rows and min(rows) >= 0.4 * counting.rows, rows
    for arrays in ranks:
        assert str(arrays["refused"]).startswith("background: not under torch.distributed")
    # Only rank 0 writes.
    assert (tmp_path / "rank0" / "plugins" / "rnn_units").is_dir()
    assert not (tmp_path / "rank1" / "plugins").exists()


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
])
def test_default_batches_are_8192_windows_on_a_cpu_and_256_MB_of_window_tensors_on_a_gpu(device):
    """On a GPU a small layer's batches of 8,192 windows leave it waiting on kernel launches: by
    default a GPU batch holds about 256 MB of each window's state, signal, inputs and rollout
    predictions (74,731 MNIST windows of 169 units at L = R = 10), a CPU's 8,192."""
    import distributed_worker
    from tensorboard_rnn_units.cells import as_step_model
    from tensorboard_rnn_units.features import _default_batch

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    mnist = rnn_units.Probe(torch.rand(2, 28, 28), window=10)
    rnn = as_step_model(nn.RNN(28, 169))
    assert _default_batch(rnn, mnist, 10, cpu) == 8192
    assert _default_batch(rnn, mnist, 10, cuda) == 256 * 2**20 // (4 * (169 + 169 + 20 * 28)) == 74_731
    assert _default_batch(as_step_model(nn.RNN(28, 4096)), mnist, 10, cuda) == 8192  # never fewer
    text = rnn_units.Probe(torch.zeros(2, 28, dtype=torch.int64), window=10, vocab=[str(i) for i in range(10_000)])
    assert _default_batch(as_step_model(nn.GRU(10_000, 256)), text, 10, cuda) == 8192  # large predictions
    model = distributed_worker.Counting(nn.RNN(4, 169, batch_first=True).to(device))
    probe = rnn_units.Probe(torch.rand(3000, 14, 4, generator=torch.Generator().manual_seed(0)), window=5)
    rnn_units.compute_unit_features(model, probe, weighting="relu")  # 30,000 windows, 10 a sequence
    groups = [n for n in model.starts if n > 1]  # one zero state per group of whole sequences
    assert sum(groups) == 3000 and len(groups) == (4 if device == "cpu" else 1)  # 30,000 / 8,192 windows: 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["rnn", "lstm_tokens", "gru_loader", "gru"])
def test_cuda_equals_the_cpu(kind):
    """Everything stays on the model's device and agrees with the CPU within 1e-5 (a one-layer
    GRU on a tensor probe: "top" derives the states it rolls out from the kept signals)."""
    torch.manual_seed(7)
    if kind == "rnn":
        model, head = nn.RNN(6, 32, num_layers=2, batch_first=True), nn.Linear(32, 6)
        make_probe = lambda: rnn_units.Probe(torch.rand(64, 15, 6, generator=torch.Generator().manual_seed(0)),
                                             window=5, labels=torch.arange(64) % 4)
    elif kind == "lstm_tokens":
        embed, model, head = nn.Embedding(9, 5), nn.LSTM(5, 32, batch_first=True), nn.Linear(32, 9)
        tokens = torch.randint(0, 9, (64, 15), generator=torch.Generator().manual_seed(0))
        make_probe = lambda: rnn_units.Probe(tokens, window=5, vocab=list("abcdefghi"), embed=embed,
                                             annotations={"is_a": tokens == 0})
    else:
        model, head = nn.GRU(6, 32, batch_first=True), nn.Linear(32, 6)
        x = torch.rand(64, 15, 6, generator=torch.Generator().manual_seed(0))
        make_probe = lambda: rnn_units.Probe(_Batches(list(x.split(10))) if kind == "gru_loader" else x, window=5)
    options = dict(readout=head, rollout=4, weighting=("top", "relu", "bottom"))
    cpu = rnn_units.compute_unit_features(model, make_probe(), **options)
    model.cuda(), head.cuda()
    if kind == "lstm_tokens":
        embed.cuda()
    cuda = rnn_units.compute_unit_features(model, make_probe(), **options)
    _assert_same(cpu, cuda, atol=1e-5, exact_keys=False)
    for name, values in cpu.annotation_correlation.items():
        torch.testing.assert_close(values, cuda.annotation_correlation[name], atol=1e-5, rtol=0)
    torch.testing.assert_close(cpu.activation_sample, cuda.activation_sample, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_background_logging_from_a_side_stream_measures_the_model_at_the_call(tmp_path):
    """The copy is queued on the training thread's stream (here a busy side stream): the
    worker waits for it on the GPU before reading, and later training does not reach it."""
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(3)
    rnn, head = nn.GRU(6, 256, batch_first=True).cuda(), nn.Linear(256, 6).cuda()
    probe = rnn_units.Probe(torch.rand(200, 30, 6, generator=torch.Generator().manual_seed(0)), window=5)
    expected = rnn_units.compute_unit_features(rnn, probe, readout=head, rollout=3)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with SummaryWriter(tmp_path / "run") as writer, torch.cuda.stream(stream):
        torch.cuda._sleep(200_000_000)  # the side stream is busy: the copies queue behind this
        future = rnn_units.add_rnn_units(writer, "u", rnn, probe, readout=head, rollout=3, global_step=0,
                                         background=True)
        with torch.no_grad():  # training goes on, on the same stream
            for p in rnn.parameters():
                p.mul_(-1)
        got = future.result()
    for name in ("top", "relu"):
        torch.testing.assert_close(got[name].average, expected[name].average, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[name].rollout, expected[name].rollout, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, signal", [("rnn_tanh", "preactivation"), ("rnn_relu", "preactivation"),
                                          ("rnn_tanh", "hidden"), ("gru", "hidden"), ("lstm", "hidden"),
                                          ("rnn_2_layers", "preactivation")])
def test_top_keeps_only_signals_where_they_determine_the_state_with_the_same_results(kind, signal, monkeypatch):
    """A one-layer RNN's or GRU's state is a function of its signal: "top" then keeps the
    first pass's signals alone (half the memory) and derives the states it rolls out from
    them, bit for bit what it gets from kept states. An LSTM's cell state or lower layers'
    states are not determined: those are kept."""
    from tensorboard_rnn_units import cells, windows

    torch.manual_seed(4)
    modules = {"rnn_tanh": lambda: nn.RNN(3, 12, batch_first=True),
               "rnn_relu": lambda: nn.RNN(3, 12, nonlinearity="relu", batch_first=True),
               "gru": lambda: nn.GRU(3, 12, batch_first=True), "lstm": lambda: nn.LSTM(3, 12, batch_first=True),
               "rnn_2_layers": lambda: nn.RNN(3, 12, num_layers=2, batch_first=True)}
    rnn, head = modules[kind](), nn.Linear(12, 3)
    probe = rnn_units.Probe(torch.rand(200, 10, 3, generator=torch.Generator().manual_seed(0)), window=4)
    run = lambda: rnn_units.compute_unit_features(rnn, probe, readout=head, rollout=3, signal=signal,
                                                  weighting="top", top_fraction=0.05)
    asked = []
    batches = windows.WindowWalker.batches
    monkeypatch.setattr(windows.WindowWalker, "batches",
                        lambda self, with_state: asked.append(with_state) or batches(self, with_state))
    derived = run()
    determined = kind in ("rnn_tanh", "rnn_relu", "gru")
    assert asked == [True, not determined]  # the main pass (never read: the first pass is kept), the first
    monkeypatch.setattr(cells.TorchRecurrent, "state_from_signal", lambda self, signal: None)
    kept = run()
    for field in ("average", "rollout", "effective_sample_size", "exemplar_signal"):
        assert torch.equal(getattr(derived["top"], field), getattr(kept["top"], field)), field
