"""Photo datasets: layouts, splits and manifests, image reading, bad files, statistics,
the decoded-photo cache, device-side augmentation, CIFAR-10/STL-10 readers, and the
``split`` and ``stats`` commands. Every image is generated in tmp_path; one test reads
a few of the real shared photos when they are present."""

from __future__ import annotations

import collections
import errno
import io
import json
import logging
import os
import pickle
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from classicnets.cli.main import main
import classicnets.data.photo_cache as photo_cache
from classicnets.data.array_datasets import load_cifar10, load_stl10
from classicnets.data.image_io import BadImageError, check_header, load_rgb, resize_center_crop
from classicnets.data.manifest import (MANIFEST_NAME, copy_split, kaggle_root, list_folder, list_kaggle, make_split,
                                       read_manifest, write_manifest)
from classicnets.data.photo_augment import (PhotoAugmentConfig, PhotoTransform, colour_jitter, crop_flip_params,
                                            crop_grid, crop_matrices)
from classicnets.data import build_data
from classicnets.data.photos import open_split
from classicnets.data.stats import files_mean_std, tensor_mean_std
from classicnets.data.validate import check_images, drop_bad_images
from classicnets.errors import UserError

# torchvision 0.29 deprecates its image codecs; the library silences that, pytest re-enables it.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

SHARED_PHOTOS = Path(os.environ.get("CLASSICNETS_DATA") or
                     Path(__file__).resolve().parents[1].parent / "shared" / "data") / "cats-vs-dogs" / "train"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache folder: nothing leaks between tests or into ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLASSICNETS_CACHE", str(cache))
    return cache


