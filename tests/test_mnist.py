"""The demo's MNIST loader: the shared test split, bad files, download, offline."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

from demo import data

from support import SHARED_MNIST, needs_shared_mnist


def idx_bytes(array, magic):
    """An uncompressed idx file: big-endian magic, dimensions, then the bytes."""
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + np.asarray(array, dtype=np.uint8).tobytes()


def write_split(directory, split, count=5, size=4):
    """Writes a small valid ``split`` pair of gzipped idx files; returns their paths."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
    labels = np.arange(count, dtype=np.uint8) % 10
    paths = []
    for kind, array, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
        path = os.path.join(directory, f"{split}-{kind}-ubyte.gz")
        with gzip.open(path, "wb") as f:
            f.write(idx_bytes(array, magic))
        paths.append(path)
    return paths


@needs_shared_mnist
def test_parses_the_shared_test_split_and_says_it_uses_it():
    dataset = data.load_mnist(SHARED_MNIST, download=False)
    assert dataset.sequences.shape == (10000, 28, 28)
    assert dataset.sequences.dtype == np.float32
    assert 0.0 <= dataset.sequences.min() and dataset.sequences.max() == 1.0
    assert dataset.labels.shape == (10000,)
    assert np.bincount(dataset.labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009
    ]
    assert dataset.class_names == tuple("0123456789")
    assert "test split" in dataset.source


def test_prefers_the_training_split(tmp_path):
    write_split(tmp_path, "t10k", count=3)
    write_split(tmp_path, "train", count=7)
    dataset = data.load_mnist(tmp_path, download=False)
    assert dataset.sequences.shape == (7, 4, 4)
    assert "training split" in dataset.source


def test_corrupted_gzip_is_rejected(tmp_path):
    images, _ = write_split(tmp_path, "t10k", count=50, size=28)
    content = bytearray(open(images, "rb").read())
    middle = len(content) // 2
    content[middle : middle + 16] = bytes(255 - b for b in content[middle : middle + 16])
    open(images, "wb").write(bytes(content))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: corrupted or truncated gzip"):
        data.load_mnist(tmp_path, download=False)


def test_not_gzip_is_rejected(tmp_path):
    _, labels = write_split(tmp_path, "t10k")
    open(labels, "wb").write(b"plain text, not gzip")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: corrupted or truncated gzip"):
        data.load_mnist(tmp_path, download=False)


def test_cut_off_gzip_is_rejected(tmp_path):
    images, _ = write_split(tmp_path, "t10k", count=50, size=28)
    content = open(images, "rb").read()
    open(images, "wb").write(content[: len(content) // 2])
    with pytest.raises(ValueError, match="corrupted or truncated gzip"):
        data.load_mnist(tmp_path, download=False)


def test_truncated_idx_data_is_rejected(tmp_path):
    images, _ = write_split(tmp_path, "t10k", count=5, size=4)
    with gzip.open(images, "rb") as f:
        content = f.read()
    with gzip.open(images, "wb") as f:
        f.write(content[:-10])
    with pytest.raises(ValueError, match=r"70 data bytes, header declares shape \(5, 4, 4\)"):
        data.load_mnist(tmp_path, download=False)


def test_bad_magic_is_rejected(tmp_path):
    images, labels = write_split(tmp_path, "t10k")
    shutil.copy(labels, images)  # a labels file where the images belong
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: bad magic number 0x00000801"):
        data.load_mnist(tmp_path, download=False)


def test_image_and_label_counts_must_match(tmp_path):
    write_split(tmp_path, "t10k", count=5)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.zeros(4), 0x801))
    with pytest.raises(ValueError, match="has 5 images but .* has 4 labels"):
        data.load_mnist(tmp_path, download=False)


def test_offline_fails_at_once_naming_the_directory_and_files(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MIRROR", f"http://127.0.0.1:{unused_port()}/mnist/")
    missing = tmp_path / "no-mnist-here"
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        data.load_mnist(missing)
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert str(missing) in message
    assert "could not download" in message
    for name in data.MD5:
        assert name in message
    assert not missing.exists()


def test_download_disabled_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        data.load_mnist(tmp_path, download=False)


def test_downloads_and_checks_digests(tmp_path, monkeypatch):
    served = tmp_path / "mirror"
    served.mkdir()
    write_split(served, "train", count=6)
    for path in served.iterdir():
        monkeypatch.setitem(data.MD5, path.name, hashlib.md5(path.read_bytes()).hexdigest())
    with mirror(served) as url:
        monkeypatch.setattr(data, "MIRROR", url)
        dataset = data.load_mnist(tmp_path / "mnist")
    assert dataset.sequences.shape == (6, 4, 4)
    assert sorted(os.listdir(tmp_path / "mnist")) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
    ]


def test_download_with_a_wrong_digest_is_not_saved(tmp_path, monkeypatch):
    served = tmp_path / "mirror"
    served.mkdir()
    write_split(served, "train")
    with mirror(served) as url:
        monkeypatch.setattr(data, "MIRROR", url)
        with pytest.raises(ValueError, match="has MD5 .*, expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
            data.load_mnist(tmp_path / "mnist")
    assert not (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()


def unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def mirror(directory):
    """Serves ``directory`` over HTTP on 127.0.0.1; yields its URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
