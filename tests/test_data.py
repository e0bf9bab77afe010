"""The data layer: splits, statistics, batchers (device and DataLoader), augmentation, errors.

Most tests run on a small synthetic Fashion-MNIST written as real IDX files, whose
images carry their own index in the first two pixels, so they never skip; a few check
the real files when ../shared/data is present.
"""

from __future__ import annotations

import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from classicnets.data import (
    FASHION_MNIST_CLASSES,
    AugmentConfig,
    BatchTransform,
    DeviceBatcher,
    LoaderBatcher,
    build_data,
    channel_mean_std,
    derive_seed,
    list_datasets,
    load_fashion_mnist,
    random_crop,
    random_erasing,
    random_hflip,
    resolve_data_dir,
    split_indices,
    stratified_split,
)
from classicnets.data.splits import allocate_per_class
from classicnets.errors import UserError

N_TRAIN, N_TEST, N_CLASSES = 1000, 200, 10
VAL = 100  # the synthetic set's validation size: 900 / 100 like 54,000 / 6,000


# ---------------------------------------------------------------- synthetic data


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file: two zero bytes, type 0x08 (unsigned byte), number of dims, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def indexed_images(n: int) -> np.ndarray:
    """Images whose pixels 0 and 1 hold ``index % 256`` and ``index // 256``; the rest is a pattern."""
    index = np.arange(n)
    pixels = (index[:, None] * 7 + np.arange(28 * 28)[None, :] * 13) % 256
    pixels[:, 0], pixels[:, 1] = index % 256, index // 256
    return pixels.reshape(n, 28, 28).astype(np.uint8)


def balanced_labels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % N_CLASSES).astype(np.uint8)


@pytest.fixture(scope="module")
def fake_root(module_tmp_path) -> Path:
    root = module_tmp_path
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", indexed_images(N_TRAIN))
    write_idx(raw / "train-labels-idx1-ubyte", balanced_labels(N_TRAIN, 1))
    write_idx(raw / "t10k-images-idx3-ubyte", indexed_images(N_TEST))
    write_idx(raw / "t10k-labels-idx1-ubyte", balanced_labels(N_TEST, 2))
    return root


def build(root: Path, **overrides):
    options = dict(data_dir=root, image_size=28, batch_size=30, eval_batch_size=64, device="cpu", seed=0,
                   val_size=VAL, download=False)
    return build_data("fashion-mnist", **(options | overrides))


def decode_indices(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """Undo the normalisation of un-augmented 28 px batches and read the index pixels back."""
    pixels = (images[:, 0, 0, :2].double() * std[0] + mean[0]) * 255
    pixels = pixels.round().long()
    return pixels[:, 0] + 256 * pixels[:, 1]


def epoch_indices(batcher, bundle) -> list[torch.Tensor]:
    return [decode_indices(x, bundle.mean, bundle.std) for x, _ in batcher]


def synthetic_labels(n: int = 60_000) -> torch.Tensor:
    return torch.from_numpy(balanced_labels(n, 3)).long()


# ---------------------------------------------------------------- splits


def assert_default_split(labels: torch.Tensor) -> None:
    train, val = split_indices(labels, val_size=6000, subset=None, seed=0)
    assert torch.bincount(labels[train], minlength=10).tolist() == [5400] * 10
    assert torch.bincount(labels[val], minlength=10).tolist() == [600] * 10
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(60_000))


def test_default_split_is_stratified_synthetic_labels():
    assert_default_split(synthetic_labels())


def test_default_split_is_stratified_real_labels(fashion_mnist_dir):
    train_file, test_file = load_fashion_mnist(fashion_mnist_dir, download=False)
    assert_default_split(train_file.labels)
    assert train_file.images.shape == (60_000, 1, 28, 28) and train_file.images.dtype == torch.uint8
    assert test_file.images.shape == (10_000, 1, 28, 28)
    mean, std = channel_mean_std(train_file.images)  # REFERENCE.md: 0.2860 and 0.3530
    assert mean[0] == pytest.approx(0.2860, abs=5e-5) and std[0] == pytest.approx(0.3530, abs=5e-5)