def random_rgb(seed: int, size: tuple[int, int] = (40, 30)) -> np.ndarray:
    """A smooth-ish random image (width, height) = size, uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, fmt: str | None = None, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt, **kwargs)
    return path


def make_kaggle(root: Path, cats: int, dogs: int) -> Path:
    for i in range(cats):
        save(root / "train" / f"cat.{i}.jpg", random_rgb(i), quality=95)
    for i in range(dogs):
        save(root / "train" / f"dog.{i}.jpg", random_rgb(1000 + i), quality=95)
    return root


def make_folder(root: Path, counts: dict[str, int], fmt: str = "png") -> Path:
    seed = 0
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            save(root / name / f"{name}_{i}.{fmt}", random_rgb(seed))
            seed += 1
    return root


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels, followed by a tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------- layouts

def test_kaggle_layout_labels_from_names_and_ignores_test1_and_strangers(tmp_path, caplog):
    root = make_kaggle(tmp_path / "cats-vs-dogs", cats=3, dogs=2)
    save(root / "test1" / "1.jpg", random_rgb(7))  # Kaggle's unlabeled test set
    for stranger in ("cat_9.jpg", "bird.1.jpg", "dog.jpg", "cat.x.jpg"):
        save(root / "train" / stranger, random_rgb(8))
    (root / "train" / "notes.txt").write_text("not a photo")

    assert kaggle_root(tmp_path) == root  # DATA_DIR/cats-vs-dogs
    assert kaggle_root(root) == root  # or the folder itself
    with caplog.at_level(logging.WARNING):
        images = list_kaggle(root)
    assert images.class_names == ["cat", "dog"]
    assert sorted(zip(images.paths, images.labels)) == [
        ("train/cat.0.jpg", 0), ("train/cat.1.jpg", 0), ("train/cat.2.jpg", 0),
        ("train/dog.0.jpg", 1), ("train/dog.1.jpg", 1)]
    assert "ignored 5 file(s)" in caplog.text and "bird.1.jpg" in caplog.text


def test_kaggle_layout_errors(tmp_path):
    with pytest.raises(UserError, match="no Dogs-vs-Cats photos under"):
        kaggle_root(tmp_path)
    root = make_kaggle(tmp_path / "only-cats", cats=2, dogs=0)
    with pytest.raises(UserError, match="only cat photos"):
        list_kaggle(root)


def test_class_per_subfolder_layout(tmp_path):
    root = make_folder(tmp_path / "flowers", {"tulip": 2, "daisy": 3})
    save(root / "daisy" / "nested" / "deep.webp", random_rgb(50), fmt="WEBP")
    (root / "daisy" / "README.txt").write_text("ignored: not an image extension")
    save(root / "tulip" / ".hidden.png", random_rgb(51))
    images = list_folder(root)
    assert images.class_names == ["daisy", "tulip"]
    assert images.splits == [None] * 6
    assert dict(zip(images.paths, images.labels))["daisy/nested/deep.webp"] == 0
    assert sorted(images.labels) == [0, 0, 0, 0, 1, 1]


def test_presplit_layout_keeps_its_parts_and_cuts_missing_val_from_train(tmp_path):
    root = tmp_path / "split"
    make_folder(root / "train", {"a": 10, "b": 10})
    make_folder(root / "test", {"a": 2, "b": 1})
    images = list_folder(root)
    assert images.class_names == ["a", "b"]
    assert images.splits.count("train") == 20 and images.splits.count("test") == 3
    assignment = make_split(images, val=0.2, test=0.5, seed=0)  # test exists: its fraction is unused
    assert assignment.count("test") == 3 and assignment.count("val") == 4 and assignment.count("train") == 16
    test_paths = {p for p, s in zip(images.paths, assignment) if s == "test"}
    assert all(p.startswith("test/") for p in test_paths)


@pytest.mark.parametrize("counts, message", [
    ({"only": 3}, "only one class folder"),
    ({"a": 2, "empty": 0}, "class folder\\(s\\) empty .* have no images"),
    ({}, "has no class subfolders"),
])
def test_folder_structure_errors(tmp_path, counts, message):
    root = make_folder(tmp_path / "data", counts)
    root.mkdir(exist_ok=True)
    with pytest.raises(UserError, match=message):
        list_folder(root)


def test_presplit_layout_with_a_class_missing_from_train(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train", {"a": 2, "b": 2})
    make_folder(root / "val", {"a": 1, "c": 1})
    with pytest.raises(UserError, match="class folder\\(s\\) c that .* lacks"):
        list_folder(root)


def test_presplit_layout_with_valid_folder_and_extra_folders(tmp_path, caplog):
    # "valid/" is the validation folder, and a stray folder beside the splits is left out
    # (with a warning) instead of turning train/valid/... into class names.
    root = tmp_path / "data"
    make_folder(root / "train", {"a": 4, "b": 4})
    make_folder(root / "Valid", {"a": 1, "b": 1})
    make_folder(root / "unlabeled", {"x": 2})
    with caplog.at_level(logging.WARNING):
        images = list_folder(root)
    assert images.class_names == ["a", "b"]
    assert images.splits.count("train") == 8 and images.splits.count("val") == 2
    assert all(p.startswith("Valid/") for p, s in zip(images.paths, images.splits) if s == "val")
    assert "ignored folder(s) unlabeled" in caplog.text


def test_presplit_layout_refuses_two_val_folders_and_loose_images(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train", {"a": 2, "b": 2})
    make_folder(root / "val", {"a": 1})
    make_folder(root / "validation", {"b": 1})
    with pytest.raises(UserError, match="has both val/ and validation/"):
        list_folder(root)
    shutil.rmtree(root / "validation")
    save(root / "val" / "loose.png", random_rgb(9))
    with pytest.raises(UserError, match="1 image\\(s\\) outside any class folder \\(e.g. loose.png\\)"):
        list_folder(root)


# ----------------------------------------------------------------------------- splits and manifests

def _labelled(tmp_path: Path, per_class: dict[str, int]):
    root = make_folder(tmp_path / "ds", per_class)
    return list_folder(root)


def test_split_is_stratified_and_reproducible(tmp_path):
    images = _labelled(tmp_path, {"a": 60, "b": 30, "c": 10})
    first = make_split(images, val=0.1, test=0.2, seed=3)
    assert first == make_split(images, val=0.1, test=0.2, seed=3)
    assert first != make_split(images, val=0.1, test=0.2, seed=4)
    per = {(s, images.class_names[label]): 0 for s in ("train", "val", "test") for label in range(3)}
    for split, label in zip(first, images.labels):
        per[(split, images.class_names[label])] += 1
    # 20 test and 10 val images, each class in proportion 6:3:1.
    assert [per[("test", c)] for c in "abc"] == [12, 6, 2]
    assert [per[("val", c)] for c in "abc"] == [6, 3, 1]
    assert [per[("train", c)] for c in "abc"] == [42, 21, 7]


def test_split_refuses_fractions_that_leave_nothing(tmp_path):
    images = _labelled(tmp_path, {"a": 4, "b": 4})
    with pytest.raises(UserError, match="leave images to train on"):
        make_split(images, val=0.5, test=0.5)


def test_manifest_round_trip_and_errors(tmp_path):
    images = _labelled(tmp_path, {"a": 5, "b": 5})
    assignment = make_split(images, val=0.2, test=0.2, seed=1)
    manifest = tmp_path / "m" / "split.csv"
    write_manifest(manifest, images, assignment)
    lines = manifest.read_text().splitlines()
    assert lines[0] == "split,label,path" and len(lines) == 11
    assert all(not line.split(",")[2].startswith("/") for line in lines[1:])  # relative paths
    back = read_manifest(manifest, images.root)
    assert sorted(zip(back.paths, back.labels, back.splits)) == sorted(zip(images.paths, images.labels, assignment))

    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\n")
    with pytest.raises(UserError, match="is not a split manifest"):
        read_manifest(bad, images.root)
    bad.write_text("split,label,path\ntrain,a,a/a_0.png\nholdout,b,b/b_0.png\n")
    with pytest.raises(UserError, match="line 3 is not 'split,label,path'"):
        read_manifest(bad, images.root)
    bad.write_text("split,label,path\ntrain,a,a/a_0.png\ntest,b,b/gone.png\n")
    with pytest.raises(UserError, match="1 file\\(s\\) listed .* are not under"):
        read_manifest(bad, images.root)


def test_default_manifest_location_is_used_by_open_split(tmp_path):
    images = _labelled(tmp_path, {"a": 10, "b": 10})
    default = open_split(f"folder:{images.root}", None)
    assert default.manifest is None and default.assignment == make_split(images)  # the default split
    other = make_split(images, val=0.3, test=0.3, seed=9)
    write_manifest(images.root / MANIFEST_NAME, images, other)
    chosen = open_split(f"folder:{images.root}", None)
    assert chosen.manifest == images.root / MANIFEST_NAME
    assert dict(zip(chosen.images.paths, chosen.assignment)) == dict(zip(images.paths, other))


def test_copy_split_materialises_a_presplit_tree(tmp_path):
    images = _labelled(tmp_path, {"a": 6, "b": 4})
    assignment = make_split(images, val=0.2, test=0.2, seed=0)
    counts = copy_split(images, assignment, tmp_path / "copy")
    assert counts == {"train": 6, "val": 2, "test": 2}
    copied = list_folder(tmp_path / "copy")
    assert copied.class_names == ["a", "b"]
    assert sorted(copied.splits) == sorted(assignment)
    with pytest.raises(UserError, match="is not empty"):
        copy_split(images, assignment, tmp_path / "copy")


# ----------------------------------------------------------------------------- reading images

def test_load_rgb_handles_grey_rgba_16bit_webp_and_exif(tmp_path):
    grey = save(tmp_path / "grey.png", np.full((6, 5), 77, np.uint8))
    assert torch.equal(load_rgb(grey), torch.full((3, 6, 5), 77, dtype=torch.uint8))

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    assert load_rgb(save(tmp_path / "rgba.png", rgba))[:, 0, 0].tolist() == [200, 0, 0]  # alpha dropped

    deep = np.full((3, 3), 65535, np.uint16)
    deep[0, 0] = 257 * 100
    image16 = load_rgb(save(tmp_path / "deep.png", deep))
    assert image16.dtype == torch.uint8 and image16[:, 0, 0].tolist() == [100] * 3 and image16[0, 1, 1] == 255

    webp = save(tmp_path / "x.webp", np.full((8, 9, 3), 128, np.uint8), fmt="WEBP", lossless=True)
    assert load_rgb(webp).shape == (3, 8, 9)

    # A landscape JPEG stored with EXIF orientation 6 ("rotate 90 degrees clockwise to view").
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "exif.jpg"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(rotated, exif=exif)
    assert load_rgb(rotated).shape == (3, 40, 20)


def test_load_rgb_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((6, 8, 3), value, np.uint8)) for value in (10, 240)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = load_rgb(gif)
    assert image.shape == (3, 6, 8)
    assert abs(int(image.float().mean()) - 10) <= 2  # the first frame, not the second (GIF palette rounding)


def test_load_rgb_scales_wide_grey_by_mode_not_by_content(tmp_path):
    # A dark 16-bit TIFF (PIL's path): 200 of 65535 is nearly black, not 200 of 255.
    dark = tmp_path / "dark16.tif"
    Image.fromarray(np.full((4, 4), 200, np.uint16)).save(dark)
    assert load_rgb(dark).max() == 1
    bright = tmp_path / "float.tif"  # float images are read as [0, 1]
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(bright)
    assert load_rgb(bright)[:, 0, 0].tolist() == [128] * 3


def test_load_rgb_turns_webp_upright_from_exif(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    webp = tmp_path / "exif.webp"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(webp, exif=exif, lossless=True)
    assert load_rgb(webp).shape == (3, 60, 40)


def test_a_limit_above_pils_own_is_honoured(tmp_path):
    header = png_header_only(tmp_path / "big.png", 15_000, 12_000)  # 180 MP: over 2x PIL's default ceiling
    with pytest.raises(BadImageError, match="too large to decode safely"):
        check_header(header, max_pixels=100_000_000)
    assert check_header(header, max_pixels=200_000_000) == (15_000, 12_000)


def test_resize_center_crop_keeps_the_centre_square():
    image = torch.zeros(3, 20, 40, dtype=torch.uint8)
    image[:, :, 10:30] = 255  # the centre 20x20 square is white, the sides black
    out = resize_center_crop(image, 10)
    assert out.shape == (3, 10, 10) and out.dtype == torch.uint8
    # Inside the square stays white; only its border columns pick up some black from the
    # antialiasing filter, equally on both sides.
    assert int(out[:, :, 1:-1].min()) == 255 and int(out[:, :, 0].max()) < 255
    assert torch.equal(out, out.flip(-1))


# ----------------------------------------------------------------------------- bad files

def make_bad_files(folder: Path) -> dict[str, str]:
    """Each kind of bad file, with the words its verdict must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(3, (64, 64))).save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "text.jpg").write_text("this is not a JPEG")
    png_header_only(folder / "huge.png", 100_000, 100_000)
    return {"zero.jpg": "empty file", "truncated.jpg": "truncated or corrupt", "text.jpg": "not an image",
            "huge.png": "too large to decode safely"}


