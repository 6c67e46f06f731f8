"""The demo end to end on tiny settings: training, events, text output, serving.

``write_demo_logdir`` and the ``demo_logdir`` fixture make a small real demo
logdir (run ``digits``, tag ``rnn/units``) for other tests to reuse.
"""

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tokenize

import numpy as np
import pytest
import torch

from demo import __main__ as demo_main
from demo import data as demo_data
from demo import text as demo_text
from tensorboard_rnn_units import metadata

import support

REPO = os.path.join(os.path.dirname(__file__), "..")
SHARED_MNIST = support.SHARED_MNIST

# A few seconds in all: 4 logged steps (0, 2, 4, 6) of 12 units.
TINY_DIGITS_ARGS = (
    "--steps", "6", "--log-every", "2", "--batch-size", "16",
    "--probe-size", "60", "--hidden", "12", "--device", "cpu",
)


def write_demo_logdir(logdir, *extra_args):
    """Runs ``python -m demo`` in-process on tiny digits settings into ``logdir``.

    ``extra_args`` override ``TINY_DIGITS_ARGS`` (argparse keeps the last
    value). Returns what the demo printed.
    """
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        demo_main.main(["--logdir", str(logdir), *TINY_DIGITS_ARGS, *extra_args])
    return output.getvalue()


@pytest.fixture(scope="module")
def demo_logdir(tmp_path_factory):
    """A tiny digits demo logdir: ``(logdir, printed output)``."""
    logdir = tmp_path_factory.mktemp("demo")
    return logdir, write_demo_logdir(logdir)


def read_steps(run_dir, tag=demo_main.TAG):
    """``{step: (header, arrays)}`` of ``tag`` in ``run_dir``, via TensorBoard's loader."""
    return support.read_logged_steps(run_dir, tag)


def test_digits_demo_logs_several_steps_of_every_unit(demo_logdir):
    logdir, _ = demo_logdir
    steps = read_steps(logdir / "digits")
    assert sorted(steps) == [0, 2, 4, 6]
    header, arrays = steps[6]
    assert (header["units"], header["window"], header["rollout"], header["input_size"]) == (12, 4, 4, 8)
    assert header["class_names"] == list("0123456789")
    assert header["weightings"] == list(metadata.WEIGHTINGS)
    assert arrays["top/average"].shape == (12, 4, 8)
    assert arrays["top/rollout"].shape == (12, 4, 8)
    assert arrays["top/class_weight"].shape == (12, 10)


