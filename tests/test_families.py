"""LeNet-5, AlexNet, ResNet and Inception v3: the papers' and torchvision's figures.

Counts and multiply-adds are measured on the meta device (shapes only, no memory, no
compute), torchvision parity on small real inputs, and every forward at tiny sizes.
"""

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.inception import InceptionAux

from classicnets.models import alexnet as alexnet_mod
from classicnets.models import inception3 as inception_mod
from classicnets.models import lenet as lenet_mod
from classicnets.models import resnet as resnet_mod
from classicnets.models.alexnet import alexnet, alexnet_paper
from classicnets.models.inception3 import AUX_LOSS_WEIGHT, InceptionV3Output, inception_v3
from classicnets.models.lenet import C3_TABLE, LayerRow, lenet5, lenet5_paper, lenet5_paper_layer_table

MODULES = {"lenet": lenet_mod, "alexnet": alexnet_mod, "resnet": resnet_mod, "inception3": inception_mod}
RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
           "resnet50_paper", "resnet101_paper", "resnet152_paper"]
CIFAR_RESNETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
BUILDERS = {
    "lenet5_paper": lenet5_paper, "lenet5": lenet5, "alexnet_paper": alexnet_paper, "alexnet": alexnet,
    "inception_v3": inception_v3, **{name: getattr(resnet_mod, name) for name in RESNETS + CIFAR_RESNETS},
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta(builder, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return builder(**kwargs)


def macs(model: nn.Module, size: int) -> float:
    """Multiply-adds in G of one forward on a meta input; the counter counts convolutions
    and matrix products only, as torchvision's published GFLOPS (which are MACs) do."""
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops() / 2 / 1e9


def shapes(state_dict) -> dict:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def randomise_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, so a BN mapped to the wrong place would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


# ---------------------------------------------------------------- parameter counts

EXACT_COUNTS = {  # 1000 classes and 3 channels unless the builder's default says otherwise
    "alexnet_paper": 60_965_224,
    "alexnet": 61_100_840,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnet50_paper": 25_557_032,
    "resnet101_paper": 44_549_160,
    "resnet152_paper": 60_192_808,
    "inception_v3": 27_161_264,
    "lenet5_paper": 60_000,  # 10 classes, 1 channel
    "lenet5": 61_706,
}


@pytest.mark.parametrize("name,expected", EXACT_COUNTS.items())
def test_exact_parameter_counts(name, expected):
    assert n_params(meta(BUILDERS[name])) == expected


def test_inception_v3_without_aux_head():
    assert n_params(meta(inception_v3, aux_logits=False)) == 23_834_568


TABLE6 = {"resnet20": "0.27", "resnet32": "0.46", "resnet44": "0.66", "resnet56": "0.85", "resnet110": "1.7"}


@pytest.mark.parametrize("name,printed", TABLE6.items())
def test_cifar_resnet_counts_round_to_table6(name, printed):
    model = meta(getattr(resnet_mod, name), num_classes=10, in_chans=3)
    decimals = len(printed.split(".")[1])
    assert f"{n_params(model) / 1e6:.{decimals}f}" == printed


# ---------------------------------------------------------------- LeNet-5

def test_lenet5_paper_layer_table():
    rows = lenet5_paper_layer_table()
    assert rows == [
        LayerRow("C1", 156, 122_304), LayerRow("S2", 12, 5_880), LayerRow("C3", 1_516, 151_600),
        LayerRow("S4", 32, 2_000), LayerRow("C5", 48_120, 48_120), LayerRow("F6", 10_164, 10_164),
    ]
    assert sum(row.params for row in rows) == 60_000


def test_lenet5_paper_rbf_is_fixed_and_codes_are_plus_minus_one():
    model = lenet5_paper()
    assert not list(model.output.parameters())
    centres = model.output.centres
    assert centres.shape == (10, 84) and bool((centres.abs() == 1).all())
    gram = centres @ centres.T  # Hadamard rows: orthogonal, so all classes equally far apart
    assert torch.equal(gram, 84 * torch.eye(10))
    many = lenet5_paper(num_classes=300).output.centres  # Hadamard rows, negations, seeded signs
    assert torch.equal(many[:10], centres) and bool((many.abs() == 1).all())
    assert torch.equal(lenet5_paper(num_classes=300).output.centres, many)  # deterministic


def test_lenet5_paper_logits_are_negative_squared_distances_and_train_with_cross_entropy():
    torch.manual_seed(0)
    model = lenet5_paper()
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])
    f6 = model.penultimate_features(x)
    logits = model(x)
    assert torch.allclose(logits, -torch.cdist(f6, model.output.centres) ** 2, atol=1e-4)
    nn.functional.cross_entropy(logits, y).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_lenet5_paper_c3_follows_table_1():
    """Perturbing S2 map i changes exactly the C3 maps whose Table I column has an X in row i."""
    torch.manual_seed(0)
    c3 = lenet5_paper().c3
    base = torch.randn(1, 6, 14, 14)
    for i in range(6):
        bumped = base.clone()
        bumped[:, i] += 1.0
        changed = (c3(bumped) - c3(base)).abs().amax(dim=(0, 2, 3)) > 0
        assert changed.tolist() == [i in row for row in C3_TABLE]