def test_each_kind_of_bad_file_is_named_with_its_reason(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 3, "b": 3})
    expected = make_bad_files(root / "a")
    images = list_folder(root)
    report = check_images(images, progress=False)
    assert report.checked == 10 and report.decoded == 10
    assert {Path(p).name: why for p, why in report.bad.items()}.keys() == expected.keys()
    for rel, why in report.bad.items():
        assert expected[Path(rel).name] in why

    with pytest.raises(UserError) as error:
        drop_bad_images(images, report, skip_bad=False)
    message = str(error.value)
    assert message.startswith("4 bad image file(s) in") and "--skip-bad" in message
    assert all(f"a/{name}" in message for name in expected)

    kept = drop_bad_images(images, report, skip_bad=True)
    assert len(kept) == 6 and not set(kept.paths) & set(report.bad)

    # The verdicts are cached: a second check decodes nothing, a touched file again.
    assert check_images(images, progress=False).decoded == 0
    (root / "b" / "b_0.png").write_bytes((root / "b" / "b_1.png").read_bytes())
    again = check_images(images, progress=False)
    assert again.decoded == 1 and again.bad == report.bad


def test_header_check_stops_large_images_before_decoding(tmp_path):
    small = save(tmp_path / "s.png", random_rgb(0, (64, 64)))
    assert check_header(small) == (64, 64)
    with pytest.raises(BadImageError, match="64x64 pixels, limit 1,000"):
        check_header(small, max_pixels=1000)


