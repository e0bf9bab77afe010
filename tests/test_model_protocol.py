"""The model protocol: a family is added in models/ only, and nothing outside asks its name.

A throwaway family is registered here (a tiny CNN with one auxiliary head that speaks the
protocol), run through every command that takes a model, and unregistered. The code
outside ``models/`` is read to check that it never branches on a family or a model class.
Cheap real families (lenet5, resnet20) get a one-epoch smoke run through the same commands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import classicnets
import classicnets.data
from classicnets import UserError
from classicnets.analysis.cam import cam_layer
from classicnets.analysis.summary import model_blocks
from classicnets.cli.main import main
from classicnets.engine import loop as engine_loop
from classicnets.engine.optim import training_loss
from classicnets.models import GoogLeNetOutput, get_model_entry, list_models, register_model, unregister_model
from classicnets.models import protocol
from classicnets.models.protocol import GlobalPoolHead

from test_train import synthetic_build_data

SRC = Path(classicnets.__file__).resolve().parent
TOY = "toynet"
SIDE_WEIGHT = 0.25


# ----------------------------------------------------------------------------- a throwaway family

class ToyOutput(NamedTuple):
    logits: torch.Tensor
    side: torch.Tensor


class ToyNet(nn.Module):
    """conv-pool, conv-pool, global average, linear; a side classifier after the first block."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, aux_logits: bool = True,
                 init_weights: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.side = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)) if aux_logits else None
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    stem = property(lambda self: self.conv1)
    head = property(lambda self: self.fc)
    aux_outputs = property(lambda self: {"side": SIDE_WEIGHT} if self.side is not None else {})

    def aux_heads(self) -> dict[str, nn.Module]:
        return {"side": self.side} if self.side is not None else {}

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [("b1", self.pool1), ("b2", self.pool2)]

    def dense_head(self) -> GlobalPoolHead:
        return GlobalPoolHead(linear=self.fc)

    def _body(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.pool1(self.act1(self.conv1(x)))
        side = self.side(x) if self.side is not None and self.training else None
        return self.pool2(self.act2(self.conv2(x))), side

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._body(x)[0]

    def penultimate_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | ToyOutput:
        features, side = self._body(x)
        logits = self.forward_head(features)
        return ToyOutput(logits, side) if side is not None else logits


@pytest.fixture
def toy_family():
    entry = register_model(TOY, "toy", "a throwaway test family", ToyNet, paper="Nobody, 2026, A Test", year=2026,
                           native_input_size=16, min_input_size=4)
    try:
        yield entry
    finally:
        unregister_model(TOY)
    assert TOY not in list_models()


@pytest.fixture
def synthetic_data(monkeypatch):
    """The tiny synthetic dataset in place of build_data, for training and for the commands after it."""
    monkeypatch.setattr(engine_loop, "build_data", synthetic_build_data)
    monkeypatch.setattr(classicnets.data, "build_data", synthetic_build_data)


def photo(path: Path, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def train_run(out: Path, model: str, image_size: int, *extra: str) -> Path:
    args = ["train", "--model", model, "--image-size", str(image_size), "--batch-size", "32", "--epochs", "1",
            "--lr", "0.05", "--quiet", "--device", "cpu", "--seed", "3", "--out", str(out), *extra]
    assert main(args) == 0
    return out


def one_line_error(capsys, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_a_new_family_runs_through_every_command(toy_family, synthetic_data, tmp_path, capsys):
    run = train_run(tmp_path / "run", TOY, 16)
    assert json.loads((run / "summary.json").read_text())["test_images"] == 64
    capsys.readouterr()

    assert main(["evaluate", str(run), "--device", "cpu", "--limit", "8", "--dense", "--out", str(tmp_path / "ev")]) == 0
    assert "toynet is dense already" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["num_samples"] == 8

    image = photo(tmp_path / "pic.png")
    assert main(["predict", str(run), str(image), "--cam", str(tmp_path / "cams"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cam"] == str(tmp_path / "cams" / "pic_cam.png")

    pytest.importorskip("sklearn")
    assert main(["embed", str(run), "--device", "cpu", "--limit", "12", "--out", str(tmp_path / "emb")]) == 0
    with np.load(tmp_path / "emb" / "embeddings.npz") as saved:
        assert saved["features"].shape == (12, 16)  # what the toy's fc reads
    assert "16-d penultimate features" in capsys.readouterr().out

    assert main(["activations", str(run), str(image), "--out", str(tmp_path / "act"), "--channels", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "act").iterdir()) == ["b1.png", "b2.png"]

    assert main(["summary", TOY, "--blocks", "--image-size", "16", "--in-chans", "1", "--num-classes", "4",
                 "--batch-size", "2"]) == 0
    table = capsys.readouterr().out
    assert [line.split()[0] for line in table.splitlines() if re.match(r"(b1|b2|side|head) ", line)] == [
        "b1", "side", "b2", "head"]

    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "toy.pt")]) == 0
    assert (tmp_path / "toy.pt").is_file()

    capsys.readouterr()
    assert main(["models", TOY]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == [TOY, "toy"]  # the family, from the registry


def test_a_new_family_fine_tunes_and_is_refused_below_its_smallest_size(toy_family, synthetic_data, tmp_path,
                                                                        capsys):
    from classicnets.engine import build_config, load_run, train

    source = train_run(tmp_path / "source", TOY, 16)
    config = build_config(None, {"model": TOY, "image_size": 16, "batch_size": 32, "epochs": 1, "device": "cpu",
                                 "out": str(tmp_path / "tuned"), "init_from": str(source), "freeze": "features",
                                 "model_kwargs": {"aux_logits": False}})
    train(config, quiet=True)
    assert "unused       2: side.2.bias, side.2.weight" in capsys.readouterr().out  # the side head is left out
    before, _ = load_run(source)
    after, _ = load_run(tmp_path / "tuned")
    assert after.side is None and protocol.head_module_names(after) == ["fc"]
    assert torch.equal(after.conv2.weight, before.conv2.weight)  # the body was frozen ...
    assert not torch.equal(after.fc.weight, before.fc.weight)  # ... and the head trained

    code = main(["train", "--model", TOY, "--image-size", "3", "--quiet", "--device", "cpu",
                 "--out", str(tmp_path / "small")])
    one_line_error(capsys, code, "toynet cannot run on 3 px images, too small for it",
                   "the smallest input it takes is 4 px", "use --image-size 4 or more")
    assert not (tmp_path / "small").exists()


def test_the_model_weights_its_own_auxiliary_losses():
    torch.manual_seed(0)
    model = ToyNet(num_classes=3).train()
    criterion = nn.CrossEntropyLoss()
    labels = torch.tensor([0, 2])
    outputs = model(torch.randn(2, 1, 8, 8))
    loss, logits = training_loss(outputs, labels, criterion, None, model)
    expected = criterion(outputs.logits, labels) + SIDE_WEIGHT * criterion(outputs.side, labels)
    assert torch.equal(loss, expected) and logits is outputs.logits
    loss, _ = training_loss(outputs, labels, criterion, 0.5, model)  # the config's weight wins when set
    assert torch.equal(loss, criterion(outputs.logits, labels) + 0.5 * criterion(outputs.side, labels))


def test_googlenet_and_inception_declare_their_paper_weights_and_googlenet_loss_is_unchanged():
    with torch.device("meta"):
        googlenet = classicnets.create_model("googlenet", num_classes=3)
        inception = classicnets.create_model("inception_v3", num_classes=3)
        no_aux = classicnets.create_model("googlenet", num_classes=3, aux_logits=False)
    assert googlenet.aux_outputs == {"aux1": 0.3, "aux2": 0.3} and inception.aux_outputs == {"aux": 0.4}
    assert no_aux.aux_outputs == {}
    torch.manual_seed(0)
    criterion = nn.CrossEntropyLoss()
    outputs = GoogLeNetOutput(*(torch.randn(4, 3) for _ in range(3)))
    labels = torch.tensor([0, 1, 2, 1])
    before = criterion(outputs.logits, labels)  # the formula training used before the protocol
    before = before + 0.3 * (criterion(outputs.aux1, labels) + criterion(outputs.aux2, labels))
    for weight in (None, 0.3):
        loss, _ = training_loss(outputs, labels, criterion, weight, googlenet)
        assert torch.equal(loss, before)  # bit for bit: the same runs as before


# ----------------------------------------------------------------------------- every registered model

def test_every_registered_model_speaks_the_protocol():
    for name in list_models():
        entry = get_model_entry(name)
        with torch.device("meta"):
            model = classicnets.create_model(name, num_classes=5, in_chans=1)
        assert protocol.missing_protocol(model) == [], name
        assert model.stem is next(m for m in model.modules() if isinstance(m, nn.Conv2d)), name
        assert protocol.head_name(model) and protocol.class_layer_names(model)[0] == protocol.head_name(model)
        names = [block for block, _ in model.blocks()]
        assert len(names) == len(set(names)) > 0, name
        groups = [m for _, members in model_blocks(model) for m in members]
        leaves = [q for q, module in model.named_modules() if not list(module.children())]
        assert all(sum(q == g or q.startswith(g + ".") for g in groups) == 1 for q in leaves), name
        assert entry.paper and 1998 <= entry.year <= 2015 and entry.min_input_size <= entry.native_input_size
        x = torch.empty(1, 1, entry.native_input_size, entry.native_input_size, device="meta")
        assert model.eval()(x).shape == (1, 5), name


def test_new_families_are_registered_with_their_metadata():
    from classicnets.models import alexnet, inception3, lenet, resnet

    for module, family, names in ((lenet, "lenet", ["lenet5", "lenet5_paper"]),
                                  (alexnet, "alexnet", ["alexnet", "alexnet_paper"]),
                                  (resnet, "resnet", list(resnet.SPECS)),
                                  (inception3, "inception_v3", ["inception_v3"])):
        for name in names:
            entry = get_model_entry(name)
            assert (entry.family, entry.paper, entry.year) == (family, module.PAPER, module.YEAR)
            assert (entry.native_input_size, entry.min_input_size) == (module.NATIVE_INPUT_SIZE[name],
                                                                       module.MIN_INPUT_SIZE[name])
    assert get_model_entry("lenet5_paper").max_input_size == 32


def test_a_network_takes_its_declared_sizes_and_refuses_others(capsys):
    for name in list_models():
        entry = get_model_entry(name)
        with torch.device("meta"):
            model = classicnets.create_model(name, num_classes=5, in_chans=1).eval()
        side = entry.min_input_size
        assert model(torch.empty(1, 1, side, side, device="meta")).shape == (1, 5), name
        if side > 1:  # the declared minimum is the true one
            with pytest.raises(RuntimeError):
                model(torch.empty(1, 1, side - 1, side - 1, device="meta"))
    code = main(["summary", "lenet5_paper", "--image-size", "64"])
    one_line_error(capsys, code, "lenet5_paper cannot run on a 3x64x64 input, too large for it",
                   "it takes 32 px images only")


def test_dense_and_cam_refuse_what_a_network_does_not_have(tmp_path, capsys):
    from classicnets.analysis.dense import DenseFullyConnected, to_dense

    torch.manual_seed(0)
    alexnet = classicnets.create_model("alexnet", num_classes=4, in_chans=1).eval()
    dense = to_dense(alexnet)  # AlexNet's FC layers become 6x6 and 1x1 convolutions, as VGG's
    assert isinstance(dense, DenseFullyConnected) and dense.head[1].kernel_size == (6, 6)
    x = torch.randn(1, 1, 224, 224)
    with torch.no_grad():
        assert (dense(x) - alexnet(x)).abs().max() <= 1e-5  # 6x6 features: one window, the same logits
    lenet = classicnets.create_model("lenet5", num_classes=4)
    with pytest.raises(UserError, match="no fully-connected head over a feature map"):
        to_dense(lenet)

    class Flat(ToyNet):  # blocks without a feature map
        def blocks(self):
            return [("pooled", self.avgpool)]

        def forward(self, x):
            return self.fc(torch.flatten(self.avgpool(self.pool2(self.conv2(self.pool1(self.conv1(x))))), 1))

    flat = Flat(aux_logits=False).eval()
    flat.avgpool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    flat.fc = nn.Linear(16, 10)
    with pytest.raises(UserError, match="Grad-CAM needs a feature map"):
        cam_layer(flat, torch.zeros(1, 1, 16, 16))


# ----------------------------------------------------------------------------- cheap real families

@pytest.mark.parametrize("name, size", [("lenet5", 28), ("resnet20", 32)])
def test_smoke_cheap_families(name, size, synthetic_data, tmp_path, capsys):
    run = train_run(tmp_path / name, name, size)
    image = photo(tmp_path / "pic.png")
    assert main(["predict", str(run), str(image), "--cam", str(tmp_path / "cams")]) == 0
    assert (tmp_path / "cams" / "pic_cam.png").is_file()
    assert main(["activations", str(run), str(image), "--out", str(tmp_path / "act"), "--channels", "2"]) == 0
    drawn = sorted(p.stem for p in (tmp_path / "act").iterdir())
    model, _ = classicnets.engine.load_run(run)
    blocks = [block for block, _ in model.blocks()]
    if name == "lenet5":
        assert drawn == sorted(["C1", "S2", "C3", "S4", "C5"])  # F6 has no feature map to draw
        assert cam_layer(model.eval(), torch.zeros(1, 1, size, size))[0] == "s4"  # 5x5, the deepest of 4x4 or more
    else:
        assert drawn == sorted(blocks)
        assert cam_layer(model.eval(), torch.zeros(1, 1, size, size))[0] == "layer3.2"  # 8x8
    pytest.importorskip("sklearn")
    capsys.readouterr()
    assert main(["embed", str(run), "--device", "cpu", "--limit", "10", "--out", str(tmp_path / "emb")]) == 0
    features = {"lenet5": 84, "resnet20": 64}[name]
    assert f"{features}-d penultimate features" in capsys.readouterr().out
    if name == "lenet5":
        code = main(["evaluate", str(run), "--device", "cpu", "--dense", "--limit", "4"])
        one_line_error(capsys, code, "lenet5 has no fully-connected head", "--dense does not apply")


# ----------------------------------------------------------------------------- nothing outside models/ asks a family

MODEL_CLASSES = r"(VGG|GoogLeNet|ResNet|AlexNet|LeNet5?|Inception3?|InceptionV3)"
FORBIDDEN = [
    re.compile(rf"isinstance\([^)]*\b{MODEL_CLASSES}\b"),
    re.compile(r"""\bfamily\s*(==|!=|in|not in)\s*[("'\[{]"""),  # compared with a family's name
    re.compile(r"""["']\s*(==|!=)\s*[\w.()]*\bfamily\b"""),
    re.compile(rf"from \.\.?models(\.\w+)? import [^\n]*\b({MODEL_CLASSES}|GoogLeNetOutput|InceptionV3Output)\b"),
    re.compile(r"""getattr\(model, ["']aux_logits"""),
    re.compile(r"""(==|!=|in)\s*\(?["'](vgg|googlenet|resnet|alexnet|lenet|inception_v3)["']"""),
]
# A paper's table is about one family by nature: analysis/paper_tables.py compares a
# network with the table printed in its own paper (and its owner keeps its checks there).
ALLOWED = {"analysis/paper_tables.py"}


def test_no_code_outside_models_branches_on_a_family_or_a_model_class():
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("models/") or relative in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if any(pattern.search(line) for pattern in FORBIDDEN):
                offences.append(f"{relative}:{number}: {line.strip()}")
    assert offences == []