def test_lenet_shapes_and_minimum_sizes():
    model = lenet5(num_classes=10, in_chans=1).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    paper = lenet5_paper(num_classes=10, in_chans=1).eval()
    assert paper(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(RuntimeError):
        paper(torch.randn(1, 1, 28, 28))


# ---------------------------------------------------------------- torchvision parity

TORCHVISION = {  # ours -> torchvision builder kwargs
    "alexnet": ("alexnet", {}),
    **{name: (name.replace("_paper", ""), {}) for name in RESNETS},
    "inception_v3": ("inception_v3", {"aux_logits": True, "init_weights": False}),
}


@pytest.mark.parametrize("name", TORCHVISION)
def test_state_dict_matches_torchvision(name):
    tv_name, tv_kwargs = TORCHVISION[name]
    with torch.device("meta"):
        theirs = getattr(torchvision.models, tv_name)(weights=None, **tv_kwargs)
    ours = meta(BUILDERS[name])
    assert list(ours.state_dict()) == list(theirs.state_dict())  # same names, same order
    assert shapes(ours.state_dict()) == shapes(theirs.state_dict())
    assert n_params(ours) == n_params(theirs)


def test_inception_v3_without_aux_matches_torchvision():
    with torch.device("meta"):
        theirs = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    assert shapes(meta(inception_v3, aux_logits=False).state_dict()) == shapes(theirs.state_dict())


@pytest.mark.parametrize("name,size,batch", [("alexnet", 63, 2), ("resnet18", 64, 2), ("resnet50", 64, 1),
                                             pytest.param("inception_v3", 75, 1, marks=pytest.mark.slow)])
def test_torchvision_weights_give_the_same_logits(name, size, batch):
    tv_name, tv_kwargs = TORCHVISION[name]
    torch.manual_seed(0)
    theirs = randomise_batch_norm(getattr(torchvision.models, tv_name)(weights=None, **tv_kwargs)).eval()
    ours = meta(BUILDERS[name])  # no init cost: the tensors come from torchvision's state dict
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_inception_aux_head_matches_torchvision_and_runs_below_17x17():
    torch.manual_seed(0)
    theirs = randomise_batch_norm(InceptionAux(768, 10)).eval()
    ours = inception_mod.AuxHead(768, 10).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    with torch.no_grad():
        for side in (17, 20):  # where torchvision runs, ours is torchvision
            x = torch.randn(2, 768, side, side)
            torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)
        small = torch.randn(2, 768, 3, 3)
        with pytest.raises(RuntimeError):
            theirs(small)
        assert ours(small).shape == (2, 10)


# ---------------------------------------------------------------- multiply-adds

NATIVE_MACS = {  # G multiply-adds at the native size: torchvision's published GFLOPS
    "alexnet": (224, 0.714),
    "resnet18": (224, 1.814),
    "resnet50": (224, 4.089),
    "inception_v3": (299, 5.713),
    # The paper's Table 1 ("FLOPs", which are multiply-adds): stride on the first 1x1.
    "resnet50_paper": (224, 3.8),
    "resnet101_paper": (224, 7.6),
    "resnet152_paper": (224, 11.3),
}


@pytest.mark.parametrize("name,size_and_macs", NATIVE_MACS.items())
def test_multiply_adds_at_native_size(name, size_and_macs):
    size, expected = size_and_macs
    measured = macs(meta(BUILDERS[name]), size)
    if "paper" in name:
        # The paper prints one decimal, not always rounded (3.86 G appears as 3.8, 7.57 as 7.6).
        assert abs(measured - expected) < 0.1
    else:
        assert round(measured, 3) == expected


def test_v15_costs_more_than_the_papers_stride_placement():
    assert macs(meta(resnet_mod.resnet50), 224) > macs(meta(resnet_mod.resnet50_paper), 224)


# ---------------------------------------------------------------- small-input forwards

SMALL = {  # name -> (size, batch); one channel, 10 classes
    "lenet5": (28, 2), "lenet5_paper": (32, 2), "resnet20": (28, 2), "resnet56": (32, 2),
    "resnet18": (32, 2), "resnet50_paper": (32, 2), "alexnet": (63, 1), "alexnet_paper": (67, 1),
    "inception_v3": (75, 1),
}