def test_a_class_emptied_by_skipping_bad_files_is_an_error(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 2})
    (root / "b").mkdir()
    (root / "b" / "broken.jpg").write_text("nope")
    images = list_folder(root)
    with pytest.raises(UserError, match="class\\(es\\) b have no usable images"):
        drop_bad_images(images, check_images(images, progress=False), skip_bad=True)


def test_a_class_left_without_training_images_is_an_error(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train", {"a": 2})
    make_folder(root / "test", {"a": 1, "b": 1})
    (root / "train" / "b").mkdir()
    (root / "train" / "b" / "broken.jpg").write_text("nope")
    images = list_folder(root)
    with pytest.raises(UserError, match="class\\(es\\) b have no training images"):
        drop_bad_images(images, check_images(images, progress=False), skip_bad=True)


def test_many_bad_files_are_all_named_when_the_cache_is_unwritable(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 2, "b": 2})
    for i in range(25):
        (root / "a" / f"zero{i:02d}.jpg").write_bytes(b"")
    images = list_folder(root)
    report = check_images(images, progress=False, cache_dir=tmp_path / "cache")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(UserError) as error:
        drop_bad_images(images, report, skip_bad=False, cache_dir=blocked / "cache")
    assert all(f"a/zero{i:02d}.jpg" in str(error.value) for i in range(25))


