"""Beyond image rows: token and series probes, feedback, exemplars,
annotations, gate statistics and the "bottom" weighting, checked against
independent computations and through real logs and the plugin's routes."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import support
import tensorboard_rnn_units as rnn_units

ROUTES = "/data/plugin/rnn_units"
VOCAB = list("abcdq ")
TRIGGER = VOCAB.index("q")


def _tokens(n=40, t=14, seed=0):
    return torch.randint(0, len(VOCAB), (n, t), generator=torch.Generator().manual_seed(seed))


def _planted_rnn():
    """A 3-unit one-hot RNN whose unit 0 fires only when it has just read 'q'
    (the others are noise): the planted answer the displays must show."""
    torch.manual_seed(0)
    rnn = nn.RNN(len(VOCAB), 3, batch_first=True).double()
    with torch.no_grad():
        rnn.weight_hh_l0[0].zero_()
        rnn.bias_hh_l0[0] = 0.0
        rnn.weight_ih_l0[0] = -1.0
        rnn.weight_ih_l0[0, TRIGGER] = 2.0
        rnn.bias_ih_l0[0] = 0.0
    return rnn


def test_a_planted_unit_shows_its_trigger_as_its_top_token():
    probe = rnn_units.Probe(_tokens(), window=4, vocab=VOCAB)
    assert probe.display == "tokens" and probe.input_size == len(VOCAB)
    features = rnn_units.compute_unit_features(_planted_rnn(), probe, weighting=("top", "relu", "bottom"))
    for name in ("top", "relu"):
        average = features[name].average[0]  # (L, V): a distribution per position
        torch.testing.assert_close(average.sum(1), torch.ones(4, dtype=torch.float64))
        assert average[-1, TRIGGER] == pytest.approx(1.0)  # fires only right after 'q'
        tokens = _tokens()
        ends = features[name].exemplar_end[0]
        assert (tokens[features[name].exemplar_sequence[0], ends - 1] == TRIGGER).all()
    # Its negative tail is every window not ending in 'q'.
    assert features["bottom"].average[0][-1, TRIGGER] == 0.0
    assert (features["bottom"].exemplar_signal[0] <= features["top"].exemplar_signal[0].min()).all()


@pytest.mark.parametrize("feedback", ["argmax", "sample"])
def test_integer_tokens_with_embed_equal_the_one_hot_model(feedback):
    """Averages over one-hot tokens and softmax rollouts equal those of the
    equivalent one-hot model, however tokens reach the RNN."""
    torch.manual_seed(1)
    embed = nn.Embedding(len(VOCAB), 5).double()
    lstm = nn.LSTM(5, 7, batch_first=True).double()
    head = nn.Linear(7, len(VOCAB)).double()
    one_hot_lstm = nn.LSTM(len(VOCAB), 7, batch_first=True).double()
    with torch.no_grad():
        for name in ("weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(one_hot_lstm, name).copy_(getattr(lstm, name))
        one_hot_lstm.weight_ih_l0.copy_(lstm.weight_ih_l0 @ embed.weight.T)
    tokens = _tokens(seed=2)
    options = dict(readout=head, rollout=3, feedback=feedback, weighting=("top", "relu", "bottom"))
    embedded = rnn_units.compute_unit_features(
        lstm, rnn_units.Probe(tokens, window=3, vocab=VOCAB, embed=embed), **options
    )
    one_hot = rnn_units.compute_unit_features(
        one_hot_lstm, rnn_units.Probe(nn.functional.one_hot(tokens, len(VOCAB)).double(), window=3, vocab=VOCAB),
        **options,
    )
    for name in ("top", "relu", "bottom"):
        torch.testing.assert_close(embedded[name].average, one_hot[name].average)
        torch.testing.assert_close(embedded[name].rollout, one_hot[name].rollout)
        torch.testing.assert_close(embedded[name].rollout.sum(-1), torch.ones(7, 3, dtype=torch.float64))
    torch.testing.assert_close(embedded.mean_window.sum(1), torch.ones(3, dtype=torch.float64))


def test_argmax_feedback_feeds_the_most_likely_token():
    """An independent loop: each rollout step reads one_hot(argmax(readout))."""
    rnn = _planted_rnn()
    head = nn.Linear(3, len(VOCAB)).double()
    tokens = _tokens(n=3, t=6)
    probe = rnn_units.Probe(tokens, window=2, vocab=VOCAB, max_windows=5, seed=3)
    features = rnn_units.compute_unit_features(rnn, probe, readout=head, rollout=3, weighting="relu")
    x = nn.functional.one_hot(tokens, len(VOCAB)).double()
    rollouts = []
    with torch.no_grad():
        for n, p in zip(probe.window_sequence.tolist(), probe.window_position.tolist()):
            _, h = rnn(x[n : n + 1, : p + 2])
            steps = []
            for _ in range(3):
                y = head(h[-1])
                steps.append(torch.softmax(y, 1)[0])
                _, h = rnn(nn.functional.one_hot(y.argmax(1), len(VOCAB)).double()[:, None], h)
            rollouts.append(torch.stack(steps))
    torch.testing.assert_close(features.mean_rollout, torch.stack(rollouts).mean(0))


def test_sampled_feedback_is_seeded_and_as_is_cannot_feed_an_embedding():
    probe = rnn_units.Probe(_tokens(), window=3, vocab=VOCAB, embed=nn.Embedding(len(VOCAB), 4))
    gru, head = nn.GRU(4, 5, batch_first=True), nn.Linear(5, len(VOCAB))
    first, second = (rnn_units.compute_unit_features(gru, probe, readout=head, rollout=4, feedback="sample")
                     for _ in range(2))
    torch.testing.assert_close(first["top"].rollout, second["top"].rollout)
    with pytest.raises(ValueError, match=r"feedback: 'as_is' feeds the readout's scores back, which embed="):
        rnn_units.compute_unit_features(gru, probe, readout=head, rollout=2, feedback="as_is")
    with pytest.raises(ValueError, match=r"feedback: expected one of \('as_is', 'argmax', 'sample'\)"):
        rnn_units.compute_unit_features(gru, probe, readout=head, rollout=2, feedback="greedy")
    with pytest.raises(ValueError, match=r"readout: expected a floating tensor of shape \(B, V\)=\(\d+, 6\) scores"):
        rnn_units.compute_unit_features(gru, probe, readout=nn.Linear(5, 4), rollout=2)
    with pytest.raises(ValueError, match=r"probe: its embed maps 40 tokens to \(40, 4\), expected \(B, E\) floats with E = the rnn.s input_size 3"):
        rnn_units.compute_unit_features(nn.GRU(3, 5), probe)


def test_annotation_correlation_is_pearson_at_the_windows_last_step():
    tokens = _tokens(seed=4)
    in_q = (tokens == TRIGGER).float()
    column = torch.arange(tokens.shape[1]).expand_as(tokens)
    probe = rnn_units.Probe(tokens, window=3, vocab=VOCAB, annotations={"is_q": in_q, "column": column,
                                                                          "constant": torch.ones_like(in_q)})
    rnn = _planted_rnn()
    features = rnn_units.compute_unit_features(rnn, probe, signal="hidden")
    x = nn.functional.one_hot(tokens, len(VOCAB)).double()
    with torch.no_grad():
        hidden, _ = rnn(x)  # (N, T, H): the signal at every position
    ends = probe.window_sequence, probe.window_position + 2
    signals = hidden[ends].numpy()
    for name, values in (("is_q", in_q), ("column", column.float())):
        a = values[ends].numpy()
        expected = [np.corrcoef(signals[:, u], a)[0, 1] for u in range(3)]
        np.testing.assert_allclose(features.annotation_correlation[name].numpy(), expected, atol=1e-9)
    assert features.annotation_correlation["is_q"][0] == pytest.approx(1.0)  # the planted unit tracks 'q'
    assert (features.annotation_correlation["constant"] == 0).all()  # undefined: 0, never NaN


def test_gate_saturation_and_time_constant_match_torchs_own_lstm():
    torch.manual_seed(5)
    lstm = nn.LSTM(3, 4, batch_first=True).double()
    x = torch.randn(6, 9, 3, dtype=torch.float64) * 3
    probe = rnn_units.Probe(x, window=2)
    features = rnn_units.compute_unit_features(lstm, probe)
    # Gates at each window's last step, from torch's LSTM states: i, f, g, o of the last input.
    i_all, f_all, o_all = [], [], []
    with torch.no_grad():
        for n, p in zip(probe.window_sequence.tolist(), probe.window_position.tolist()):
            e = p + 2
            if e > 1:
                _, (h, c) = lstm(x[n : n + 1, : e - 1])
                h, c = h[0, 0], c[0, 0]
            else:
                h = c = torch.zeros(4, dtype=torch.float64)
            pre = lstm.weight_ih_l0 @ x[n, e - 1] + lstm.bias_ih_l0 + lstm.weight_hh_l0 @ h + lstm.bias_hh_l0
            i, f, _, o = torch.sigmoid(pre).chunk(4)
            i_all.append(i), f_all.append(f), o_all.append(o)
    assert list(features.gate_saturation) == ["input", "forget", "output"]
    for name, gates in (("input", i_all), ("forget", f_all), ("output", o_all)):
        g = torch.stack(gates)
        torch.testing.assert_close(features.gate_saturation[name], ((g < 0.1) | (g > 0.9)).double().mean(0))
    torch.testing.assert_close(features.time_constant, -1 / torch.log(torch.stack(f_all).mean(0)))
    plain = rnn_units.compute_unit_features(nn.RNN(3, 4).double(), probe)
    assert plain.gate_saturation is None and plain.time_constant is None


def test_bottom_is_the_mirror_of_top():
    """"bottom" of a model equals "top" of the model with negated signals (a negated readout-free RNN
    pre-activation), window for window."""
    torch.manual_seed(6)
    rnn = nn.RNN(2, 5, batch_first=True).double()
    negated = nn.RNN(2, 5, batch_first=True).double()
    with torch.no_grad():
        for name, value in rnn.named_parameters():
            getattr(negated, name).copy_(-value if "ih" in name or "bias" in name else value)
        negated.weight_hh_l0.zero_(), rnn.weight_hh_l0.zero_()  # no recurrence: pre-activations negate exactly
    probe = rnn_units.Probe(torch.randn(8, 7, 2, dtype=torch.float64), window=2)
    bottom = rnn_units.compute_unit_features(rnn, probe, weighting="bottom", top_fraction=0.1)["bottom"]
    top = rnn_units.compute_unit_features(negated, probe, weighting="top", top_fraction=0.1)["top"]
    torch.testing.assert_close(bottom.average, top.average)
    torch.testing.assert_close(bottom.effective_sample_size, top.effective_sample_size)
    torch.testing.assert_close(bottom.exemplar_signal, -top.exemplar_signal)
    assert torch.equal(bottom.exemplar_sequence, top.exemplar_sequence)


def test_series_probe_names_its_channels_and_is_drawn_as_series(tmp_path):
    probe = rnn_units.Probe(torch.randn(4, 12, 2), window=5, channel_names=["speed", "load"])
    assert probe.display == "series"
    with SummaryWriter(tmp_path) as writer:
        rnn_units.add_rnn_units(writer, "u", nn.GRU(2, 3), probe, global_step=0, readout=nn.Linear(3, 2), rollout=2)
    client = support.python_loader_client(tmp_path)
    description = json.loads(client.get(f"{ROUTES}/tags").get_data())["."]["u"]
    assert description["display"] == "series" and description["channel_names"] == ["speed", "load"]
    assert description["gate_names"] == ["reset", "update"] and description["vocab"] is None


def _log_tokens(run_dir, inline):
    tokens = _tokens()
    probe = rnn_units.Probe(tokens, window=4, vocab=VOCAB, annotations={"is_q": tokens == TRIGGER})
    features = rnn_units.compute_unit_features(_planted_rnn(), probe, weighting=("top", "relu", "bottom"))
    with SummaryWriter(run_dir) as writer:
        if inline:
            writer._get_file_writer().add_summary(rnn_units.rnn_units_pb("u", features), 3)
        else:
            rnn_units.add_unit_features(writer, "u", features, global_step=3)
    return tokens, features


@pytest.mark.parametrize("inline", [False, True], ids=["file", "inline"])
def test_exemplars_route_serves_each_window_in_its_sequence(tmp_path, inline):
    tokens, features = _log_tokens(tmp_path / "run", inline)
    client = support.python_loader_client(tmp_path)
    description = json.loads(client.get(f"{ROUTES}/tags").get_data())["run"]["u"]
    assert description["vocab"] == VOCAB and description["annotation_names"] == ["is_q"]
    for weighting in ("top", "bottom"):
        response = client.get(f"{ROUTES}/exemplars?run=run&tag=u&step=3&unit=0&weighting={weighting}")
        assert response.status_code == 200, response.get_data()
        answer = json.loads(response.get_data())
        assert answer["display"] == "tokens" and answer["window"] == 4 and answer["weighting"] == weighting
        assert len(answer["exemplars"]) == 8
        for exemplar, n, e, s in zip(answer["exemplars"], features[weighting].exemplar_sequence[0].tolist(),
                                     features[weighting].exemplar_end[0].tolist(),
                                     features[weighting].exemplar_signal[0].tolist()):
            assert (exemplar["sequence"], exemplar["end"], exemplar["start"]) == (n, e, e - 4)
            assert exemplar["signal"] == pytest.approx(s, rel=1e-6)
            assert exemplar["tokens"] == tokens[n].tolist()
            last = exemplar["tokens"][exemplar["end"] - 1]
            assert (last == TRIGGER) == (weighting == "top")


def test_exemplars_of_image_rows_are_the_probe_sequences(tmp_path):
    x = torch.rand(5, 6, 3)
    probe = rnn_units.Probe(x, window=2)
    with SummaryWriter(tmp_path / "run") as writer:
        features = rnn_units.add_rnn_units(writer, "u", nn.RNN(3, 4), probe, global_step=0)
    client = support.python_loader_client(tmp_path)
    answer = json.loads(client.get(f"{ROUTES}/exemplars?run=run&tag=u&step=0&unit=2").get_data())
    assert answer["weighting"] == "top" and answer["display"] == "image_rows"
    for exemplar, n in zip(answer["exemplars"], features["top"].exemplar_sequence[2].tolist()):
        np.testing.assert_allclose(exemplar["values"], x[n].numpy(), atol=1e-3)  # float16 on disk


def test_exemplars_route_errors_name_what_is_wrong(tmp_path, logdir):
    _log_tokens(tmp_path / "run", inline=False)
    client = support.python_loader_client(tmp_path)
    cases = {
        "weighting=median&unit=0&step=3": (400, "'weighting' must be one of"),
        "weighting=top&unit=9&step=3": (404, "unit 9 out of range"),
        "weighting=top&unit=0&step=4": (404, "no step 4"),
    }
    for query, (status, message) in cases.items():
        response = client.get(f"{ROUTES}/exemplars?run=run&tag=u&{query}")
        assert response.status_code == status and message in response.get_data(as_text=True), query
    # A log from before exemplars existed (the format-v1 fixture) says so.
    old = support.python_loader_client(logdir.path)
    response = old.get(f"{ROUTES}/exemplars?run=v1&tag={support.TAG}&step=0&unit=0")
    assert response.status_code == 404 and "exemplars" in response.get_data(as_text=True)


def test_a_missing_or_short_probe_file_is_a_404_naming_the_step(tmp_path):
    _log_tokens(tmp_path / "run", inline=False)
    [probe_file] = (tmp_path / "run" / "plugins" / "rnn_units").glob("probe-*.rnnu")
    probe_file.write_bytes(probe_file.read_bytes()[:8])  # shorter than any one sequence
    client = support.python_loader_client(tmp_path)
    query = f"{ROUTES}/exemplars?run=run&tag=u&step=3&unit=0"
    response = client.get(query)
    assert response.status_code == 404
    assert "step 3 of run 'run', tag 'u' is unreadable: a probe sequence has" in response.get_data(as_text=True)
    probe_file.unlink()
    response = support.python_loader_client(tmp_path).get(query)
    assert response.status_code == 404 and "its probe file" in response.get_data(as_text=True)


class _Echo:
    """A StepModel whose state is the token it was fed (one-hot)."""

    input_size = hidden_size = len(VOCAB)
    signals = ("hidden",)

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size, len(VOCAB)),)

    def step(self, x, state, signal):
        return (x,), x

    def readout_input(self, state):
        return state[0]


def test_sampled_feedback_draws_tokens_with_the_readouts_probabilities():
    """The first prediction is fixed probabilities p; the second echoes the token drawn from them:
    over thousands of windows its mean is p."""
    p = torch.tensor([0.05, 0.1, 0.15, 0.2, 0.2, 0.3])
    calls = [0]

    def readout(h):  # odd calls: p's logits; even calls: the fed token, sharply
        calls[0] += 1
        return p.log().expand(len(h), -1) if calls[0] % 2 else 50 * h

    probe = rnn_units.Probe(_tokens(n=600), window=3, vocab=VOCAB)
    features = rnn_units.compute_unit_features(_Echo(), probe, readout=readout, rollout=2, feedback="sample")
    torch.testing.assert_close(features.mean_rollout[0], p.double(), rtol=0, atol=1e-6)
    drawn = features.mean_rollout[1]
    assert (drawn - p).abs().max() < 4 * (p * (1 - p) / features.num_windows).sqrt().max(), (drawn, p)


def test_sampled_feedback_is_the_same_in_cpu_slices(monkeypatch):
    from tensorboard_rnn_units import features as features_module

    probe = rnn_units.Probe(_tokens(n=200), window=3, vocab=VOCAB, embed=nn.Embedding(len(VOCAB), 4))
    gru, head = nn.GRU(4, 5, batch_first=True), nn.Linear(5, len(VOCAB))
    run = lambda: rnn_units.compute_unit_features(gru, probe, readout=head, rollout=4, feedback="sample")
    whole = run()
    monkeypatch.setattr(features_module, "CPU_SLICE_MIN_ROWS", 7)
    monkeypatch.setattr(features_module, "CPU_SLICE_BYTES", 1)
    sliced = run()
    for name in ("top", "relu"):  # float32 products round differently over fewer rows; the draws are the same
        torch.testing.assert_close(sliced[name].rollout, whole[name].rollout, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sliced.mean_rollout, whole.mean_rollout, rtol=1e-5, atol=1e-6)


def test_sparse_weighted_token_rollouts_equal_dense_ones(monkeypatch):
    """Token averages add by index; their rollouts (softmax over the vocab) go through the sparse product."""
    torch.manual_seed(0)
    probe = rnn_units.Probe(_tokens(n=200), window=3, vocab=VOCAB, embed=nn.Embedding(len(VOCAB), 4))
    gru, head = nn.GRU(4, 5, batch_first=True), nn.Linear(5, len(VOCAB))
    run = lambda: rnn_units.compute_unit_features(gru, probe, readout=head, rollout=4, weighting=("top", "bottom"))
    dense, sparse = support.dense_and_sparse(run, monkeypatch)
    for name in ("top", "bottom"):
        torch.testing.assert_close(sparse[name].average, dense[name].average, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(sparse[name].rollout, dense[name].rollout, rtol=1e-5, atol=1e-7)
