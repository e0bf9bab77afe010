"""Penultimate-layer embeddings, their 2-D maps and the saved file."""

import numpy as np
import pytest
import torch
from torch import nn

import classicnets
from classicnets.analysis.embed import (Embeddings, embedding_maps, extract_embeddings, load_embeddings,
                                        penultimate_features, project_2d, save_embeddings)
from classicnets.errors import UserError
from classicnets.models.vgg import VGG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def googlenet() -> nn.Module:
    torch.manual_seed(0)
    return classicnets.create_model("googlenet", num_classes=5, in_chans=1).eval()


def test_googlenet_penultimate_is_what_the_classifier_reads(googlenet):
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        features = penultimate_features(googlenet, x)
        assert features.shape == (3, 1024)
        torch.testing.assert_close(googlenet.fc(features), googlenet(x))


def test_vgg_penultimate_is_the_second_fc_layer():
    torch.manual_seed(0)
    model = VGG([8, "M", "M", "M", 512, "M", "M"], num_classes=4).eval()  # thin body, real head
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = penultimate_features(model, x)
        assert features.shape == (2, 4096)
        assert (features >= 0).all()  # after the ReLU
        torch.testing.assert_close(model.classifier[-1](features), model(x))


def test_extract_embeddings_stops_at_max_samples_and_restores_the_mode(googlenet):
    batches = [(torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])) for _ in range(3)]
    googlenet.train()
    embeddings = extract_embeddings(googlenet, batches, max_samples=6)
    assert googlenet.training
    googlenet.eval()
    assert embeddings.features.shape == (6, 1024) and embeddings.features.dtype == np.float32
    assert embeddings.labels.tolist() == [0, 1, 2, 3, 0, 1]
    with torch.no_grad():  # the same numbers as a direct eval-mode pass
        expected = penultimate_features(googlenet, batches[0][0]).numpy()
    np.testing.assert_allclose(embeddings.features[:4], expected, rtol=1e-5, atol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    embeddings = Embeddings(np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32),
                            np.arange(7, dtype=np.int64) % 2)
    path = save_embeddings(tmp_path / "sub" / "embeddings.npz", embeddings, ["cat", "dog"])
    loaded, names = load_embeddings(path)
    np.testing.assert_array_equal(loaded.features, embeddings.features)
    np.testing.assert_array_equal(loaded.labels, embeddings.labels)
    assert names == ["cat", "dog"]


def clustered_features(n_per_class: int = 20, classes: int = 3, dims: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(classes, dims))
    labels = np.repeat(np.arange(classes), n_per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32), labels


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projections_keep_well_separated_classes_apart(method):
    pytest.importorskip("sklearn")
    features, labels = clustered_features()
    points = project_2d(features, method, seed=0)
    assert points.shape == (60, 2) and np.isfinite(points).all()
    # every point is nearer to its own class centre than to any other
    centres = np.stack([points[labels == c].mean(axis=0) for c in range(3)])
    nearest = np.linalg.norm(points[:, None] - centres[None], axis=2).argmin(axis=1)
    assert (nearest == labels).all()


def test_projection_errors():
    with pytest.raises(UserError, match="unknown projection"):
        project_2d(np.zeros((5, 2)), "umap")
    with pytest.raises(UserError, match="at least 3"):
        project_2d(np.zeros((2, 2)), "pca")


def test_embedding_maps_writes_both_plots(tmp_path):
    pytest.importorskip("sklearn")
    features, labels = clustered_features()
    written = embedding_maps(tmp_path, Embeddings(features, labels), ["a", "b", "c"], "test")
    assert set(written) == {"pca", "tsne"}
    for path in written.values():
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5000
