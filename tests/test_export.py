"""ONNX and TorchScript exports reproduce the PyTorch logits."""

import errno
import subprocess
import sys

import pytest
import torch

import classicnets
from classicnets.analysis.export import (PARITY_TOLERANCE, check_parity, export_model, export_onnx,
                                         export_torchscript, run_exported)
from classicnets.errors import UserError

SHAPE = (1, 32, 32)  # Fashion-MNIST-like input


@pytest.fixture(scope="module")
def googlenet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = classicnets.create_model("googlenet", num_classes=10, in_chans=1).eval()
    # BN statistics other than (0, 1), so the export must carry them over
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def scripted(googlenet, module_tmp_path):
    return export_torchscript(googlenet, module_tmp_path / "googlenet.pt", torch.randn(2, *SHAPE))


def onnx_modules():
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (pip install onnxscript)")
    return pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime")


def test_onnx_with_dynamic_batch_matches_pytorch(googlenet, tmp_path):
    onnx_modules()
    path = export_onnx(googlenet, tmp_path / "googlenet.onnx", torch.randn(2, *SHAPE), dynamic_batch=True)
    assert path.stat().st_size > 1_000_000  # the weights are inside the file
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed, not left behind
    parity = check_parity(googlenet, path, "onnx", SHAPE, batch_sizes=(1, 3, 5))
    assert parity.ok and parity.max_abs_diff <= PARITY_TOLERANCE
    assert parity.batch_sizes == (1, 3, 5)
    onnx = pytest.importorskip("onnx")
    (graph_input,) = onnx.load(str(path)).graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "images" and dims[0].dim_param == "batch"  # free
    assert [d.dim_value for d in dims[1:]] == list(SHAPE)  # fixed


def test_torchscript_matches_pytorch_at_any_batch(googlenet, scripted):
    parity = check_parity(googlenet, scripted, "torchscript", SHAPE, batch_sizes=(1, 4))
    assert parity.ok and parity.max_abs_diff <= PARITY_TOLERANCE


def test_parity_check_catches_a_different_network(googlenet, scripted):
    changed = classicnets.create_model("googlenet", num_classes=10, in_chans=1).eval()
    changed.load_state_dict(googlenet.state_dict())
    with torch.no_grad():
        changed.fc.bias += 0.01
    parity = check_parity(changed, scripted, "torchscript", SHAPE)
    assert not parity.ok
    assert parity.max_abs_diff == pytest.approx(0.01, abs=1e-5)


def test_parity_limit_grows_with_the_logits_so_float_reordering_is_not_a_failure(googlenet, tmp_path):
    # Logits in the thousands: the same float32 network in another runtime may differ by
    # more than 1e-4 in absolute terms; the limit is 1e-4 of the largest logit.
    large = classicnets.create_model("googlenet", num_classes=10, in_chans=1).eval()
    large.load_state_dict(googlenet.state_dict())
    with torch.no_grad():
        large.fc.weight.mul_(1e4)
        large.fc.bias.fill_(3000.0)
    path = export_torchscript(large, tmp_path / "large.pt", torch.randn(2, *SHAPE))
    parity = check_parity(large, path, "torchscript", SHAPE)
    assert parity.logit_scale >= 3000 and parity.limit == pytest.approx(1e-4 * parity.logit_scale)
    assert parity.ok
    with torch.no_grad():
        large.fc.bias += 1.0  # a real change is still far above the limit
    assert not check_parity(large, path, "torchscript", SHAPE).ok


def test_a_training_mode_model_exports_its_inference_network(googlenet, tmp_path):
    googlenet.train()
    try:
        path = export_torchscript(googlenet, tmp_path / "googlenet.pt", torch.randn(2, *SHAPE))
        assert googlenet.training  # the caller's mode is kept
        x = torch.randn(3, *SHAPE)
        logits = run_exported(path, "torchscript", x)  # no auxiliary heads, no dropout
        assert isinstance(logits, torch.Tensor) and logits.shape == (3, 10)
        assert check_parity(googlenet, path, "torchscript", SHAPE).ok
        assert googlenet.training
    finally:
        googlenet.eval()


@pytest.mark.slow
def test_vgg_onnx_with_adaptive_pooling_of_a_small_map(tmp_path):
    # At 32 px VGG's feature map is 1x1 and the head pools it to 7x7, which the
    # older TorchScript-based ONNX exporter cannot express; the dynamo exporter can.
    onnx_modules()
    torch.manual_seed(0)
    model = classicnets.create_model("vgg11_bn", num_classes=10, in_chans=1).eval()
    path = export_onnx(model, tmp_path / "vgg.onnx", torch.randn(2, *SHAPE), dynamic_batch=True)
    assert check_parity(model, path, "onnx", SHAPE, batch_sizes=(1, 2)).ok


def test_unknown_format_is_a_user_error(googlenet, tmp_path):
    with pytest.raises(UserError, match="unknown export format"):
        export_model(googlenet, tmp_path / "m.tflite", "tflite", torch.randn(1, *SHAPE))


def test_unwritable_destination_is_a_user_error(googlenet, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="not a directory"):
        export_model(googlenet, blocker / "m.pt", "torchscript", torch.randn(1, *SHAPE))


FAILED_WRITE = """
import errno, resource, signal, sys, torch
from pathlib import Path
from classicnets.analysis.export import export_torchscript

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))  # the weights are about 150 KB
model = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3), torch.nn.Flatten())
try:
    export_torchscript(model, Path(sys.argv[1]), torch.randn(1, 64, 5, 5))
except OSError as error:
    print("errno", error.errno)
"""


def test_a_failed_torchscript_write_is_an_error_not_an_abort(tmp_path):
    """torch.jit.save's own file writer calls std::terminate when a write fails (as on a full
    disk), which killed the whole process with a C++ stack; the file is now written from Python."""
    out = tmp_path / "model.pt"
    result = subprocess.run([sys.executable, "-c", FAILED_WRITE, str(out)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"errno {errno.EFBIG}"
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one