def test_digits_demo_prints_data_summary_and_how_to_view(demo_logdir):
    logdir, output = demo_logdir
    assert "scikit-learn digits: 1797 images of 8x8 pixels" in output
    assert "windows of L=4 rows and rollouts of R=4 rows" in output
    assert "Units preferring each class (top weighting): 0: " in output
    assert "Dead units (weight zero on every probe window): " in output
    assert f"Logdir: {logdir} (run 'digits', tag 'rnn/units')" in output
    assert f"tensorboard --logdir {logdir}" in output


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Two short digits demo runs on one probe with different seeds."""
    logdir = tmp_path_factory.mktemp("two_seeds")
    write_demo_logdir(logdir, "--steps", "60", "--log-every", "30")
    write_demo_logdir(logdir, "--steps", "60", "--log-every", "30", "--seed", "1", "--run", "digits-seed1")
    return logdir


@pytest.mark.slow
@pytest.mark.parametrize("load_fast", [True, False], ids=["rustboard", "python"])
def test_two_seeds_on_one_probe_are_matched_non_trivially(two_seeds, load_fast):
    """Issue 8's "done when": two demo runs with different seeds give a real, imperfect
    match, and the other comparisons serve the demo's logs, in the real TensorBoard."""
    with support.tensorboard(two_seeds, load_fast) as base_url:
        route = f"{base_url}/data/plugin/rnn_units"
        query = f"tag={demo_main.TAG}"

        def served():
            status, body = support.get(f"{route}/steps?run=digits-seed1&{query}")
            return status == 200 and json.loads(body)[-1]["step"] == 60

        support.wait_for(served, 60, what="the second demo run")
        status, body = support.get(f"{route}/match?run=digits&{query}&step=60&other_run=digits-seed1&other_step=60")
        assert status == 200, body
        result = json.loads(body)
        assert sorted(result["assignment"]) == list(range(12))
        similarity = sorted(result["similarity"])
        assert 0.1 < similarity[len(similarity) // 2] < 0.999 and 0 < result["cka"] < 0.999
        for path in ("drift", "similarity", "coverage"):
            status, body = support.get(f"{route}/{path}?run=digits&{query}")
            assert status == 200, (path, body[:300])
        assert support.unpack_wire(body)[0]["steps"] == [0, 30, 60]


def test_rerun_replaces_the_previous_run(tmp_path):
    write_demo_logdir(tmp_path)
    output = write_demo_logdir(tmp_path, "--steps", "3")
    assert "Replacing the previous run" in output
    assert sorted(os.listdir(tmp_path / "digits"))[1:] == ["plugins"]  # one event file, then plugins/
    assert len(os.listdir(tmp_path / "digits" / "plugins" / "rnn_units")) == 3  # this run's steps
    assert sorted(read_steps(tmp_path / "digits")) == [0, 2, 3]


@support.needs_shared_mnist
def test_mnist_demo_logs_169_units_of_28_pixel_rows(tmp_path):
    output = write_demo_logdir(
        tmp_path, "--data", "mnist", "--mnist-dir", SHARED_MNIST, "--hidden", "169",
        "--steps", "2", "--log-every", "1", "--probe-size", "20", "--batch-size", "8",
    )
    assert "MNIST test split" in output
    assert "windows of L=10 rows and rollouts of R=10 rows" in output
    steps = read_steps(tmp_path / "mnist")
    assert sorted(steps) == [0, 1, 2]
    header, arrays = steps[2]
    assert (header["units"], header["window"], header["rollout"], header["input_size"]) == (169, 10, 10, 28)
    assert arrays["top/average"].shape == (169, 10, 28)


def test_mnist_offline_exits_at_once_naming_the_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_data, "MIRROR", f"http://127.0.0.1:{support.free_port()}/")
    expected = rf"No MNIST data in {re.escape(str(tmp_path))}.*train-images-idx3-ubyte\.gz"
    with pytest.raises(SystemExit, match=expected):
        write_demo_logdir(tmp_path, "--data", "mnist", "--mnist-dir", str(tmp_path))


def test_per_data_set_defaults():
    digits = demo_main.parse_args([])
    mnist = demo_main.parse_args(["--data", "mnist", "--window", "5"])
    text = demo_main.parse_args(["--data", "text", "--hidden", "64"])
    assert (digits.window, digits.rollout, digits.hidden) == (4, 4, 169)
    assert (mnist.window, mnist.rollout) == (5, 10)
    assert (text.window, text.rollout, text.hidden, text.batch_size) == (10, 10, 64, 32)
    assert (digits.threads, text.threads, digits.background) == (1, 1, True)  # training on one core, logging on another
    assert demo_main.parse_args(["--no-background"]).background is False
    assert demo_main.logged_steps(digits) == list(range(0, 2001, 100))
    assert len(demo_main.logged_steps(text)) >= 20


