"""Comparing units across steps and runs: known answers of the math, then the routes
over real event files (Python loader inside TensorBoard's WSGI app)."""

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import support
import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import analysis

ROUTES = "/data/plugin/rnn_units"
UNITS = 8
STEPS = [0, 10, 20, 30]


# --- analysis: known answers ---------------------------------------------------------------------


def test_identical_steps_give_zero_change_and_cka_one():
    sample = np.random.default_rng(0).normal(size=(12, 40))
    np.testing.assert_allclose(analysis.change(sample, sample), 0, atol=1e-12)
    assert analysis.linear_cka(sample, sample) == pytest.approx(1)
    flipped = analysis.change(sample, -sample)
    np.testing.assert_allclose(flipped, 2)


def test_cka_ignores_permuting_and_scaling_units():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 50)), rng.normal(size=(7, 50))
    base = analysis.linear_cka(a, b)
    assert 0 < base < 1
    assert analysis.linear_cka(a[rng.permutation(10)] * 3.5, b) == pytest.approx(base)
    assert analysis.linear_cka(a, b[::-1] * 0.01) == pytest.approx(base)


def test_constant_units_count_as_unchanged_only_when_equal():
    a = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0], [2.0, 2.0, 2.0]])
    b = np.array([[1.0, 1.0, 1.0], [3.0, 3.0, 3.0], [5.0, 5.0, 5.0]])
    np.testing.assert_allclose(analysis.change(a, b), [0, 1, 1])


def test_match_finds_a_permutation_and_leaves_extra_units_out():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 30))
    permutation = rng.permutation(6)
    assignment, similarity = analysis.match(a, a[permutation])
    np.testing.assert_array_equal(permutation[assignment], np.arange(6))
    np.testing.assert_allclose(similarity, 1)
    assignment, similarity = analysis.match(a, a[:4])  # the larger layer's extra units: -1
    assert sorted(assignment.tolist()) == [-1, -1, 0, 1, 2, 3]
    assert np.isnan(similarity[assignment < 0]).all()


def test_settled_is_the_step_after_the_last_large_change():
    changes = np.array([[0.5, 0.05, 0.3], [0.2, 0.01, 0.02], [0.05, 0.02, 0.5]])  # 3 transitions, 3 units
    np.testing.assert_array_equal(analysis.settled(changes, 0.1), [2, 0, -1])


def test_similarity_order_puts_alike_units_next_to_each_other():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(3, 60))
    rows = np.concatenate([base, base + 0.01 * rng.normal(size=(3, 60))])  # unit i and i + 3 alike
    order = analysis.similarity_order(rows).tolist()
    assert sorted(order) == list(range(6))
    for unit in range(3):
        assert abs(order.index(unit) - order.index(unit + 3)) == 1


# --- the routes over real event files -------------------------------------------------------------