def test_stats_command_stops_on_bad_files_with_exit_2(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", {"a": 6, "b": 6})
    make_bad_files(root / "b")
    code = main(["stats", f"folder:{root}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    # Only the training split is read, so the message names the bad files that fell there.
    assert re.search(r"error: [1-4] bad image file\(s\) in .*; remove or replace them", err)
    assert main(["stats", f"folder:{root}", "--skip-bad", "--json"]) == 0


# ----------------------------------------------------------------------------- statistics

def test_streamed_statistics_are_exact(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((5, 7), (9, 4), (6, 6))]
    root = tmp_path / "ds"
    for i, array in enumerate(arrays):
        save(root / ("a" if i % 2 else "b") / f"{i}.png", array)
    images = list_folder(root)
    mean, std = files_mean_std(images, workers=2, progress=False)
    pixels = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.float64) / 255
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, pixels.std(0), rtol=0, atol=1e-12)

    batch = torch.from_numpy(rng.integers(0, 256, (37, 3, 5, 5), dtype=np.uint8))
    mean, std = tensor_mean_std(batch, chunk=8)
    direct = batch.double() / 255
    np.testing.assert_allclose(mean, direct.mean((0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(std, direct.std((0, 2, 3), unbiased=False), atol=1e-12)


def test_stats_command_reports_the_training_split(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", {"a": 10, "b": 10})
    manifest = tmp_path / "split.csv"
    assert main(["split", f"folder:{root}", "--val", "0.2", "--test", "0.2", "--seed", "5",
                 "--out", str(manifest)]) == 0
    assert "12 train / 4 val / 4 test images" in capsys.readouterr().out
    assert main(["stats", f"folder:{root}", "--manifest", str(manifest), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    train = read_manifest(manifest, root)
    train = train.select([i for i, s in enumerate(train.splits) if s == "train"])
    pixels = np.concatenate([np.asarray(Image.open(f)).reshape(-1, 3) for f in train.files()]) / 255
    assert result["images"] == 12
    np.testing.assert_allclose(result["mean"], pixels.mean(0), atol=1e-12)
    np.testing.assert_allclose(result["std"], pixels.std(0), atol=1e-12)


# ----------------------------------------------------------------------------- augmentation

def test_crop_grid_equals_affine_grid():
    generator = torch.Generator().manual_seed(0)
    params = crop_flip_params(6, 50, 40, PhotoAugmentConfig(), generator, torch.device("cpu"))
    expected = F.affine_grid(crop_matrices(params), [6, 3, 24, 24], align_corners=False)
    torch.testing.assert_close(crop_grid(params, 24), expected, rtol=0, atol=1e-6)


def test_eval_transform_is_exact_normalisation():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    out = PhotoTransform(mean, std, 16)(images)
    expected = (images.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1).double()) / torch.tensor(
        std).view(1, 3, 1, 1).double()
    assert out.dtype == torch.float32 and out.shape == (4, 3, 16, 16)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    assert PhotoTransform(mean, std, 8)(images).shape == (4, 3, 8, 8)  # resized when sizes differ


def test_flip_only_augmentation_mirrors_whole_samples():
    images = torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8)
    config = PhotoAugmentConfig(scale=(1, 1), brightness=0, contrast=0, saturation=0)
    out = PhotoTransform([0.0] * 3, [1.0] * 3, 12, config)(images, torch.Generator().manual_seed(1))
    plain = images.float() / 255
    same = (out - plain).abs().amax((1, 2, 3)) < 1e-5
    mirrored = (out - plain.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 32


def test_full_augmentation_shapes_ranges_and_reproducibility():
    images = torch.randint(0, 256, (64, 3, 20, 20), dtype=torch.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]
    config = PhotoAugmentConfig(scale=(0.2, 1.0), erasing=0.5)
    transform = PhotoTransform(mean, std, 16, config)
    out = transform(images, torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 16, 16) and out.dtype == torch.float32
    low = (0 - torch.tensor(mean)) / torch.tensor(std)
    high = (1 - torch.tensor(mean)) / torch.tensor(std)
    per_channel = out.transpose(0, 1).reshape(3, -1)
    assert bool((per_channel.min(1).values >= low - 1e-5).all())
    assert bool((per_channel.max(1).values <= high + 1e-5).all())
    assert int((out == 0).all(1).flatten(1).any(1).sum()) > 10  # random erasing hit a good share
    torch.testing.assert_close(out, transform(images, torch.Generator().manual_seed(0)), rtol=0, atol=0)
    assert not torch.equal(out, transform(images, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="needs a generator"):
        transform(images)


def test_colour_jitter_is_brightness_then_contrast_then_saturation():
    x = torch.rand(6, 3, 8, 8) * 0.5 + 0.25  # mid-range values: no step saturates
    config = PhotoAugmentConfig(brightness=0.4, contrast=0.3, saturation=0.5)
    out = colour_jitter(x.clone(), config, torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(3)

    def factor(strength: float) -> torch.Tensor:
        return (1 - strength + 2 * strength * torch.rand(6, generator=draws)).view(6, 1, 1, 1)

    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    y = x * factor(0.4)
    mean_grey = (y * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    contrast = factor(0.3)
    y = contrast * y + (1 - contrast) * mean_grey
    saturation = factor(0.5)
    y = saturation * y + (1 - saturation) * (y * luma).sum(1, keepdim=True)
    torch.testing.assert_close(out, y.clamp(0, 1), rtol=0, atol=1e-6)


def test_augment_config_from_dict_and_errors():
    config = PhotoAugmentConfig.from_dict({"scale": [0.5, 1.0], "brightness": 0.2})
    assert config.scale == (0.5, 1.0) and config.brightness == 0.2 and config.to_dict()["scale"] == [0.5, 1.0]
    assert not PhotoAugmentConfig.off().enabled
    with pytest.raises(UserError, match="unknown photo augment option\\(s\\) rotate"):
        PhotoAugmentConfig.from_dict({"rotate": 10})
    with pytest.raises(UserError, match="scale must be two fractions"):
        PhotoAugmentConfig(scale=(0.5, 1.5))


# ----------------------------------------------------------------------------- building the data

DiskUsage = collections.namedtuple("DiskUsage", "total used free")  # shutil.disk_usage's answer


def no_room_to_preallocate(fd, offset, length):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def cannot_preallocate_here(fd, offset, length):  # some filesystems do not support it
    raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))


@pytest.mark.parametrize("no_room", ["free space", "preallocation"])
def test_a_photo_cache_without_room_is_decoded_in_memory(tmp_path, monkeypatch, caplog, no_room):
    """A write through a memory map into a sparse file on a full disk kills the process with
    SIGBUS (seen on a full tmpfs), so the room is checked and reserved before decoding."""
    images = list_folder(make_folder(tmp_path / "photos", {"cat": 3, "dog": 2}))
    expected = photo_cache.load_photos(images, 16, progress=False, cache_dir=tmp_path / "room")
    if no_room == "free space":
        monkeypatch.setattr(photo_cache.shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9, 0))
    else:
        monkeypatch.setattr(photo_cache.os, "posix_fallocate", no_room_to_preallocate, raising=False)
    cache = tmp_path / "full"
    with caplog.at_level(logging.WARNING):
        pixels = photo_cache.load_photos(images, 16, progress=False, cache_dir=cache)
    assert torch.equal(pixels, expected)
    assert "(No space left on device); decoding in memory" in caplog.text
    assert list(cache.iterdir()) == []  # neither a cache nor its temporary file


def test_a_filesystem_that_cannot_preallocate_still_gets_the_cache(tmp_path, monkeypatch):
    images = list_folder(make_folder(tmp_path / "photos", {"cat": 2, "dog": 1}))
    monkeypatch.setattr(photo_cache.os, "posix_fallocate", cannot_preallocate_here, raising=False)
    pixels = photo_cache.load_photos(images, 16, progress=False, cache_dir=tmp_path / "cache")
    [cached] = (tmp_path / "cache").iterdir()
    assert torch.equal(torch.from_numpy(np.load(cached)), pixels)


def test_build_data_photos_on_a_folder(tmp_path, private_cache):
    root = make_folder(tmp_path / "ds", {"a": 20, "b": 10})
    options = dict(data_dir=None, image_size=16, batch_size=8, eval_batch_size=5, device="cpu", seed=0,
                   augment={"erasing": 0.25}, progress=False)
    data = build_data(f"folder:{root}", **options)
    assert data.class_names == ["a", "b"] and data.num_classes == 2 and data.in_chans == 3
    assert data.split_sizes == {"train": 24, "val": 3, "test": 3}
    assert len(data.train) == 3 and data.train.num_samples == 24 and len(data.val) == 1
    images, labels = next(iter(data.train))
    assert images.shape == (8, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.int64
    test_images, _ = next(iter(data.test))
    assert test_images.shape == (3, 3, 16, 16)

    # Mean and std are the exact statistics of the decoded training images.
    split = open_split(f"folder:{root}", None)
    train = split.part("train")
    decoded = torch.stack([resize_center_crop(load_rgb(f), 16) for f in train.files()])
    np.testing.assert_allclose(data.mean, tensor_mean_std(decoded)[0], atol=1e-12)
    np.testing.assert_allclose(data.std, tensor_mean_std(decoded)[1], atol=1e-12)

    # A second build reads the cached photos back instead of decoding them.
    cached = sorted(private_cache.glob("photos-*.npy"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = build_data(f"folder:{root}", **options)
    assert cached[0].stat().st_mtime_ns == stamp and again.mean == data.mean
    data.train.set_epoch(3)
    again.train.set_epoch(3)
    torch.testing.assert_close(next(iter(data.train))[0], next(iter(again.train))[0], rtol=0, atol=0)


def test_build_data_photos_stops_on_bad_files_or_skips_them(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 10, "b": 10})
    make_bad_files(root / "a")
    options = dict(data_dir=None, image_size=8, batch_size=4, eval_batch_size=4, device="cpu", seed=0,
                   progress=False)
    with pytest.raises(UserError, match="4 bad image file"):
        build_data(f"folder:{root}", **options)
    data = build_data(f"folder:{root}", skip_bad=True, **options)
    assert sum(data.split_sizes.values()) == 20


def test_build_data_photos_refuses_mean_and_std_of_the_wrong_length(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 4, "b": 4})
    with pytest.raises(UserError, match="3 channels \\(RGB\\): give mean and std as 3 numbers each, got 2 and 2"):
        build_data(f"folder:{root}", data_dir=None, image_size=8, batch_size=4, eval_batch_size=4,
                         device="cpu", seed=0, mean=[0.5, 0.5], std=[0.2, 0.2], progress=False)


def test_build_data_photos_subset_and_kaggle(tmp_path):
    make_kaggle(tmp_path / "cats-vs-dogs", cats=30, dogs=30)
    data = build_data("cats-vs-dogs", data_dir=tmp_path, image_size=8, batch_size=4, eval_batch_size=8,
                            device="cpu", seed=1, subset=10, augment=None, progress=False)
    assert data.class_names == ["cat", "dog"]
    assert data.split_sizes == {"train": 10, "val": 2, "test": 6}  # the test part stays whole
    with pytest.raises(UserError, match="subset must be between 1 and the 48"):
        build_data("cats-vs-dogs", data_dir=tmp_path, image_size=8, batch_size=4, eval_batch_size=8,
                         device="cpu", seed=1, subset=49, progress=False)


# ----------------------------------------------------------------------------- CIFAR-10 and STL-10

def write_cifar(root: Path, per_batch: int = 10) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        if first is None:
            first = (data, labels)
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, handle, protocol=2)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, handle, protocol=2)
    return first


def test_cifar10_reader_on_tiny_batches(tmp_path):
    data, labels = write_cifar(tmp_path)
    splits = load_cifar10(tmp_path, download=False)
    assert splits.train_images.shape == (50, 3, 32, 32) and splits.test_images.shape == (10, 3, 32, 32)
    # R plane first, each plane row-major.
    assert int(splits.train_images[0, 0, 0, 1]) == data[0, 1]
    assert int(splits.train_images[0, 1, 2, 3]) == data[0, 1024 + 2 * 32 + 3]
    assert splits.train_labels[:10].tolist() == labels
    assert splits.class_names[3] == "class3"


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"data": Exploit()}))
    with pytest.raises(UserError, match="refusing to load"):
        load_cifar10(tmp_path, download=False)


def test_stl10_reader_on_tiny_binary_files(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = np.zeros((3, 3, 96, 96), np.uint8)
    images[0, 0, 5, 70] = 200  # row 5, column 70 of the red channel of image 0
    # STL-10 stores each channel column-major: write the transpose of every plane.
    for part, count in (("train", 3), ("test", 2)):
        images[:count].transpose(0, 1, 3, 2).tofile(folder / f"{part}_X.bin")
        np.arange(1, count + 1, dtype=np.uint8).tofile(folder / f"{part}_y.bin")
    splits = load_stl10(tmp_path, download=False)
    assert splits.train_images.shape == (3, 3, 96, 96) and int(splits.train_images[0, 0, 5, 70]) == 200
    assert splits.train_labels.tolist() == [0, 1, 2] and splits.test_labels.tolist() == [0, 1]
    assert splits.class_names[0] == "airplane"


def test_array_dataset_bundle_and_missing_files(tmp_path):
    write_cifar(tmp_path, per_batch=20)
    data = build_data("cifar10", data_dir=tmp_path, image_size=40, batch_size=16, eval_batch_size=32,
                            device="cpu", seed=0, download=False, augment=PhotoAugmentConfig())
    assert data.split_sizes == {"train": 90, "val": 10, "test": 20}
    assert next(iter(data.train))[0].shape == (16, 3, 40, 40)
    assert next(iter(data.test))[0].shape == (20, 3, 40, 40)
    with pytest.raises(UserError, match="missing train_X.bin, train_y.bin, test_X.bin, test_y.bin"):
        build_data("stl10", data_dir=tmp_path, image_size=96, batch_size=4, eval_batch_size=4,
                         device="cpu", seed=0, download=False)


def test_stats_of_cifar10_match_the_normalisation_of_a_run_with_the_same_seed_and_val_size(tmp_path, capsys):
    write_cifar(tmp_path, per_batch=20)
    for seed, val_size in ((0, 10), (3, 5)):
        data = build_data("cifar10", data_dir=tmp_path, image_size=32, batch_size=16, eval_batch_size=32,
                                device="cpu", seed=seed, val_size=val_size, download=False)
        assert main(["stats", "cifar10", "--data-dir", str(tmp_path), "--seed", str(seed),
                     "--val-size", str(val_size), "--no-download", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["images"] == data.split_sizes["train"] == 100 - val_size
        assert result["mean"] == pytest.approx(data.mean, abs=1e-12)
        assert result["std"] == pytest.approx(data.std, abs=1e-12)
    assert main(["stats", "cifar10", "--data-dir", str(tmp_path), "--no-download", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 90  # default: 6,000 capped at a tenth


def test_stats_split_flags_are_refused_for_file_datasets(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", {"a": 4, "b": 4})
    assert main(["stats", f"folder:{root}", "--seed", "1"]) == 2
    assert "split of cifar10 and stl10 only" in capsys.readouterr().err


# ----------------------------------------------------------------------------- commands

def test_split_command_writes_default_manifest_and_copies(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", {"a": 10, "b": 10})
    assert main(["split", f"folder:{root}", "--copy", str(tmp_path / "copy")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {root / MANIFEST_NAME}" in out and "16 train / 2 val / 2 test" in out
    first = (root / MANIFEST_NAME).read_text()
    assert len(list((tmp_path / "copy").rglob("*.png"))) == 20
    assert main(["split", f"folder:{root}"]) == 0  # same seed, same bytes
    assert (root / MANIFEST_NAME).read_text() == first


def test_split_command_errors_exit_2_with_one_line(tmp_path, capsys):
    root = make_folder(tmp_path / "one", {"only": 2})
    for argv in (["split", f"folder:{root}"], ["split", "nope"], ["split", "cifar10"],
                 ["split", f"folder:{tmp_path / 'missing'}"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("classicnets split: error: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["split", f"folder:{root}", "--val", "1.5"])
    assert exit_info.value.code == 2


def test_help_texts(capsys):
    for command in ("split", "stats"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "exit status" in capsys.readouterr().out


# ----------------------------------------------------------------------------- real photos

def test_a_few_real_shared_photos():
    if not SHARED_PHOTOS.is_dir():
        pytest.skip(f"the shared Dogs-vs-Cats photos are not at {SHARED_PHOTOS} (set CLASSICNETS_DATA)")
    images = list_kaggle(SHARED_PHOTOS.parent)
    assert len(images) == 12_000 and images.labels.count(0) == 6_000
    few = images.select([0, 1, 6_000, 6_001])
    assert not check_images(few, progress=False).bad
    decoded = [load_rgb(f) for f in few.files()]
    assert all(image.shape == (3, 200, 200) for image in decoded)
    assert all(resize_center_crop(image, 64).shape == (3, 64, 64) for image in decoded)


# ----------------------------------------------------------------------------- recipes

CATS_VS_DOGS_RECIPES = sorted(path.stem for path in
                              (Path(__file__).resolve().parents[1] / "recipes" / "cats_vs_dogs").glob("*.yaml"))


def test_the_cats_vs_dogs_recipes_are_found():
    assert {"googlenet", "vgg16_bn", "resnet18_cpu"} <= set(CATS_VS_DOGS_RECIPES)


@pytest.mark.parametrize("name", CATS_VS_DOGS_RECIPES)
def test_cats_vs_dogs_recipes_are_valid(name):
    import yaml

    from classicnets.engine.config import config_fields

    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "cats_vs_dogs" /
                             f"{name}.yaml").read_text())
    assert not set(recipe) - set(config_fields())  # every key is a training setting
    assert name.split("_cpu")[0] == recipe["model"] and recipe["dataset"] == "cats-vs-dogs"  # named by model
    assert recipe.get("pretrained") is None and recipe.get("init_from") is None  # from scratch
    assert PhotoAugmentConfig.from_dict(recipe["augment"]).enabled


def test_paths_of_the_wrong_kind_are_named_as_such(tmp_path):
    picture = save(tmp_path / "pic.png", random_rgb(1))
    with pytest.raises(UserError, match="image folder .*pic.png is a file"):
        list_folder(picture)
    from classicnets.data.manifest import read_manifest
    with pytest.raises(UserError, match="split manifest .* is not a text \\(CSV\\) file"):
        read_manifest(picture, tmp_path)
    with pytest.raises(UserError, match="split manifest .* is a folder"):
        read_manifest(tmp_path, tmp_path)


@pytest.mark.parametrize("name", CATS_VS_DOGS_RECIPES)
def test_cats_vs_dogs_recipes_train_a_few_steps(name, tmp_path):
    # Their settings (photo augmentation, EMA, aux heads, schedule) run end to end, shrunk to the CPU.
    from classicnets.engine import build_config, train

    root = make_kaggle(tmp_path / "cvd", cats=12, dogs=12)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "cats_vs_dogs" / f"{name}.yaml"
    config = build_config(recipe, {"data_dir": str(root), "device": "cpu", "compile": False, "epochs": 1,
                                   "image_size": 32, "batch_size": 8, "out": str(tmp_path / "run")})
    summary = train(config, quiet=True)
    assert summary["epochs"] == 1 and summary["test_images"] == 2  # 10% of 24 photos, one per class