@pytest.mark.slow
def test_serve_runs_tensorboard_with_the_plugin(tmp_path):
    """``python -m demo --serve`` (what ``make demo`` runs) trains, then serves."""
    port = support.free_port()
    tags_url = f"http://127.0.0.1:{port}/data/plugin/rnn_units/tags"
    command = [sys.executable, "-m", "demo", "--logdir", str(tmp_path), *TINY_DIGITS_ARGS,
               "--serve", "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)

    def serving():
        if process.poll() is not None:
            raise RuntimeError(f"the demo exited with {process.returncode}")
        try:
            return support.get(tags_url, timeout=5)
        except OSError:  # not listening yet
            return None

    try:
        status, body = support.wait_for(serving, timeout=120, what="the demo's TensorBoard")
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
        print(output)  # shown by pytest when the test fails
    assert status == 200, output
    assert json.loads(body)["digits"][demo_main.TAG]["units"] == 12
    assert f"TensorBoard is serving the demo at http://127.0.0.1:{port}/#rnn_units" in output


# The text demo: a char-level LSTM on standard-library source, with annotations.

TINY_TEXT_ARGS = ("--data", "text", "--steps", "4", "--log-every", "2", "--batch-size", "4",
                  "--probe-size", "8", "--hidden", "12")


@pytest.fixture(scope="module")
def text_demo(tmp_path_factory):
    """A tiny text demo logdir: ``(logdir, printed output)``."""
    logdir = tmp_path_factory.mktemp("text_demo")
    return logdir, write_demo_logdir(logdir, *TINY_TEXT_ARGS)


def test_text_demo_logs_tokens_with_vocab_and_annotations(text_demo):
    logdir, _ = text_demo
    steps = read_steps(logdir / "text")
    assert sorted(steps) == [0, 2, 4]
    header, arrays = steps[4]
    assert header["display"] == "tokens" and header["vocab"] == list(demo_text.VOCAB)
    assert (header["units"], header["window"], header["rollout"], header["input_size"]) == (12, 10, 10, 97)
    assert header["annotation_names"] == list(demo_text.ANNOTATIONS)
    assert header["gate_names"] == ["input", "forget", "output"]
    assert arrays["annotation_correlation"].shape == (12, len(demo_text.ANNOTATIONS))
    assert np.abs(arrays["annotation_correlation"]).max() > 0
    average = arrays["top/average"].astype(np.float64)  # one distribution over the vocab per position
    assert average.shape == (12, 10, 97)
    np.testing.assert_allclose(average.sum(axis=2), 1, atol=1e-2)
    assert arrays["top/rollout"].shape == (12, 10, 97)


def test_text_demo_runs_on_one_thread_and_restores_torch_threads(tmp_path, monkeypatch):
    used = []
    monkeypatch.setattr(demo_main, "train", lambda *args: used.append(torch.get_num_threads()))
    monkeypatch.setattr(demo_main, "annotation_summary", lambda features: [])
    before = torch.get_num_threads()
    write_demo_logdir(tmp_path, *TINY_TEXT_ARGS, "--threads", "1")
    assert used == [1] and torch.get_num_threads() == before


def test_text_demo_prints_the_units_most_correlated_with_each_annotation(text_demo):
    logdir, output = text_demo
    assert "Python " in output and " standard library: " in output
    assert "Each sequence is 100 characters, 97 tokens in all" in output
    assert "Units most correlated with each annotation" in output
    unit = r"unit (\d+) \(r = [+-]\d\.\d\d\)"
    for name in demo_text.ANNOTATIONS:
        line = re.search(rf"^  {name}: {unit}, {unit}, {unit}$", output, re.MULTILINE)
        assert line, (name, output)
        assert len({int(u) for u in line.groups()}) == 3 and all(int(u) < 12 for u in line.groups())
    assert f"Logdir: {logdir} (run 'text', tag 'rnn/units')" in output


def annotated(text):
    """The annotations of ``text`` as strings of digits, one per character
    (booleans as 0/1, the column modulo 10), for readable comparisons."""
    annotations = demo_text.annotate(text)
    assert all(len(values) == len(text) for values in annotations.values())
    return {name: "".join(str(int(v) % 10) for v in values) for name, values in annotations.items()}


def test_annotate_strings_comments_brackets_and_columns():
    text = 'x = "a(b"  # c)\n' "(y, '#')\n"
    got = annotated(text)
    # After reading a character: an opening quote is in its string, the closing one is not.
    assert got["in_string"] == "0000111100000000" "000011000"
    assert got["in_comment"] == "0000000000011110" "000000000"  # a '#' in a string is no comment
    assert got["in_brackets"] == "0000000000000000" "111111100"  # nor are brackets in strings or comments
    assert got["column"] == "1234567890123450" "123456780"  # a newline is column 0


def test_annotate_triple_quotes_escapes_and_prefixes():
    text = 'f(r"""a\n\'\'"(""", b\'\\\'\')  # it\'s\n'
    assert text == "f(r" + '"""a' + "\n''" + '"("""' + ", b'\\''" + ")  # it's\n"
    got = annotated(text)
    assert got["in_string"] == "000" "11111111111" "0000" "111" "00000000000"
    assert got["in_brackets"] == "0" "111111111111111111111" "0000000000"
    assert got["in_comment"] == "0000000000000000000000000" "111111" "0"


def test_annotate_never_fails_on_broken_source():
    got = annotated(')) "abc\n(\'x')
    assert got["in_string"] == "00000000000"  # an unterminated quote is an ordinary character
    assert got["in_brackets"] == "00000000111"  # closing first opens nothing
    assert demo_text.annotate("")["column"].shape == (0,)


def test_annotate_agrees_with_the_tokenize_module_on_stdlib_source():
    path = os.path.join(os.path.dirname(os.__file__), "tokenize.py")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    line_starts = np.cumsum([0] + [len(line) for line in text.splitlines(keepends=True)])
    expected = {name: np.zeros(len(text), bool) for name in ("in_string", "in_comment")}
    depth_change = np.zeros(len(text), int)
    with open(path, encoding="utf-8") as f:
        for token in tokenize.generate_tokens(f.readline):
            start = line_starts[token.start[0] - 1] + token.start[1]
            end = line_starts[token.end[0] - 1] + token.end[1]
            if token.type == tokenize.STRING:
                quote = min(i for i in (token.string.find('"'), token.string.find("'")) if i >= 0)
                expected["in_string"][start + quote:end - 1] = True
            elif token.type == tokenize.COMMENT:
                expected["in_comment"][start:end] = True
            elif token.type == tokenize.OP and token.string in "([{":
                depth_change[start] = 1
            elif token.type == tokenize.OP and token.string in ")]}":
                depth_change[start] = -1
    got = demo_text.annotate(text)
    assert got["in_string"].any() and got["in_comment"].any()
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values, err_msg=name)
    np.testing.assert_array_equal(got["in_brackets"], np.cumsum(depth_change) > 0)