def permuted(rnn, head, permutation):
    """A copy of ``rnn`` and ``head`` whose hidden units are permuted: every signal is permuted exactly."""
    copy, head_copy = torch.nn.RNN(rnn.input_size, UNITS, batch_first=True), torch.nn.Linear(UNITS, head.out_features)
    with torch.no_grad():
        copy.weight_ih_l0.copy_(rnn.weight_ih_l0[permutation])
        copy.weight_hh_l0.copy_(rnn.weight_hh_l0[permutation][:, permutation])
        copy.bias_ih_l0.copy_(rnn.bias_ih_l0[permutation])
        copy.bias_hh_l0.copy_(rnn.bias_hh_l0[permutation])
        head_copy.weight.copy_(head.weight[:, permutation])
        head_copy.bias.copy_(head.bias)
    return copy, head_copy


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Runs ``a``; ``permuted`` (a's models with permuted units, same probe); ``other_probe``."""
    path = tmp_path_factory.mktemp("compare")
    generator = torch.Generator().manual_seed(0)
    sequences = torch.rand(20, 9, 3, generator=generator)
    probe = rnn_units.Probe(sequences, window=3, labels=torch.arange(20) % 3)
    permutation = torch.randperm(UNITS, generator=generator)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        models = [(torch.nn.RNN(3, UNITS, batch_first=True), torch.nn.Linear(UNITS, 3)) for _ in STEPS]
    models[1] = models[0]  # steps 0 and 10: the same model, so nothing changed between them
    other = rnn_units.Probe(torch.rand(20, 9, 3, generator=generator), window=3)
    for run, probe_of_run, transform in (
        ("a", probe, lambda m: m),
        ("permuted", probe, lambda m: permuted(*m, permutation)),
        ("other_probe", other, lambda m: m),
    ):
        with SummaryWriter(path / run) as writer:
            for step, model in zip(STEPS, models):
                rnn, head = transform(model)
                rnn_units.add_rnn_units(writer, support.TAG, rnn, probe_of_run, global_step=step,
                                        readout=head, rollout=2)
    return support.python_loader_client(path), permutation.numpy()


def get(client, route, status=200):
    response = client.get(ROUTES + route)
    assert response.status_code == status, response.get_data(as_text=True)
    return response


def test_change_between_identical_steps_is_zero(compared):
    client, _ = compared
    result = get(client, f"/change?run=a&tag={support.TAG}&step_a=0&step_b=10").json
    assert result["units"] == UNITS and result["missing"] == []
    np.testing.assert_allclose(result["activation"], 0, atol=1e-6)
    np.testing.assert_allclose(result["average"]["top"], 0, atol=1e-6)
    changed = get(client, f"/change?run=a&tag={support.TAG}&step_a=0&step_b=30").json
    assert min(changed["activation"]) > 0.01


def test_a_permuted_copy_is_matched_back_exactly(compared):
    client, permutation = compared
    result = get(client, f"/match?run=a&tag={support.TAG}&step=30&other_run=permuted&other_step=30").json
    # Unit j of the copy is unit permutation[j] of a: a's unit i is the copy's unit j with permutation[j] == i.
    np.testing.assert_array_equal(permutation[result["assignment"]], np.arange(UNITS))
    assert min(result["similarity"]) > 0.999
    assert result["cka"] == pytest.approx(1, abs=1e-3)
    across = get(client, f"/match?run=a&tag={support.TAG}&step=0&other_run=permuted&other_step=30").json
    assert across["cka"] < 0.999  # another model: a real, imperfect match


def test_runs_on_different_probes_are_not_matched_and_say_why(compared):
    client, _ = compared
    response = get(client, f"/match?run=a&tag={support.TAG}&step=30&other_run=other_probe&other_step=30", 400)
    assert "different probes" in response.get_data(as_text=True)


def test_drift_has_a_change_per_unit_and_transition(compared):
    client, _ = compared
    header, arrays, axes = support.unpack_wire(get(client, f"/drift?run=a&tag={support.TAG}").get_data(), with_axes=True)
    assert header["steps"] == STEPS and header["skipped_steps"] == [] and header["units"] == UNITS
    assert arrays["change"].shape == (3, UNITS) and axes["change"] == ["transition", "unit"]
    np.testing.assert_allclose(arrays["change"][0], 0, atol=1e-6)  # steps 0 and 10 share a model
    assert (arrays["change"][1:] > 0).all()
    assert len(header["settled"]) == UNITS and set(header["settled"]) <= {None, *STEPS}
    high = support.unpack_wire(get(client, f"/drift?run=a&tag={support.TAG}&threshold=5").get_data())[0]
    assert high["settled"] == [0] * UNITS  # nothing changes by 5: settled from the first step


def test_similarity_is_a_symmetric_cka_matrix(compared):
    client, _ = compared
    header, arrays = support.unpack_wire(get(client, f"/similarity?run=a&tag={support.TAG}").get_data())
    cka = arrays["cka"]
    assert header["steps"] == STEPS and cka.shape == (4, 4)
    np.testing.assert_allclose(cka, cka.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(cka), 1, atol=1e-5)
    assert cka[0, 1] == pytest.approx(1, abs=1e-5) and cka[0, 3] < 0.999


def test_coverage_counts_the_units_preferring_each_class(compared):
    client, _ = compared
    header, arrays = support.unpack_wire(get(client, f"/coverage?run=a&tag={support.TAG}").get_data())
    counts = arrays["units_per_class"]
    assert header["steps"] == STEPS and header["class_names"] == ["0", "1", "2"]
    assert counts.shape == (4, 3) and (counts.sum(axis=1) <= UNITS).all() and counts.sum() > 0
    get(client, f"/coverage?run=other_probe&tag={support.TAG}", 404)  # no labels


def test_order_is_a_permutation_of_the_units(compared):
    client, _ = compared
    result = get(client, f"/order?run=a&tag={support.TAG}&step=30").json
    assert sorted(result["similarity"]) == list(range(UNITS)) and result["from"] == "activation_sample"


def test_logs_without_an_activation_sample_say_what_is_missing():
    client = support.python_loader_client(support.V1_FIXTURE)
    result = get(client, f"/change?run=train&tag={support.TAG}&step_a=0&step_b=20").json
    assert result["activation"] is None and result["missing"] == ["activation_sample"]
    assert len(result["average"]["top"]) == 5
    response = get(client, f"/drift?run=train&tag={support.TAG}", 404)
    assert "no step with an activation sample" in response.get_data(as_text=True)
    response = get(client, f"/match?run=train&tag={support.TAG}&step=0&other_run=train&other_step=20", 400)
    assert "without a probe fingerprint" in response.get_data(as_text=True)


@pytest.mark.parametrize("route, words", [
    (f"/change?run=a&tag={support.TAG}&step_a=0", "'step_b'"),
    (f"/drift?run=a&tag={support.TAG}&threshold=x", "'threshold' must be a number"),
    (f"/drift?run=a&tag={support.TAG}&threshold=nan", "'threshold' must be a number"),
    (f"/coverage?run=a&tag={support.TAG}&weighting=max", "'weighting' must be one of"),
    (f"/match?run=a&tag={support.TAG}&step=0&other_step=0", "'other_run'"),
])
def test_bad_comparison_requests_answer_400(compared, route, words):
    client, _ = compared
    assert words in get(client, route, 400).get_data(as_text=True)


def test_the_writer_logs_each_units_change_since_its_last_step(compared):
    """Drift reads the change the writer logged; it equals the change computed from the two samples."""
    client, _ = compared
    header, arrays = support.unpack_wire(get(client, f"/drift?run=a&tag={support.TAG}").get_data())
    for a, b, row in zip(STEPS, STEPS[1:], arrays["change"]):
        computed = get(client, f"/change?run=a&tag={support.TAG}&step_a={a}&step_b={b}").json["activation"]
        np.testing.assert_allclose(row, computed, atol=2e-3)  # full-precision samples vs stored float16


def test_older_logs_get_coverage_from_their_class_weights():
    client = support.python_loader_client(support.V1_FIXTURE)
    header, arrays = support.unpack_wire(get(client, f"/coverage?run=train&tag={support.TAG}").get_data())
    expected = np.load(support.V1_EXPECTED)
    assert header["steps"] == [0, 10, 20]
    for i, step in enumerate(header["steps"]):
        np.testing.assert_array_equal(
            arrays["units_per_class"][i], analysis.units_per_class(expected[f"train|{step}|top/class_weight"])
        )


def test_drift_of_sampled_steps_is_the_change_from_the_previous_logged_step(tmp_path):
    logged = support.write_run(tmp_path, "r", range(12), units=4)
    client = support.python_loader_client(tmp_path, samples=5)  # TensorBoard keeps 5 of the 12 steps
    header, arrays = support.unpack_wire(get(client, f"/drift?run=r&tag={support.TAG}").get_data())
    steps = header["steps"]
    assert len(steps) == 5 and header["previous_steps"] == [s - 1 for s in steps[1:]]
    samples = {s: support.logged_arrays(logged[s], served=False)["activation_sample"] for s in range(12)}
    for row, step in zip(arrays["change"], steps[1:]):
        expected = analysis.change(samples[step - 1].astype(np.float32), samples[step].astype(np.float32))
        np.testing.assert_allclose(row, expected, atol=2e-3)


def test_cka_is_the_same_whether_the_writer_logged_the_gram_or_not(tmp_path):
    """A layer wider than the activation sample logs its smaller Gram matrix; a
    narrower one does not (readers compute it from the sample): CKA agrees."""
    sequences = torch.rand(6, 5, 3, generator=torch.Generator().manual_seed(4))
    probe = rnn_units.Probe(sequences, window=2)  # 24 windows: a sample of 24
    samples = {}
    for units in (8, 40):
        with torch.random.fork_rng():
            torch.manual_seed(units)
            rnns = [torch.nn.RNN(3, units, batch_first=True) for _ in range(2)]
        with SummaryWriter(tmp_path / f"u{units}") as writer:
            samples[units] = [rnn_units.add_rnn_units(writer, support.TAG, rnn, probe, global_step=step)
                              .activation_sample.numpy() for step, rnn in enumerate(rnns)]
        logged = support.read_logged_steps(tmp_path / f"u{units}", support.TAG)
        assert ("sample_gram" in logged[0][1]) == (units > 24)
    client = support.python_loader_client(tmp_path)
    for units, (a, b) in samples.items():
        _, arrays = support.unpack_wire(get(client, f"/similarity?run=u{units}&tag={support.TAG}").get_data())
        assert arrays["cka"][0, 1] == pytest.approx(analysis.linear_cka(a, b), abs=2e-3)  # float16 sample/gram
