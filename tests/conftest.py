import os
import shutil
from pathlib import Path

import pytest
import torch

# Tests run on the CPU with 2 cores; keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_dir() -> Path:
    """../shared/data beside the repo, or $CLASSICNETS_DATA."""
    env = os.environ.get("CLASSICNETS_DATA")
    return Path(env) if env else SHARED_DATA


@pytest.fixture
def fashion_mnist_dir() -> Path:
    root = shared_data_dir()
    if not (root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"Fashion-MNIST is not at {root}/FashionMNIST/raw (set CLASSICNETS_DATA)")
    return root


@pytest.fixture(scope="module")
def module_tmp_path(tmp_path_factory) -> Path:
    """A folder for one module's shared fixtures, deleted when the module's tests end
    (tmp_path_factory's folders would otherwise stay until the whole session ends)."""
    path = tmp_path_factory.mktemp("module")
    yield path
    shutil.rmtree(path, ignore_errors=True)
