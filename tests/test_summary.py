"""Parameter counts, multiply-adds and summaries, checked against REFERENCE.md and by hand.

Models are built on the meta device wherever only shapes and counts matter.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from classicnets import UserError, create_model, list_models
from classicnets.analysis.summary import (count_macs, count_params, format_summary, model_blocks,
                                          summarize)
from classicnets.analysis.text_table import format_count, format_macs, format_mib, render_table
from classicnets.models.googlenet import INCEPTION_TABLE


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.fixture(scope="module")
def googlenet_summary():
    return summarize(meta_model("googlenet"), 224, 3, 1, name="googlenet")


@pytest.fixture(scope="module")
def vgg16_summary():
    return summarize(meta_model("vgg16"), 224, 3, 1, name="vgg16")


# Exact counts from REFERENCE.md (3 input channels, 1000 classes).
@pytest.mark.parametrize("name, kwargs, expected", [
    ("vgg11", {}, 132_863_336),
    ("vgg13", {}, 133_047_848),
    ("vgg16", {}, 138_357_544),
    ("vgg19", {}, 143_667_240),
    ("vgg11_bn", {}, 132_868_840),
    ("vgg16_bn", {}, 138_365_992),
    ("googlenet", {"aux_logits": False}, 7_005_832),
    ("googlenet", {"aux_logits": True}, 13_385_816),
    ("googlenet_tv", {"aux_logits": False}, 6_624_904),
    ("googlenet_tv", {"aux_logits": True}, 13_004_888),
])
def test_params_match_reference(name, kwargs, expected):
    assert count_params(meta_model(name, **kwargs)) == expected


@pytest.mark.parametrize("name", list_models("vgg*_bn"))
def test_batch_norm_adds_a_scale_and_shift_per_conv_channel(name):
    plain = meta_model(name.removesuffix("_bn"))
    conv_channels = sum(m.out_channels for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert count_params(meta_model(name)) == count_params(plain) + 2 * conv_channels


def test_googlenet_paper_trades_batch_norm_for_conv_biases():
    # Each conv loses batch norm's 2 parameters per channel and gains 1 bias per channel.
    bn = meta_model("googlenet", aux_logits=False)
    conv_channels = sum(m.out_channels for m in bn.modules() if isinstance(m, nn.Conv2d))
    paper = meta_model("googlenet_paper", aux_logits=False)
    assert count_params(paper) == count_params(bn) - conv_channels


def test_vgg16_macs_at_224():
    macs = count_macs(meta_model("vgg16"), 224, 3, 1)
    assert macs == 15_470_264_320
    assert format_macs(macs) == "15.47 G"


def test_macs_scale_with_batch_size():
    model = meta_model("vgg11", num_classes=10)
    assert count_macs(model, 32, 3, 4) == 4 * count_macs(model, 32, 3, 1)


def test_googlenet_tv_macs_at_224():
    macs = count_macs(meta_model("googlenet_tv"), 224, 3, 1)
    assert macs == 1_501_602_352  # 1,498,376,192 in convs and linears + 3,226,160 in batch norm
    assert format_macs(macs) == "1.50 G"


def test_googlenet_true_5x5_costs_exactly_the_wider_kernels_more():
    """REFERENCE.md: 1.50 G (torchvision layout) and 1.59 G (true 5x5) at 224, which both
    follow when batch norm counts one multiply-add per element (fvcore's convention)."""
    true_5x5 = count_macs(meta_model("googlenet"), 224, 3, 1)
    tv = count_macs(meta_model("googlenet_tv"), 224, 3, 1)
    side = {"3": 28, "4": 14, "5": 7}  # map size per stage at 224
    extra = sum((25 - 9) * row[3] * row[4] * side[name[0]] ** 2 for name, row in INCEPTION_TABLE.items())
    assert true_5x5 - tv == extra
    assert true_5x5 == 1_585_898_032  # 1,582,671,872 in convs and linears + batch norm
    assert format_macs(true_5x5) == "1.59 G"


class TwoBranchNet(nn.Module):
    """A small stand-in for GoogLeNet: conv-BN-ReLU, pooling, two concatenated branches,
    dropout, and a head that only runs in training."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(2))
        self.left = nn.Conv2d(8, 4, 1)
        self.right = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.aux = nn.Linear(8, 5)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(10, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = self.head(torch.cat([self.left(x), self.right(x)], dim=1))
        return out + self.aux(x.mean((2, 3))) if self.training else out


def test_meta_and_cpu_give_the_same_summary():
    torch.manual_seed(0)
    cpu = TwoBranchNet()
    with torch.device("meta"):
        meta = TwoBranchNet()
    a, b = summarize(cpu, 16, 3, 2), summarize(meta, 16, 3, 2)
    assert a.layers == b.layers and a.blocks == b.blocks
    for field in ("total_params", "macs", "train_forward_macs", "param_bytes", "activation_bytes",
                  "saved_for_backward_bytes"):
        assert getattr(a, field) == getattr(b, field), field
    assert count_macs(cpu, 16, 3, 2) == a.macs
    assert [row.name for row in a.layers if row.train_only] == ["aux"]
    assert a.macs == 2 * (8 * 16 * 16 * 27 + 8 * 16 * 16 + 8 * 8 * (8 * 4 + 8 * 4 + 4 * 6 * 9) + 10 * 5)  # conv, BN, branches, head
    assert a.train_forward_macs == a.macs + 2 * 8 * 5


def test_memory_of_a_small_net_by_hand():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(100, 3))
    s = summarize(model, input_size=5, in_chans=2, batch_size=2)
    f32 = 4
    # Outputs: the conv's 2x4x5x5 (ReLU works in place, Flatten is a view) and the logits.
    assert s.activation_bytes == (2 * 4 * 5 * 5 + 2 * 3) * f32
    # Saved for backward: the conv's input, and ReLU's result, which the linear layer's
    # input views. The weights are saved too, but they are parameters.
    assert s.saved_for_backward_bytes == (2 * 2 * 5 * 5 + 2 * 4 * 5 * 5) * f32
    assert s.param_bytes == (4 * 2 * 9 + 4 + 100 * 3 + 3) * f32
    assert s.macs == 2 * (4 * 5 * 5 * 2 * 9 + 100 * 3)


def test_vgg16_summary_totals(vgg16_summary):
    s = vgg16_summary
    assert s.total_params == s.trainable_params == s.inference_params == 138_357_544
    assert s.macs == s.train_forward_macs == 15_470_264_320
    assert s.param_bytes == 4 * 138_357_544
    assert sum(row.params for row in s.layers) == s.total_params
    assert sum(row.macs for row in s.layers) == s.macs
    assert sum(row.params for row in s.blocks) == s.total_params
    assert sum(row.macs for row in s.blocks) == s.macs
    assert s.saved_for_backward_bytes > s.activation_bytes > 0


def test_vgg16_blocks_end_at_each_pool(vgg16_summary):
    blocks = {row.name: row for row in vgg16_summary.blocks}
    assert list(blocks) == ["block1", "block2", "block3", "block4", "block5", "classifier"]
    assert blocks["block1"].output_shape == (1, 64, 112, 112)
    assert blocks["block5"].output_shape == (1, 512, 7, 7)
    assert blocks["classifier"].output_shape == (1, 1000)
    assert blocks["block1"].params == 3 * 64 * 9 + 64 + 64 * 64 * 9 + 64


def test_googlenet_summary_separates_the_auxiliary_heads(googlenet_summary):
    s = googlenet_summary
    train_only = [row for row in s.layers if row.train_only]
    assert train_only and all(row.name.startswith(("aux1.", "aux2.")) for row in train_only)
    assert s.total_params == 13_385_816
    assert s.inference_params == 7_005_832 == s.total_params - sum(row.params for row in train_only)
    assert sum(row.macs for row in s.layers if not row.train_only) == s.macs == 1_585_898_032
    assert sum(row.macs for row in s.layers) == s.train_forward_macs == 1_594_274_352
    assert sum(row.params for row in s.blocks) == s.total_params
    assert s.notes == ()


def test_googlenet_blocks_in_forward_order(googlenet_summary):
    names = [row.name for row in googlenet_summary.blocks]
    assert names == ["stem1", "stem2", "inception3a", "inception3b", "pool3", "inception4a", "aux1",
                     "inception4b", "inception4c", "inception4d", "aux2", "inception4e", "pool4",
                     "inception5a", "inception5b", "head"]
    blocks = {row.name: row for row in googlenet_summary.blocks}
    assert blocks["stem1"].output_shape == (1, 64, 56, 56)
    assert blocks["inception3a"].output_shape == (1, 256, 28, 28)
    assert blocks["aux1"].train_only and blocks["aux1"].output_shape == (1, 1000)
    assert not blocks["head"].train_only


def test_every_leaf_belongs_to_a_block():
    for name in ("vgg11_lrn", "googlenet_paper"):
        model = meta_model(name)
        groups = [m for _, members in model_blocks(model) for m in members]
        leaves = [q for q, module in model.named_modules() if not list(module.children())]
        assert all(sum(q == g or q.startswith(g + ".") for g in groups) == 1 for q in leaves), name


def test_summary_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, 8, 3, 2)
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train()
    summarize(model, 8, 3, 2)
    assert all(m.training for m in model.modules())


def test_training_pass_that_cannot_run_is_reported_not_raised():
    # At 32 px GoogLeNet's last maps are 1x1: batch norm cannot train on one value per channel.
    s = summarize(meta_model("googlenet"), 32, 3, 1)
    assert s.saved_for_backward_bytes is None and s.train_forward_macs is None
    assert len(s.notes) == 1 and "more than 1 value per channel" in s.notes[0]
    assert "Note: The training-mode forward fails" in format_summary(s)
    assert summarize(meta_model("googlenet"), 32, 3, 2).saved_for_backward_bytes > 0


def test_input_too_small_is_a_user_error():
    with pytest.raises(UserError, match="too small"):
        summarize(meta_model("googlenet_tv"), 8, 3, 1, name="googlenet_tv")
    with pytest.raises(UserError, match="too small"):
        count_macs(meta_model("googlenet_tv"), 8)


def test_wrong_channels_and_bad_numbers_are_user_errors():
    model = meta_model("vgg11", num_classes=10)
    with pytest.raises(UserError, match="3 input channels"):
        summarize(model, 32, in_chans=1)
    with pytest.raises(UserError, match="batch size"):
        count_macs(model, 32, 3, batch_size=0)


def test_format_summary(vgg16_summary, googlenet_summary):
    layers = format_summary(vgg16_summary, "layers")
    assert "138,357,544" in layers and "15.47 G" in layers and "527.79 MiB" in layers
    assert "features.30" in layers and "mode" not in layers
    blocks = format_summary(vgg16_summary, "blocks")
    assert "block5" in blocks and "features.30" not in blocks
    google = format_summary(googlenet_summary, "layers")
    assert "aux1.fc2" in google and "mode" in google and "1.59 G" in google
    with pytest.raises(ValueError):
        format_summary(vgg16_summary, "rows")


def test_number_formats_and_table_alignment():
    assert format_count(138357544) == "138,357,544"
    assert format_macs(1_498_376_192) == "1.50 G" and format_macs(4_200) == "4.20 K" and format_macs(12) == "12"
    assert format_mib(3 * 2**20) == "3.00 MiB"
    lines = render_table(["name", "n"], [["a", "1"], ["long", "1,000"]], ["l", "r"]).splitlines()
    assert lines == ["name      n", "----  -----", "a         1", "long  1,000"]


# Receptive fields (RF) and effective strides (jump), in input pixels.

def rf(row) -> int | str:
    """A row's receptive field as one number (square in these models), or "all"."""
    field = row.receptive_field
    if field.whole:
        return "all"
    assert field.size[0] == field.size[1] and field.jump[0] == field.jump[1]
    return field.size[0]


def jump(row) -> int:
    return row.receptive_field.jump[0]


def test_vgg16_receptive_fields_match_the_published_figures(vgg16_summary):
    layers = {row.name: row for row in vgg16_summary.layers}
    assert rf(layers["features.0"]) == 3 and rf(layers["features.2"]) == 5  # conv1_1, conv1_2
    assert [rf(layers[f"features.{i}"]) for i in (10, 12, 14, 16)] == [24, 32, 40, 44]  # conv3_1..3, pool3
    assert rf(layers["features.30"]) == 212 and jump(layers["features.30"]) == 32  # pool5
    assert rf(layers["avgpool"]) == 212  # a 7x7 adaptive pool on 7x7 maps is the identity
    assert rf(layers["classifier.0"]) == "all"
    blocks = {row.name: row for row in vgg16_summary.blocks}
    assert [rf(blocks[f"block{i}"]) for i in range(1, 6)] == [6, 16, 44, 100, 212]
    assert [jump(blocks[f"block{i}"]) for i in range(1, 6)] == [2, 4, 8, 16, 32]


def test_stacked_3x3_convolutions_see_as_far_as_one_larger_kernel_with_fewer_parameters(vgg16_summary):
    layers = {row.name: row for row in vgg16_summary.layers}
    pool2 = layers["features.9"]
    conv3 = [layers[f"features.{i}"] for i in (10, 12, 14)]
    # From the block's input, two 3x3 convolutions widen the field as one 5x5 would and three as one 7x7.
    assert rf(conv3[1]) - rf(pool2) == (5 - 1) * jump(pool2)
    assert rf(conv3[2]) - rf(pool2) == (7 - 1) * jump(pool2)
    c = 256
    assert conv3[1].params == conv3[2].params == 9 * c * c + c
    assert 2 * (9 * c * c + c) < 25 * c * c + c and 3 * (9 * c * c + c) < 49 * c * c + c


def test_receptive_fields_do_not_depend_on_the_input_size():
    # VGG-A's published 150 px at pool5; VGG16's 212 px again, both at 32 px inputs.
    for name, expected in (("vgg11", 150), ("vgg16", 212)):
        s = summarize(meta_model(name), 32, 3, 1, training_pass=False)
        pool5 = [row for row in s.layers if row.kind == "MaxPool2d"][-1]
        assert (rf(pool5), jump(pool5)) == (expected, 32), name


def test_vgg16_first_fully_connected_layer_holds_three_quarters_of_the_parameters(vgg16_summary):
    fc1 = next(row for row in vgg16_summary.layers if row.name == "classifier.0")
    assert fc1.param_share == pytest.approx(74, abs=0.5)
    assert sum(row.param_share for row in vgg16_summary.layers) == pytest.approx(100)
    assert sum(row.param_share for row in vgg16_summary.blocks) == pytest.approx(100)


def test_an_inception_module_sees_as_far_as_its_widest_branch(googlenet_summary):
    layers = {row.name: row for row in googlenet_summary.layers}
    assert rf(layers["pool2"]) == 27 and jump(layers["pool2"]) == 8
    branches = {b: rf(layers[f"inception3a.{b}"]) for b in ("branch1x1.conv", "branch3x3.1.conv",
                                                           "branch5x5.1.conv", "branch_pool.1.conv")}
    assert branches == {"branch1x1.conv": 27, "branch3x3.1.conv": 27 + 2 * 8,
                        "branch5x5.1.conv": 27 + 4 * 8, "branch_pool.1.conv": 27 + 2 * 8}
    # After the concatenation even the next 1x1 convolution sees what the 5x5 branch saw.
    assert rf(layers["inception3b.branch1x1.conv"]) == 59 and jump(layers["inception3b.branch1x1.conv"]) == 8
    blocks = {row.name: row for row in googlenet_summary.blocks}
    assert rf(blocks["inception3a"]) == 59 and rf(blocks["inception5b"]) == 715 and jump(blocks["inception5b"]) == 32
    assert rf(layers["aux1.pool"]) == 171 + 4 * 16 and jump(layers["aux1.pool"]) == 48  # the paper's 5x5/3
    assert rf(blocks["aux1"]) == rf(blocks["head"]) == "all"


class BranchesAndSums(nn.Module):
    """Concatenation, a residual sum in place, a functional pool and a mean: no modules join them."""

    def __init__(self) -> None:
        super().__init__()
        self.narrow = nn.Conv2d(3, 2, 1)
        self.wide = nn.Conv2d(3, 2, 5, padding=2)
        self.after_cat = nn.Conv2d(4, 4, 3, padding=1)
        self.shortcut_free = nn.Conv2d(4, 4, 3, padding=1)
        self.dilated = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.uneven = nn.AdaptiveMaxPool2d((3, 4))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.after_cat(torch.cat([self.narrow(x), self.wide(x)], dim=1))  # 5, then 5 + 2
        x += self.shortcut_free(nn.functional.max_pool2d(x, 2))[..., :1, :1]  # the sum keeps the wider field
        x = self.dilated(x)
        x = self.uneven(x)
        return self.head(x.mean((2, 3)))


def test_fields_follow_concatenations_sums_and_functional_calls():
    s = summarize(BranchesAndSums(), 8, 3, 1, training_pass=False)
    layers = {row.name: row for row in s.layers}
    assert rf(layers["narrow"]) == 1 and rf(layers["wide"]) == 5
    assert rf(layers["after_cat"]) == 7 and jump(layers["after_cat"]) == 1  # max over the concatenated inputs
    assert rf(layers["shortcut_free"]) == 7 + 1 + 2 * 2 and jump(layers["shortcut_free"]) == 2  # F.max_pool2d
    # The in-place sum took the wider field and the larger jump: 12 + 2 * 2 * 2 with the 3x3 dilated by 2.
    assert rf(layers["dilated"]) == 12 + 2 * 2 * 2 and jump(layers["dilated"]) == 2
    # 8x8 to 3x4: windows of 4 (8 / 3 rounded out) and steps of up to 3 rows, 2 by 2 across.
    field = layers["uneven"].receptive_field
    assert field.size == (20 + 3 * 2, 20 + 1 * 2) and field.jump == (3 * 2, 2 * 2)
    assert rf(layers["head"]) == "all"  # after a mean over both spatial axes


def test_alexnet_sees_195_px_at_its_last_pool():
    # torchvision's one-tower layout: conv1 11x11/4, pools 3x3/2 (the published 195 px).
    s = summarize(meta_model("alexnet"), 224, 3, 1, training_pass=False)
    last_pool = [row for row in s.layers if row.kind == "MaxPool2d"][-1]
    assert (rf(last_pool), jump(last_pool)) == (195, 32)
