import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory):
    """A data root with every dataset the runner reads, in the real formats (written once per session)."""
    from tests import fakes

    root = tmp_path_factory.mktemp("data")
    fakes.write_idx(root / "MNIST" / "raw")
    fakes.write_idx(root / "FashionMNIST" / "raw", seed=7)
    fakes.write_idx(root / "debian-fashion", compress=True, seed=5)
    fakes.write_mnist_5k_csv(root / "mnist_5k.csv.gz")
    fakes.write_cifar10(root)
    fakes.write_imagefolder(root / "imagenet")
    return root