@pytest.mark.parametrize("name", SMALL)
def test_small_forward_and_protocol(name):
    size, batch = SMALL[name]
    torch.manual_seed(0)
    model = BUILDERS[name](num_classes=10, in_chans=1, init_weights=False).eval()  # init is not tested here
    x = torch.randn(batch, 1, size, size)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (batch, 10)
        # The protocol: head(penultimate_features) is the forward in eval mode.
        torch.testing.assert_close(model.head(model.penultimate_features(x)), logits)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.stem is first_conv and model.stem.in_channels == 1
    names = [n for n, _ in model.blocks()]
    assert len(names) == len(set(names)) >= 6
    owned = set(map(id, model.modules()))
    assert all(id(m) in owned for _, m in model.blocks())
    assert model.aux_outputs == ({"aux": AUX_LOSS_WEIGHT} if name == "inception_v3" else {})


def test_cifar_resnet_maps_are_32_16_8_with_parameter_free_shortcuts():
    model = resnet_mod.resnet20(num_classes=10, in_chans=1).eval()
    seen = {}
    for name, block in model.blocks():
        block.register_forward_hook(lambda _m, _i, out, key=name: seen.update({key: tuple(out.shape[1:])}))
    model(torch.randn(1, 1, 32, 32))
    assert seen["stem"] == (16, 32, 32)
    assert [seen[f"layer{i}.2"] for i in (1, 2, 3)] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert not list(model.layer2[0].downsample.parameters())


def test_resnet_stride_placement():
    v15, paper = meta(resnet_mod.resnet50), meta(resnet_mod.resnet50_paper)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert paper.layer2[0].conv1.stride == (2, 2) and paper.layer2[0].conv2.stride == (1, 1)


def test_alexnet_paper_towers_lrn_and_init():
    model = alexnet_paper()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    lrns = [m for m in model.features if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrns) == 2 and lrns[0].alpha / lrns[0].size == pytest.approx(1e-4) and lrns[0].k == 2
    assert [c.bias[0].item() for c in convs] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert model.features(torch.randn(1, 3, 227, 227)).shape == (1, 256, 6, 6)


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "alexnet_paper", "inception_v3"])
def test_min_input_size_is_the_smallest_that_runs(name):
    family = {"lenet5": lenet_mod, "alexnet": alexnet_mod, "alexnet_paper": alexnet_mod,
              "inception_v3": inception_mod}[name]
    smallest = family.MIN_INPUT_SIZE[name]
    model = meta(BUILDERS[name], num_classes=10, in_chans=1).eval()  # shapes are all that matter
    assert model(torch.empty(1, 1, smallest, smallest, device="meta")).shape == (1, 10)
    with pytest.raises(RuntimeError):
        model(torch.empty(1, 1, smallest - 1, smallest - 1, device="meta"))


def test_resnets_run_at_their_minimum_size():
    for name in ("resnet18", "resnet20"):
        model = BUILDERS[name](num_classes=10, in_chans=1).eval()
        side = resnet_mod.MIN_INPUT_SIZE[name]
        assert model(torch.randn(1, 1, side, side)).shape == (1, 10)


@pytest.mark.slow
def test_inception_v3_train_mode_returns_aux_at_75px():
    torch.manual_seed(0)
    model = inception_v3(num_classes=10, in_chans=1, init_weights=False).train()
    with torch.no_grad():  # training mode is what matters; no graph keeps this quick
        out = model(torch.randn(2, 1, 75, 75))  # batch 2: batch norm needs two values on 1x1 maps
    assert isinstance(out, InceptionV3Output)
    assert out.logits.shape == out.aux.shape == (2, 10)
    model.eval()
    assert model(torch.randn(1, 1, 75, 75)).shape == (1, 10)
    no_aux = meta(inception_v3, num_classes=10, aux_logits=False)
    assert no_aux.aux_outputs == {} and no_aux.AuxLogits is None


def test_module_constants():
    for module in MODULES.values():
        assert isinstance(module.PAPER, str) and module.PAPER
        assert 1998 <= module.YEAR <= 2015
        assert set(module.NATIVE_INPUT_SIZE) == set(module.MIN_INPUT_SIZE)
        assert all(module.MIN_INPUT_SIZE[k] <= module.NATIVE_INPUT_SIZE[k] for k in module.MIN_INPUT_SIZE)
    assert inception_mod.NATIVE_INPUT_SIZE["inception_v3"] == 299 and AUX_LOSS_WEIGHT == 0.4


def test_a_saved_lenet5_paper_opens_again_with_its_connection_table(tmp_path):
    # C3's connection table is a non-persistent buffer: the weights file never holds it, so
    # rebuilding the model for loading must compute it, not leave it on the meta device.
    from classicnets.engine.checkpoint import load_run, save_weights

    torch.manual_seed(0)
    model = lenet5_paper(num_classes=10, in_chans=1).eval()
    metadata = {"model": "lenet5_paper", "dataset": "fashion-mnist", "num_classes": 10, "in_chans": 1,
                "image_size": 32, "mean": [0.5], "std": [0.5], "class_names": [str(i) for i in range(10)],
                "model_kwargs": {}, "epoch": 1, "val_accuracy": 0.5}
    save_weights(tmp_path / "best.safetensors", model.state_dict(), metadata)
    loaded, _ = load_run(tmp_path)
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    images = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(loaded(images), model(images))
