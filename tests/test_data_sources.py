"""One data path: every dataset is a source behind one build function, the settings a
source reads, training images without variation, and values read from dataset files,
bounded and typed as flags are."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classicnets.data import (AugmentConfig, DatasetSource, build_data, get_source, list_datasets, split_indices,
                              unused_settings)
from classicnets.data.image_io import BadImageError, check_header, load_rgb, resize_center_crop
from classicnets.data.manifest import list_folder, make_split, write_manifest
from classicnets.data.photos import open_split
from classicnets.data.validate import check_images
from classicnets.errors import UserError
from test_data import balanced_labels, indexed_images, write_idx
from test_photos import make_folder, make_kaggle, png_header_only, random_rgb, save, write_cifar

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

DATA_PACKAGE = Path(__file__).resolve().parents[1] / "src" / "classicnets" / "data"
SOURCE_NAMES = ["fashion-mnist", "cifar10", "stl10", "cats-vs-dogs", "folder:/some/photos"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLASSICNETS_CACHE", str(cache))
    return cache


# ----------------------------------------------------------------------------- structure

def data_modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(DATA_PACKAGE.glob("*.py"))}


def relative_imports(tree: ast.AST) -> set[str]:
    """The sibling modules of data/ that ``tree`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_no_import_cycles_inside_data():
    graph = {name: relative_imports(tree) - {"__init__"} for name, tree in data_modules().items() if name != "__init__"}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph.get(module, ())):
            if state.get(other) == "open":
                cycle = path[path.index(other):] + [other]
                pytest.fail(f"import cycle inside data/: {' -> '.join(cycle)}")
            if other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_data_imports_only_the_ground_floor_of_the_package():
    for name, tree in data_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert (node.module or "") in ("errors", "files", "limits"), f"data/{name}.py imports ..{node.module}"


def test_no_function_local_imports_of_sibling_modules():
    for name, tree in data_modules().items():
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.ImportFrom) and node.level >= 1:
                        pytest.fail(f"data/{name}.py imports .{node.module} inside {function.name}()")


def test_each_function_and_constant_is_defined_once():
    seen: dict[str, str] = {}
    for name, tree in data_modules().items():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined = [node.name]
            elif isinstance(node, ast.Assign):
                defined = [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
            else:
                continue
            for item in defined:
                assert item not in seen, f"{item} is defined in both data/{seen[item]}.py and data/{name}.py"
                seen[item] = name


def test_loaders_and_augmentation_defaults_have_one_home():
    from classicnets.data.augment import AUGMENT_DEFAULTS, AUGMENT_KEYS
    from classicnets.data.batchers import LOADERS

    assert LOADERS == ("auto", "device", "dataloader")
    assert AUGMENT_KEYS == ("crop_padding", "hflip", "erasing")
    assert AugmentConfig().to_dict() == AUGMENT_DEFAULTS == {"crop_padding": 4, "hflip": True, "erasing": 0.0}


@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_every_dataset_is_a_source(name):
    source = get_source(name)
    assert isinstance(source, DatasetSource) and source.name == name
    assert source.channels == (1 if name == "fashion-mnist" else 3)
    assert callable(source.load) and callable(source.training_stats)
    assert set(source.settings) <= {"val_size", "download", "manifest", "skip_bad", "mean", "std", "cache_dir",
                                    "max_pixels"}


def test_the_dataset_list_is_unchanged():
    assert list_datasets() == ["cats-vs-dogs", "cifar10", "fashion-mnist", "folder:PATH", "stl10"]
    with pytest.raises(UserError, match="unknown dataset 'cifar'.*did you mean cifar10"):
        get_source("cifar")


def test_one_build_function_serves_every_kind_of_dataset(tmp_path):
    write_cifar(tmp_path / "arrays", per_batch=20)
    root = make_folder(tmp_path / "photos", {"a": 10, "b": 10})
    common = dict(image_size=16, batch_size=4, eval_batch_size=8, device="cpu", seed=0, progress=False)
    arrays = build_data("cifar10", data_dir=tmp_path / "arrays", download=False, **common)
    files = build_data(f"folder:{root}", data_dir=None, **common)
    assert arrays.split_sizes == {"train": 90, "val": 10, "test": 20} and arrays.in_chans == 3
    assert files.split_sizes == {"train": 16, "val": 2, "test": 2} and files.class_names == ["a", "b"]
    with pytest.raises(UserError, match="unknown loader 'gpu'"):
        build_data(f"folder:{root}", data_dir=None, loader="gpu", **common)
    with pytest.raises(UserError, match="seed must be 0 or more"):
        build_data("cifar10", data_dir=tmp_path / "arrays", **(common | {"seed": -1}))
    with pytest.raises(TypeError, match="unexpected keyword argument 'manifests'"):
        build_data(f"folder:{root}", data_dir=None, manifests="x.csv", **common)


# Pinned from the code before the data path became one (commit cfcc977): the quick-start
# recipe's metrics depend on the same split, statistics and batch order.
PINNED_FASHION_MNIST = {
    "mean": 0.28610056670816475, "std": 0.35311894780899633,
    "train": "17aba8d01a7b4cbe", "val": "8d684ec35076b236", "order": "cb8473169be6b358", "labels": "047f94d475265245",
    "subset": (0.286052043039438, 0.3540149677293831, "ce28f724e6e67cdb", "b86d6d45139a1465"),
}


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]


def test_fashion_mnist_split_statistics_and_order_are_unchanged(fashion_mnist_dir):
    options = dict(data_dir=fashion_mnist_dir, image_size=28, batch_size=256, eval_batch_size=1000, device="cpu",
                   download=False)
    bundle = build_data("fashion-mnist", seed=0, augment=AugmentConfig(), **options)
    pinned = PINNED_FASHION_MNIST
    assert bundle.mean == [pinned["mean"]] and bundle.std == [pinned["std"]]
    assert digest(bundle.train.indices) == pinned["train"] and digest(bundle.val.indices) == pinned["val"]
    bundle.train.set_epoch(2)
    assert digest(bundle.train.epoch_order()) == pinned["order"]
    assert digest(bundle.train.labels[bundle.train.epoch_order()]) == pinned["labels"]  # epoch 2's batch labels
    small = build_data("fashion-mnist", seed=1, subset=900, **options)
    assert (small.mean[0], small.std[0], digest(small.train.indices), digest(small.val.indices)) == pinned["subset"]


# ----------------------------------------------------------------------------- item 7: settings a source reads

@pytest.mark.parametrize("name, given, unused", [
    ("fashion-mnist", {"val_size": 500, "subset": 900, "seed": 3, "lr": 0.1}, []),
    ("cifar10", {"val_size": 500, "mean": [0.5] * 3, "std": [0.2] * 3}, []),
    ("stl10", {"val_size": 500, "manifest": "split.csv"}, ["manifest"]),
    ("cats-vs-dogs", {"val_size": 500}, ["val_size"]),
    ("folder:/photos", {"val_size": 500, "manifest": "m.csv", "skip_bad": True}, ["val_size"]),
    ("folder:/photos", {"val_size": 500, "subset": 100}, []),  # caps the subset's val part
    ("fashion-mnist", {"manifest": "m.csv", "skip_bad": True, "mean": [0.3], "std": [0.3]},
     ["manifest", "mean", "skip_bad", "std"]),
    ("cats-vs-dogs", {"val_size": None, "skip_bad": False, "download": False}, []),  # not given
])
def test_unused_settings(name, given, unused):
    assert unused_settings(name, given) == unused


def test_unused_settings_of_an_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError, match="unknown dataset"):
        unused_settings("imagenet", {"val_size": 5})


def test_build_data_refuses_options_the_dataset_does_not_read(tmp_path):
    write_cifar(tmp_path, per_batch=20)
    with pytest.raises(UserError, match="manifest, skip_bad do not apply to cifar10"):
        build_data("cifar10", data_dir=tmp_path, image_size=32, batch_size=4, eval_batch_size=4, device="cpu",
                   seed=0, download=False, manifest=tmp_path / "split.csv", skip_bad=True)


# ----------------------------------------------------------------------------- item 8: no variation

def write_fashion(root: Path, train_images: np.ndarray | None = None, train_labels: np.ndarray | None = None,
                  n_train: int = 200, n_test: int = 50) -> Path:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_idx(raw / "train-images-idx3-ubyte", indexed_images(n_train) if train_images is None else train_images)
    write_idx(raw / "train-labels-idx1-ubyte", balanced_labels(n_train, 1) if train_labels is None else train_labels)
    write_idx(raw / "t10k-images-idx3-ubyte", indexed_images(n_test))
    write_idx(raw / "t10k-labels-idx1-ubyte", balanced_labels(n_test, 2))
    return root


def build_fashion(root: Path, **overrides):
    options = dict(data_dir=root, image_size=28, batch_size=16, eval_batch_size=16, device="cpu", seed=0,
                   val_size=20, download=False)
    return build_data("fashion-mnist", **(options | overrides))


def test_blank_fashion_mnist_training_images_are_refused(tmp_path):
    root = write_fashion(tmp_path, train_images=np.full((200, 28, 28), 17, np.uint8))
    with pytest.raises(UserError, match=r"the training images of fashion-mnist have no variation in channel 0 "
                                        r"\(every pixel is 17\): check the data"):
        build_fashion(root)


def test_photos_with_one_constant_channel_are_refused(tmp_path):
    root = tmp_path / "photos"
    for i, name in enumerate(["a"] * 6 + ["b"] * 6):
        pixels = random_rgb(i, (12, 10))
        pixels[:, :, 2] = 255  # blue is full everywhere
        save(root / name / f"{i}.png", pixels)
    with pytest.raises(UserError, match=rf"the training images of folder:{root} have no variation in channel 2 "
                                        r"\(blue\) \(every pixel is 255\): check the data"):
        build_data(f"folder:{root}", data_dir=None, image_size=8, batch_size=4, eval_batch_size=4, device="cpu",
                   seed=0, progress=False)


@pytest.mark.parametrize("mean, std, words", [
    ([0.5, 0.5, 0.5], [0.2, 0.0, 0.2], "std must be above 0"),
    ([0.5, 0.5, 0.5], [0.2, -0.1, 0.2], "std must be above 0"),
    ([0.5, 0.5, 0.5], [0.2, math.nan, 0.2], "std must be finite"),
    ([0.5, math.inf, 0.5], [0.2, 0.2, 0.2], "mean must be finite"),
    ([0.5, "x", 0.5], [0.2, 0.2, 0.2], "mean must be a list of numbers"),
])
def test_given_mean_and_std_are_checked(tmp_path, mean, std, words):
    root = make_folder(tmp_path / "photos", {"a": 4, "b": 4})
    with pytest.raises(UserError, match=words):
        build_data(f"folder:{root}", data_dir=None, image_size=8, batch_size=4, eval_batch_size=4, device="cpu",
                   seed=0, mean=mean, std=std, progress=False)


# ----------------------------------------------------------------------------- item 9: values read from files

def raw_file(root: Path, name: str) -> Path:
    return root / "FashionMNIST" / "raw" / name


def test_an_idx_label_outside_the_classes_is_named(tmp_path):
    labels = balanced_labels(200, 1)
    labels[37] = 12
    root = write_fashion(tmp_path, train_labels=labels)
    with pytest.raises(UserError) as error:
        build_fashion(root)
    message = str(error.value)
    assert str(raw_file(root, "train-labels-idx1-ubyte")) in message
    assert "label 12 at position 37" in message and "10 classes" in message


@pytest.mark.parametrize("declared, words", [
    ((201, 28, 28), "declares 201 x 28 x 28"),  # one image more than the file holds
    ((2**32 - 1, 28, 28), "declares 4294967295 x 28 x 28"),  # absurd: never allocated
    ((200, 28), "declares 2 dimensions"),
])
def test_an_idx_header_that_disagrees_with_its_file_is_named(tmp_path, declared, words):
    root = write_fashion(tmp_path)
    path = raw_file(root, "train-images-idx3-ubyte")
    data = path.read_bytes()[16:]
    path.write_bytes(bytes([0, 0, 0x08, len(declared)]) + struct.pack(f">{len(declared)}I", *declared) + data)
    with pytest.raises(UserError, match="could not read Fashion-MNIST") as error:
        build_fashion(root)
    assert str(path) in str(error.value) and words in str(error.value)


def test_idx_images_of_the_wrong_size_or_count_are_refused(tmp_path):
    root = write_fashion(tmp_path, train_images=np.zeros((200, 30, 30), np.uint8))
    with pytest.raises(UserError, match="images of 30x30 pixels; Fashion-MNIST's are 28x28"):
        build_fashion(root)
    root = write_fashion(tmp_path / "count", train_labels=balanced_labels(199, 1))
    with pytest.raises(UserError, match="holds 200 images but .*train-labels-idx1-ubyte holds 199 labels"):
        build_fashion(root)


def rewrite_cifar_labels(path: Path, labels) -> None:
    with open(path, "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    batch[b"labels"] = labels
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


@pytest.mark.parametrize("labels, words", [
    ([0] * 9 + [12], "label 12 at position 9 is outside the 10 classes"),
    ([0] * 9 + [-1], "label -1 at position 9 is outside the 10 classes"),
    ([0] * 9 + ["cat"], "labels must be a list of integers"),
    ([0] * 9 + [1.5], "labels must be a list of integers"),
    ([0] * 9 + [2**70], "label 1180591620717411303424 at position 9 is outside"),
    (7, "labels must be a list of integers"),
])
def test_cifar_labels_are_bounded_and_typed(tmp_path, labels, words):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    rewrite_cifar_labels(path, labels)
    with pytest.raises(UserError, match=words) as error:
        build_data("cifar10", data_dir=tmp_path, image_size=32, batch_size=4, eval_batch_size=4, device="cpu",
                   seed=0, download=False)
    assert str(path) in str(error.value)


def test_cifar_data_of_another_type_is_refused(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(path, "wb") as handle:
        pickle.dump({b"data": np.full((10, 3072), 300, np.int64), b"labels": [0] * 10}, handle, protocol=2)
    with pytest.raises(UserError, match="data must be uint8"):
        build_data("cifar10", data_dir=tmp_path, image_size=32, batch_size=4, eval_batch_size=4, device="cpu",
                   seed=0, download=False)


def test_stl10_labels_outside_the_classes_name_the_file(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    for part, count in (("train", 20), ("test", 10)):
        np.random.default_rng(0).integers(0, 256, (count, 3, 96, 96), dtype=np.uint8).tofile(folder / f"{part}_X.bin")
        (np.arange(count, dtype=np.uint8) % 10 + 1).tofile(folder / f"{part}_y.bin")
    labels = np.arange(20, dtype=np.uint8) % 10 + 1
    labels[4] = 11
    labels.tofile(folder / "train_y.bin")
    with pytest.raises(UserError, match="label 11 at position 4 is outside STL-10's 10 classes") as error:
        build_data("stl10", data_dir=tmp_path, image_size=32, batch_size=4, eval_batch_size=4, device="cpu",
                   seed=0, download=False)
    assert str(folder / "train_y.bin") in str(error.value)


def test_a_manifest_with_an_unknown_class_names_the_file_line_and_field(tmp_path):
    images = list_folder(make_folder(tmp_path / "ds", {"a": 5, "b": 5}))
    manifest = tmp_path / "split.csv"
    write_manifest(manifest, images, make_split(images, val=0.2, test=0.2, seed=1))
    lines = manifest.read_text().splitlines()
    split, _, path = lines[4].split(",")
    lines[4] = f"{split},c,{path}"
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"{manifest} line 5: label 'c' is not a class of {images.root} "
                                        r"\(a, b\)"):
        open_split(f"folder:{images.root}", None, manifest)
    lines[4] = f"holdout,a,{path}"
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"line 5 is not 'split,label,path' .*split 'holdout'"):
        open_split(f"folder:{images.root}", None, manifest)


def test_a_kaggle_manifest_with_a_misspelt_class_is_refused(tmp_path):
    root = make_kaggle(tmp_path / "cats-vs-dogs", cats=4, dogs=4)
    (root / "classicnets-split.csv").write_text("split,label,path\ntrain,cat,train/cat.0.jpg\n"
                                                "train,dgo,train/dog.0.jpg\ntest,dog,train/dog.1.jpg\n")
    with pytest.raises(UserError, match="line 3: label 'dgo' is not a class"):
        open_split("cats-vs-dogs", tmp_path)


@pytest.mark.parametrize("size, words", [
    ((1, 1), "too small (1x1 pixels"),
    ((1, 7), "too small (1x7 pixels"),
    ((9, 1), "too small (9x1 pixels"),
])
def test_images_too_small_to_resize_are_bad_files(tmp_path, size, words):
    path = save(tmp_path / "tiny.png", np.full((size[1], size[0], 3), 90, np.uint8))
    with pytest.raises(BadImageError, match=re_escape(words)):
        check_header(path)
    with pytest.raises(BadImageError, match=re_escape(words)):
        load_rgb(path)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_images_too_narrow_to_resize_are_refused_before_decoding(tmp_path):
    # A 2 x 100,000 image resized so its short side is 224 px would take 100,000 x 112 x 224 x 3 bytes.
    path = png_header_only(tmp_path / "strip.png", 2, 100_000)
    with pytest.raises(BadImageError, match=r"too narrow \(2x100000 pixels"):
        check_header(path)
    fine = save(tmp_path / "wide.png", random_rgb(0, (64, 4)))  # 16:1 is a panorama, not a strip
    assert resize_center_crop(load_rgb(fine), 8).shape == (3, 8, 8)


def test_a_dataset_with_a_tiny_image_names_it(tmp_path):
    root = make_folder(tmp_path / "photos", {"a": 6, "b": 6})
    save(root / "a" / "dot.png", np.zeros((1, 1, 3), np.uint8))
    options = dict(data_dir=None, image_size=8, batch_size=4, eval_batch_size=4, device="cpu", seed=0,
                   progress=False)
    with pytest.raises(UserError, match=r"1 bad image file\(s\) in .*: a/dot.png \(too small \(1x1 pixels"):
        build_data(f"folder:{root}", **options)
    assert sum(build_data(f"folder:{root}", skip_bad=True, **options).split_sizes.values()) == 12


def test_image_checks_cached_under_older_rules_are_done_again(tmp_path, private_cache):
    root = make_folder(tmp_path / "photos", {"a": 2, "b": 2})
    save(root / "a" / "dot.png", np.zeros((1, 1, 3), np.uint8))
    images = list_folder(root)
    check_images(images, progress=False)
    [cache_file] = private_cache.glob("image-checks-*.json")
    content = json.loads(cache_file.read_text())
    old = {"max_pixels": content["max_pixels"],  # the cache as the code before these rules wrote it
           "entries": {rel: entry[:2] + [None] for rel, entry in content["entries"].items()}}
    cache_file.write_text(json.dumps(old))
    assert check_images(images, progress=False).bad == {"a/dot.png": "too small (1x1 pixels; each side needs "
                                                                     "at least 2)"}


def test_split_indices_still_lives_where_callers_find_it():
    labels = torch.from_numpy(balanced_labels(100, 0)).long()
    train, val = split_indices(labels, val_size=10, subset=None, seed=0)
    assert train.numel() == 90 and val.numel() == 10
