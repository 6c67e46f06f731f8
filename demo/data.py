"""The demo's data: images as sequences of rows, one row per RNN step.

Two sources:

- ``load_digits_rows()``: scikit-learn's embedded handwritten digits (8x8),
  so the default demo needs no network and no files.
- ``load_mnist(mnist_dir)``: the standard gzipped MNIST idx files (28x28).
  The training split is used when present; otherwise the test split
  (``t10k-*``); otherwise the training split is downloaded from a public
  mirror and checked against its known MD5.
"""

import dataclasses
import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib

import numpy as np

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

# The original files' digests, checked on download.
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

DOWNLOAD_TIMEOUT_S = 10

CLASS_NAMES = tuple(str(digit) for digit in range(10))

# idx magic number = dtype code 0x08 (unsigned byte) << 8 | number of dimensions.
_IMAGES_MAGIC = 0x0803
_LABELS_MAGIC = 0x0801


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Images as row sequences.

    Attributes:
      sequences: float32 ``(N, T, D)`` in [0, 1]; step ``t`` is image row ``t``.
      labels: int64 ``(N,)``, the digit of each image.
      class_names: names of the label values, ``"0"`` to ``"9"``.
      source: one line saying where the images came from.
    """

    sequences: np.ndarray
    labels: np.ndarray
    class_names: tuple
    source: str


def load_digits_rows():
    """scikit-learn's 1,797 handwritten 8x8 digits, pixel values scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16 (counts of set pixels in 4x4 blocks of a 32x32 bitmap).
    images = (digits.images / 16.0).astype(np.float32)
    return Dataset(
        sequences=images,
        labels=digits.target.astype(np.int64),
        class_names=CLASS_NAMES,
        source=f"scikit-learn digits: {len(images)} images of 8x8 pixels",
    )


def load_mnist(mnist_dir, download=True):
    """Loads MNIST from the idx files in ``mnist_dir`` as ``(N, 28, 28)`` rows.

    Uses ``train-*`` when both training files are present, else ``t10k-*``
    (the test split, said in ``Dataset.source``), else downloads the training
    files into ``mnist_dir`` (when ``download``) and checks their MD5.

    Raises:
      FileNotFoundError: no usable split and no download (or it failed); the
        message names the directory to fill and the file names.
      ValueError: a file is not a valid gzipped idx file (bad gzip, bad magic,
        truncated, size mismatch) or images and labels do not match.
    """
    for split in ("train", "t10k"):
        images, labels = _split_paths(mnist_dir, split)
        if os.path.exists(images) and os.path.exists(labels):
            return _load_split(images, labels, split, mnist_dir)
    if not download:
        raise FileNotFoundError(_missing_message(mnist_dir, "download disabled"))
    for path in _split_paths(mnist_dir, "train"):
        if not os.path.exists(path):
            _download(path, mnist_dir)
    return _load_split(*_split_paths(mnist_dir, "train"), "train", mnist_dir)


def _split_paths(mnist_dir, split):
    return (
        os.path.join(mnist_dir, f"{split}-images-idx3-ubyte.gz"),
        os.path.join(mnist_dir, f"{split}-labels-idx1-ubyte.gz"),
    )


def _load_split(images_path, labels_path, split, mnist_dir):
    images = read_idx(images_path, _IMAGES_MAGIC)
    labels = read_idx(labels_path, _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} has {len(images)} images but {labels_path} has "
            f"{len(labels)} labels"
        )
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{labels_path}: label {labels.max()} is not a digit 0-9")
    height, width = images.shape[1:]
    if split == "train":
        source = f"MNIST training split from {mnist_dir}"
    else:
        source = (
            f"MNIST test split (t10k-*) from {mnist_dir}: the training files "
            "(train-*) are not there, so the demo trains on the test split"
        )
    return Dataset(
        sequences=images.astype(np.float32) / 255.0,
        labels=labels.astype(np.int64),
        class_names=CLASS_NAMES,
        source=f"{source}; {len(images)} images of {height}x{width} pixels",
    )


def read_idx(path, magic):
    """Reads a gzipped idx file of unsigned bytes with the given magic number.

    Raises:
      ValueError: not gzip, corrupted or truncated gzip, wrong magic, or a
        data size that does not match the header's dimensions.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile is an OSError; a cut-off file raises EOFError.
        raise ValueError(f"{path}: corrupted or truncated gzip file ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for an idx header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(
            f"{path}: bad magic number 0x{found:08x}, expected 0x{magic:08x}; "
            "not an MNIST idx file of this kind"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated idx header")
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header_size != expected:
        raise ValueError(
            f"{path}: {len(raw) - header_size} data bytes, header declares shape "
            f"{shape} ({expected} bytes); the file is truncated or corrupted"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _download(path, mnist_dir):
    """Downloads one file from ``MIRROR`` to ``path``, checking its MD5."""
    name = os.path.basename(path)
    url = MIRROR + name
    print(f"Downloading {url} ...", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            content = response.read()
    except (urllib.error.URLError, OSError) as e:
        reason = f"could not download {url} ({getattr(e, 'reason', e)})"
        raise FileNotFoundError(_missing_message(mnist_dir, reason)) from None
    digest = hashlib.md5(content).hexdigest()
    if digest != MD5[name]:
        raise ValueError(
            f"downloaded {url} has MD5 {digest}, expected {MD5[name]}; not saved"
        )
    os.makedirs(mnist_dir, exist_ok=True)
    partial = path + ".part"
    with open(partial, "wb") as f:
        f.write(content)
    os.replace(partial, path)


def _missing_message(mnist_dir, reason):
    train, test = (
        " and ".join(os.path.basename(p) for p in _split_paths(mnist_dir, split))
        for split in ("train", "t10k")
    )
    return (
        f"No MNIST data in {os.path.abspath(mnist_dir)}: {reason}. "
        f"Put {train} (or the test split, {test}) into that directory, "
        "or pass --mnist-dir DIR pointing at a directory that has them."
    )