def test_allocation_is_proportional_and_exact():
    counts = torch.tensor([500, 300, 130, 70])
    shares = allocate_per_class(counts, 97)
    assert shares.sum() == 97
    exact = counts.double() * 97 / counts.sum()
    assert ((shares.double() - exact).abs() < 1).all()


def test_imbalanced_split_keeps_class_proportions():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    first, second = stratified_split(labels, 100, seed=5)
    assert torch.bincount(labels[second]).tolist() == [50, 30, 20]
    assert len(first) == 900 and not set(first.tolist()) & set(second.tolist())


def test_split_is_reproducible_from_the_seed_and_changes_with_it():
    labels = synthetic_labels(6000)
    train_a, val_a = split_indices(labels, val_size=600, subset=None, seed=7)
    train_b, val_b = split_indices(labels, val_size=600, subset=None, seed=7)
    _, val_c = split_indices(labels, val_size=600, subset=None, seed=8)
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    assert not torch.equal(val_a, val_c)


def test_subset_is_a_stratified_sample_of_the_training_part():
    labels = synthetic_labels()
    full_train, full_val = split_indices(labels, val_size=6000, subset=None, seed=0)
    train, val = split_indices(labels, val_size=6000, subset=900, seed=0)
    assert torch.bincount(labels[train], minlength=10).tolist() == [90] * 10
    assert torch.bincount(labels[val], minlength=10).tolist() == [10] * 10  # 900 // 9 = 100
    assert set(train.tolist()) <= set(full_train.tolist())
    assert set(val.tolist()) <= set(full_val.tolist())
    _, tiny_val = split_indices(labels, val_size=6000, subset=20, seed=0)
    assert torch.bincount(labels[tiny_val], minlength=10).tolist() == [1] * 10  # at least one per class


def test_derive_seed_separates_its_parts():
    assert derive_seed(0, "shuffle", 1) != derive_seed(1, "shuffle", 0)
    assert derive_seed(0, "shuffle", 1) == derive_seed(0, "shuffle", 1)
    assert 0 <= derive_seed(2**40, "augment", 3, 7) < 2**63


# ---------------------------------------------------------------- statistics


