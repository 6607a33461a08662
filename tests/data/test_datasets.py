"""Rotated MNIST, CIFAR-10, ImageNet and the batching."""
from __future__ import annotations

import pytest
import torch

from funnel.data import DatasetNotFoundError
from funnel.data.base import epoch_batches, random_crop_flip, shard, steps_per_epoch
from funnel.data.cifar10 import build_cifar10
from funnel.data.imagenet import build_imagenet
from funnel.data.rotated_mnist import build_rotated_mnist, rotate_and_noise


def test_rotated_mnist_splits_are_disjoint_and_cover_everything(fake_data):
    data = build_rotated_mnist("mnist", root=fake_data, val_size=60)
    sizes = data.info["sizes"]
    assert sum(sizes["train"].values()) == 300 - 60 and sum(sizes["val"].values()) == 60
    assert sum(sizes["test"].values()) == 120
    assert [p.name for p in data.phases] == ["angle90", "angle0", "angle45"]
    assert [p.current_eval for p in data.phases] == ["angle90", "angle0", "angle45"]
    assert set(data.eval_sets) == {f"{s}/angle{a}" for s in ("val", "test") for a in (0, 45, 90)}
    # disjoint: no training image appears twice across the angle subsets (angle 0 is unrotated, so compare
    # the noise-free bright pixels, which the noise never creates)
    x0 = data.phases[1].train.x
    assert x0.shape[1:] == (1, 28, 28) and 0 <= x0.min() and x0.max() <= 1


def test_mnist_5k_is_split_by_fractions(fake_data):
    data = build_rotated_mnist("mnist_5k", mnist_5k_path=fake_data / "mnist_5k.csv.gz")
    sizes = {split: sum(v.values()) for split, v in data.info["sizes"].items()}
    assert sizes == {"train": 360, "val": 120, "test": 120}
    labels = torch.cat([p.train.y for p in data.phases])
    assert len(labels.unique()) == 10  # shuffled before splitting: the file is sorted by class


def test_rotation_then_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 28, 28, dtype=torch.uint8)
    x[:, 2:8, 3:20] = 200
    out0 = rotate_and_noise(x, 0, 1e-2, gen)
    bright = x.unsqueeze(1) == 200
    assert torch.allclose(out0[bright], torch.tensor(200 / 255))  # digit pixels kept
    assert (out0[~bright] > 0).float().mean() > 0.95  # dark pixels became U[0, 1] noise
    # rotation first: at 90 degrees the digit pixels are exactly those of torch.rot90
    out90 = rotate_and_noise(x, 90, 1e-2, torch.Generator().manual_seed(0))
    rotated = torch.rot90(x.unsqueeze(1).float() / 255, 1, dims=(2, 3))
    kept = rotated >= 1e-2
    assert torch.allclose(out90[kept], rotated[kept], atol=1e-6)


def test_fashion_mnist_augments_training_batches_only(fake_data):
    plain = build_rotated_mnist("mnist", root=fake_data, val_size=60, angles=(0,), phases=(0,), noise_threshold=0)
    data = build_rotated_mnist("mnist", root=fake_data, val_size=60, angles=(0,), phases=(0,), noise_threshold=0,
                               augment=True, crop_pad=3)
    assert plain.train_transform is None and torch.equal(data.eval_sets["val"].x, plain.eval_sets["val"].x)
    x = data.phases[0].train.x[:8]
    out = data.train_transform(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for i in range(8):  # each image is a 28x28 window of the 3-pixel padded one, maybe flipped
        windows = [padded[i, :, r:r + 28, c:c + 28] for r in range(7) for c in range(7)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    assert not torch.equal(out, x)
    with pytest.raises(ValueError, match="crop_pad must be >= 0"):
        build_rotated_mnist("mnist", root=fake_data, val_size=60, crop_pad=-1)


def test_rotated_mnist_is_reproducible(fake_data):
    a = build_rotated_mnist("mnist", root=fake_data, val_size=60, seed=3)
    b = build_rotated_mnist("mnist", root=fake_data, val_size=60, seed=3)
    assert torch.equal(a.eval_sets["test/angle45"].x, b.eval_sets["test/angle45"].x)


def test_rotated_mnist_bad_settings(fake_data):
    with pytest.raises(ValueError, match="valid: mnist, mnist_5k, fashion_mnist"):
        build_rotated_mnist("kmnist", root=fake_data)
    with pytest.raises(ValueError, match="not among dataset.angles"):
        build_rotated_mnist("mnist", root=fake_data, val_size=60, phases=(30,))


def test_cifar10_from_pickles(fake_data):
    data = build_cifar10(fake_data, val_size=50)
    assert len(data.phases[0].train) == 150 and len(data.eval_sets["val"]) == 50 and len(data.eval_sets["test"]) == 60
    x = data.phases[0].train.x
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
    normalized = data.eval_transform(x[:8], None)
    assert normalized.dtype == torch.float32 and abs(normalized.mean()) < 2


def test_missing_cifar10(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py.*dataset.download=true"):
        build_cifar10(tmp_path)


def test_crop_flip_takes_a_crop_of_the_padded_image():
    x = torch.randint(1, 255, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    assert not torch.equal(out, x)


def test_imagenet_imagefolder(fake_data):
    data = build_imagenet(fake_data / "imagenet", image_size=64, eval_resize=72, val_size=3)
    assert data.num_classes == 3 and data.input_shape == (3, 64, 64)
    x, y = data.eval_sets["test"][0]
    assert x.shape == (3, 64, 64) and len(data.eval_sets["val"]) == 3 and len(data.phases[0].train) == 15


def test_missing_imagenet(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="never downloaded"):
        build_imagenet(tmp_path)


@pytest.mark.parametrize("drop_last", [False, True])
def test_epoch_batches_cover_the_set_once_and_shard_exactly(drop_last):
    batches = epoch_batches(103, 10, drop_last, seed=0, phase=0, epoch=4)
    assert len(batches) == steps_per_epoch(103, 10, drop_last) == (10 if drop_last else 11)
    seen = torch.cat(batches)
    assert len(seen.unique()) == len(seen) == (100 if drop_last else 103)
    for b in batches:
        parts = [shard(b, r, 3) for r in range(3)]
        assert torch.equal(torch.cat(parts).sort().values, b.sort().values)
    assert torch.equal(torch.cat(epoch_batches(103, 10, drop_last, 0, 0, 4)), seen)  # a pure function
    assert not torch.equal(torch.cat(epoch_batches(103, 10, drop_last, 0, 0, 5)), seen)