def test_vocab_is_printable_ascii_newline_and_one_placeholder():
    assert len(demo_text.VOCAB) == 97 and len(set(demo_text.VOCAB)) == 97
    text = "def f(x):\n\treturn 'é'  # ~\n"
    tokens = demo_text.encode(text)
    assert tokens.dtype == np.int64 and len(tokens) == len(text)
    assert demo_text.decode(tokens) == text.replace("\t", demo_text.UNKNOWN).replace("é", demo_text.UNKNOWN)


def test_stdlib_text_is_deterministic_sequences_from_line_starts():
    first = demo_text.load_stdlib_text(sequence_length=50, files=("textwrap.py", "no_such_module.py"))
    second = demo_text.load_stdlib_text(sequence_length=50, files=("textwrap.py",))
    np.testing.assert_array_equal(first.sequences, second.sequences)
    assert first.sequences.shape[1] == 50 and len(first.sequences) > 100
    assert "1 modules" in first.source
    assert set(first.annotations) == set(demo_text.ANNOTATIONS)
    assert all(values.shape == first.sequences.shape for values in first.annotations.values())
    starts_with_newline = first.sequences[:, 0] == demo_text.VOCAB.index("\n")
    assert starts_with_newline.any() and not starts_with_newline.all()
    # Each sequence starts a line: its first character is in column 1, or is an empty line's newline.
    np.testing.assert_array_equal(first.annotations["column"][:, 0], np.where(starts_with_newline, 0, 1))
    with pytest.raises(FileNotFoundError, match="none of the demo's standard-library files"):
        demo_text.load_stdlib_text(files=("no_such_module.py",))