def test_channel_mean_std_equals_a_direct_float64_computation():
    images = torch.randint(0, 256, (40, 3, 9, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_mean_std(images)
    direct = images.double().div(255).transpose(0, 1).reshape(3, -1)
    assert mean == pytest.approx(direct.mean(1).tolist(), abs=1e-12)
    assert std == pytest.approx(direct.std(1, correction=0).tolist(), abs=1e-12)


def test_bundle_statistics_come_from_the_training_part(fake_root):
    bundle = build(fake_root)
    train, _ = split_indices(torch.from_numpy(balanced_labels(N_TRAIN, 1)).long(), val_size=VAL, subset=None, seed=0)
    pixels = indexed_images(N_TRAIN)[train.numpy()].astype(np.float64) / 255
    assert bundle.mean == pytest.approx([pixels.mean()], abs=1e-12)
    assert bundle.std == pytest.approx([pixels.std()], abs=1e-12)


# ---------------------------------------------------------------- the bundle and the batchers


def test_bundle_describes_the_dataset(fake_root):
    bundle = build(fake_root, image_size=32)
    assert bundle.num_classes == 10 and bundle.in_chans == 1 and bundle.image_size == 32
    assert bundle.class_names == FASHION_MNIST_CLASSES and bundle.class_names[0] == "T-shirt/top"
    assert bundle.split_sizes == {"train": 900, "val": 100, "test": 200}
    images, labels = next(iter(bundle.train))
    assert images.shape == (30, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (30,) and labels.dtype == torch.int64


def test_device_batcher_yields_each_training_image_once_per_epoch(fake_root):
    bundle = build(fake_root, batch_size=30)  # 900 = 30 x 30: nothing dropped
    train, _ = split_indices(torch.from_numpy(balanced_labels(N_TRAIN, 1)).long(), val_size=VAL, subset=None, seed=0)
    all_labels = torch.from_numpy(balanced_labels(N_TRAIN, 1)).long()
    seen, labels = [], []
    for images, batch_labels in bundle.train:
        seen.append(decode_indices(images, bundle.mean, bundle.std))
        labels.append(batch_labels)
    seen, labels = torch.cat(seen), torch.cat(labels)
    assert len(bundle.train) == 30 and bundle.train.num_samples == 900
    assert torch.equal(seen.sort().values, train)
    assert torch.equal(labels, all_labels[seen])  # labels travel with their images


def test_training_drops_the_last_partial_batch_without_repeats(fake_root):
    bundle = build(fake_root, batch_size=64)  # 900 = 14 x 64 + 4
    seen = torch.cat(epoch_indices(bundle.train, bundle))
    assert len(bundle.train) == 14 and bundle.train.num_samples == 896 == len(seen)
    assert len(set(seen.tolist())) == 896


def test_a_subset_smaller_than_a_batch_still_gives_one_batch(fake_root):
    bundle = build(fake_root, subset=20, batch_size=32)
    batches = epoch_indices(bundle.train, bundle)
    assert len(bundle.train) == 1 and [len(b) for b in batches] == [20] == [bundle.train.num_samples]
    assert bundle.split_sizes["val"] == 10


def test_evaluation_batches_are_ordered_and_keep_the_last_partial_batch(fake_root):
    bundle = build(fake_root, eval_batch_size=64, augment=AugmentConfig(erasing=1.0))
    _, val = split_indices(torch.from_numpy(balanced_labels(N_TRAIN, 1)).long(), val_size=VAL, subset=None, seed=0)
    batches = epoch_indices(bundle.val, bundle)  # val is never augmented, so decoding works
    assert [len(b) for b in batches] == [64, 36] and len(bundle.val) == 2
    assert torch.equal(torch.cat(batches), val)
    test_batches = epoch_indices(bundle.test, bundle)
    assert torch.equal(torch.cat(test_batches), torch.arange(N_TEST))


def test_epochs_reshuffle_and_the_same_epoch_repeats_exactly(fake_root):
    augment = AugmentConfig(crop_padding=4, hflip=True, erasing=0.5)
    bundle = build(fake_root, image_size=32, augment=augment)
    bundle.train.set_epoch(0)
    order_0 = [y for _, y in bundle.train]
    bundle.train.set_epoch(1)
    epoch_1 = list(bundle.train)
    again = list(bundle.train)
    assert not torch.equal(torch.cat(order_0), torch.cat([y for _, y in epoch_1]))
    resumed = build(fake_root, image_size=32, augment=augment)  # a fresh process resuming at epoch 1
    resumed.train.set_epoch(1)
    for (x1, y1), (x2, y2), (x3, y3) in zip(epoch_1, again, resumed.train, strict=True):
        assert torch.equal(x1, x2) and torch.equal(x1, x3)
        assert torch.equal(y1, y2) and torch.equal(y1, y3)


def identity_transform(image_size: int = 28) -> BatchTransform:
    return BatchTransform([0.0], [1 / 255], image_size)  # float pixel values 0..255, unchanged


def test_rank_shards_are_disjoint_equal_and_cover_the_epoch():
    n = 899  # not a multiple of 3 ranks: two samples sit out each epoch
    images = torch.from_numpy(indexed_images(n)).unsqueeze(1)
    labels = torch.zeros(n, dtype=torch.long)
    shards = []
    for rank in range(3):
        batcher = DeviceBatcher(images, labels, torch.arange(n), batch_size=299, train=True,
                                transform=identity_transform(), device="cpu", seed=4, rank=rank, world_size=3)
        batcher.set_epoch(2)
        shard = torch.cat([decode_indices(x, [0.0], [1 / 255]) for x, _ in batcher])
        assert len(shard) == batcher.num_samples == 299
        shards.append(set(shard.tolist()))
    assert not (shards[0] & shards[1] or shards[0] & shards[2] or shards[1] & shards[2])
    assert len(shards[0] | shards[1] | shards[2]) == 897


def test_evaluation_shards_cover_the_split_exactly_once():
    n = 101
    images = torch.from_numpy(indexed_images(n)).unsqueeze(1)
    labels = torch.zeros(n, dtype=torch.long)
    seen = []
    for rank in range(3):
        batcher = DeviceBatcher(images, labels, torch.arange(n), batch_size=16, train=False,
                                transform=identity_transform(), device="cpu", seed=0, rank=rank, world_size=3)
        seen.append(torch.cat([decode_indices(x, [0.0], [1 / 255]) for x, _ in batcher]))
    assert [len(s) for s in seen] == [34, 34, 33]
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(n))


def test_dataloader_path_yields_the_same_batches_as_the_device_path(fake_root):
    augment = AugmentConfig(crop_padding=2, hflip=True, erasing=0.5)
    on_device = build(fake_root, augment=augment, loader="device")
    through_loader = build(fake_root, augment=augment, loader="dataloader", num_workers=0)
    assert isinstance(through_loader.train, LoaderBatcher) and isinstance(on_device.train, DeviceBatcher)
    for split in ("train", "val", "test"):
        a, b = getattr(on_device, split), getattr(through_loader, split)
        a.set_epoch(3), b.set_epoch(3)
        assert len(a) == len(b)
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_dataloader_workers_follow_set_epoch(fake_root):
    through_loader = build(fake_root, loader="dataloader", num_workers=2, subset=300)
    on_device = build(fake_root, loader="auto", subset=300)
    for epoch in (0, 1):
        through_loader.train.set_epoch(epoch), on_device.train.set_epoch(epoch)
        from_workers = epoch_indices(through_loader.train, through_loader)
        assert torch.equal(torch.cat(from_workers), torch.cat(epoch_indices(on_device.train, on_device)))
        assert len(set(torch.cat(from_workers).tolist())) == 300


# ---------------------------------------------------------------- augmentation


def test_random_crop_keeps_the_shape_and_cuts_a_window_of_the_padded_image():
    images = torch.randint(1, 256, (16, 2, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = random_crop(images, 2, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    windows = {(dy, dx) for dy in range(5) for dx in range(5)}
    for sample, original in zip(out, padded):
        matches = [w for w in windows if torch.equal(sample, original[:, w[0]:w[0] + 6, w[1]:w[1] + 6])]
        assert matches, "every crop must be one window of the zero-padded image"
    assert (out == 0).any()  # some windows reach into the padding
    assert torch.equal(random_crop(images, 0, torch.Generator()), images)


def test_random_hflip_mirrors_exactly_the_flipped_samples():
    images = torch.rand(64, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    out = random_hflip(images, torch.Generator().manual_seed(2))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images)])
    assert (flipped ^ kept).all()  # each sample is either mirrored or untouched
    assert 10 < flipped.sum() < 54


def test_random_erasing_zeroes_one_rectangle_per_erased_sample():
    images = torch.ones(32, 2, 16, 12)
    out = random_erasing(images, 1.0, torch.Generator().manual_seed(3))
    for sample in out:
        zero = sample == 0
        assert torch.equal(zero[0], zero[1])  # all channels share the box
        rows, cols = torch.nonzero(zero[0], as_tuple=True)
        assert len(rows) > 0
        box = zero[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all() and int(zero[0].sum()) == box.numel()  # a filled rectangle, nothing else
    assert torch.equal(random_erasing(images, 0.0, torch.Generator()), images)
    half = random_erasing(images, 0.5, torch.Generator().manual_seed(4))
    erased = (half == 0).flatten(1).any(1)
    assert 0 < erased.sum() < 32


@pytest.mark.parametrize("size", [28, 32, 64, 224])
def test_transform_resizes_to_the_image_size(size):
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    transform = BatchTransform([0.3], [0.35], size, AugmentConfig(erasing=0.5))
    assert transform(images, torch.Generator().manual_seed(0)).shape == (3, 1, size, size)


def test_transform_normalises_onto_the_expected_range():
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    mean, std = 0.25, 0.5
    plain = BatchTransform([mean], [std], 16)(images)
    assert plain.min().item() == pytest.approx((0 - mean) / std)
    assert plain.max().item() == pytest.approx((1 - mean) / std)
    assert torch.allclose(plain, (images.float() / 255 - mean) / std, atol=1e-6)
    cropped = BatchTransform([mean], [std], 16, AugmentConfig(crop_padding=4, hflip=False))
    out = cropped(images.expand(64, 1, 16, 16).contiguous(), torch.Generator().manual_seed(0))
    assert out.min().item() == pytest.approx(-mean / std)  # zero padding is black, like pixel value 0
    with pytest.raises(ValueError):
        cropped(images)  # augmenting needs a generator


# ---------------------------------------------------------------- configuration and errors


def test_augment_config_from_dict():
    config = AugmentConfig.from_dict({"crop_padding": 2, "erasing": 0.25})
    assert config == AugmentConfig(crop_padding=2, hflip=True, erasing=0.25)
    assert AugmentConfig.from_dict(config.to_dict()) == config
    assert not AugmentConfig.off().enabled and AugmentConfig().enabled
    with pytest.raises(UserError, match="unknown augment option.*cutout"):
        AugmentConfig.from_dict({"cutout": 0.5})
    for bad in ({"crop_padding": -1}, {"erasing": 1.5}, {"hflip": "yes"}, {"crop_padding": 2.5}):
        with pytest.raises(UserError):
            AugmentConfig.from_dict(bad)


def test_resolve_data_dir_prefers_argument_then_environment_then_dot_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLASSICNETS_DATA", raising=False)
    assert resolve_data_dir(None) == tmp_path / "data"
    monkeypatch.setenv("CLASSICNETS_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir("given") == tmp_path / "given"


def test_unknown_dataset_is_a_user_error(fake_root):
    assert "fashion-mnist" in list_datasets()
    with pytest.raises(UserError, match=r"unknown dataset 'fashion_mnist'.*fashion-mnist"):
        build_data("fashion_mnist", data_dir=fake_root, image_size=28, batch_size=8, eval_batch_size=8,
                   device="cpu", seed=0)


def test_missing_data_without_download_names_the_directory(tmp_path):
    with pytest.raises(UserError) as error:
        build(tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "train-images-idx3-ubyte" in message


def test_failed_download_names_the_directory(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(self):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", offline)
    with pytest.raises(UserError, match="download failed") as error:
        build(tmp_path, download=True)
    assert str(tmp_path / "FashionMNIST" / "raw") in str(error.value)


def test_unreadable_files_are_a_user_error(tmp_path, fake_root):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for file in (fake_root / "FashionMNIST" / "raw").iterdir():
        (raw / file.name).write_bytes(file.read_bytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(UserError, match="could not read Fashion-MNIST"):
        build(tmp_path)


@pytest.mark.parametrize("overrides, words", [
    ({"loader": "gpu"}, "unknown loader"),
    ({"subset": 901}, "subset must be between 1 and the 900"),
    ({"val_size": 0}, "val_size must be between 1 and 999"),
    ({"rank": 2, "world_size": 2}, "rank must be in"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"seed": -1}, "seed must be 0 or more"),
])
def test_bad_arguments_are_user_errors(fake_root, overrides, words):
    with pytest.raises(UserError, match=words):
        build(fake_root, **overrides)


def test_real_fashion_mnist_bundle(fashion_mnist_dir):
    bundle = build_data("fashion-mnist", data_dir=fashion_mnist_dir, image_size=32, batch_size=128,
                        eval_batch_size=500, device="cpu", seed=0, subset=2700, augment=AugmentConfig())
    assert bundle.split_sizes == {"train": 2700, "val": 300, "test": 10_000}
    assert bundle.mean[0] == pytest.approx(0.286, abs=0.01) and bundle.std[0] == pytest.approx(0.353, abs=0.01)
    images, labels = next(iter(bundle.train))
    assert images.shape == (128, 1, 32, 32) and labels.max() < 10
    assert len(bundle.test) == 20 and bundle.test.num_samples == 10_000
