"""The papers' tables beside our computed figures: GoogLeNet Table 1, VGG Table 2, LeNet-5's
layer counts, AlexNet's shapes and neurons, ResNet Tables 1 and 6, Inception v3 Table 1."""

from __future__ import annotations

import pytest
import torch

from classicnets import UserError
from classicnets.analysis.paper_tables import (GOOGLENET_TABLE1, LENET5_LAYERS, PAPER_TABLES, _build,
                                               compare_alexnet, compare_googlenet_table1,
                                               compare_inception_v3_table1, compare_lenet5, compare_resnet_cifar,
                                               compare_resnet_flops, compare_resnet_table1, compare_vgg_table2,
                                               format_alexnet, format_googlenet_table1,
                                               format_inception_v3_table1, format_lenet5, format_resnet_cifar,
                                               format_resnet_table1, format_vgg_table2, paper_table, vgg_layout)
from classicnets.cli.main import main
from classicnets.errors import UnknownModelError
from classicnets.models.lenet import lenet5_paper_layer_table
from classicnets.models.resnet import ResNet


@pytest.fixture(scope="module")
def googlenet_rows():
    return compare_googlenet_table1("googlenet")


@pytest.fixture(scope="module")
def vgg_rows():
    return {r.config: r for r in compare_vgg_table2()}


def row(rows, kind, patch=""):
    return next(r for r in rows if r.paper.kind == kind and r.paper.patch == patch)


def test_every_table1_row_is_compared(googlenet_rows):
    kinds = [r.paper.kind for r in googlenet_rows]
    assert kinds == ["convolution", "max pool", "convolution", "max pool", "inception (3a)", "inception (3b)",
                     "max pool", "inception (4a)", "inception (4b)", "inception (4c)", "inception (4d)",
                     "inception (4e)", "max pool", "inception (5a)", "inception (5b)", "avg pool",
                     "dropout (40%)", "linear", "softmax"]
    assert [r.paper for r in googlenet_rows] == list(GOOGLENET_TABLE1)


def test_output_sizes_depths_and_filters_follow_the_paper(googlenet_rows):
    for r in googlenet_rows:
        assert r.output == r.paper.output, r.paper.kind
        assert r.depth == r.paper.depth, r.paper.kind
        assert r.filters == r.paper.filters, r.paper.kind


def test_inception_3a_matches(googlenet_rows):
    r = row(googlenet_rows, "inception (3a)")
    assert r.params_k == 163_328 / 1024 == 159.5  # paper: 159K
    assert r.ops_m == pytest.approx(128.049152)  # paper: 128M
    assert r.mismatches == ()


def test_the_3x3_convolution_row_counts_its_reduce_layer(googlenet_rows):
    r = row(googlenet_rows, "convolution", "3x3/1")
    assert r.params_k == (64 * 64 + 64 * 192 * 9) / 1024 == 112  # paper: 112K
    assert round(r.ops_m) == 360 and r.mismatches == ()


def test_printed_rows_that_do_not_follow_are_flagged(googlenet_rows):
    conv1 = row(googlenet_rows, "convolution", "7x7/2")
    assert conv1.params_k == 7 * 7 * 3 * 64 / 1024  # 9.2K, printed 2.7K
    assert round(conv1.ops_m) == 118  # printed 34M
    assert conv1.mismatches == ("params", "ops")
    assert "params" in row(googlenet_rows, "inception (5a)").mismatches  # 1018K, printed 1072K
    flagged = [r.paper.kind for r in googlenet_rows if r.mismatches]
    assert flagged == ["convolution", "inception (4c)", "inception (5a)"]


def test_torchvision_layout_differs_where_its_5x5_is_a_3x3():
    rows = compare_googlenet_table1("googlenet_tv")
    r = row(rows, "inception (3a)")
    assert r.params_k == (163_328 - 16 * 32 * (25 - 9)) / 1024
    assert r.mismatches == ("params", "ops")
    assert all(r.output == r.paper.output for r in rows)


def test_table1_needs_a_googlenet():
    with pytest.raises(UserError, match="not one"):
        compare_googlenet_table1("vgg16")


def test_table1_text_states_the_tolerance(googlenet_rows):
    text = format_googlenet_table1(googlenet_rows, "googlenet")
    assert "more than 3% off" in text
    assert "3 of 19 rows differ: convolution 7x7/2, inception (4c), inception (5a)." in text
    assert "params +240%, ops +247%" in text
    assert "159.5K" in text and "K = 1024" in text


def test_vgg_table2_parameters_in_millions(vgg_rows):
    assert list(vgg_rows) == ["A", "A-LRN", "B", "C", "D", "E"]
    assert {c: r.params_m for c, r in vgg_rows.items()} == {
        "A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
    assert vgg_rows["D"].params == 138_357_544
    assert vgg_rows["A-LRN"].params == vgg_rows["A"].params  # LRN has no parameters
    assert all(r.matches for r in vgg_rows.values())


def test_vgg_configuration_column_is_read_from_the_model(vgg_rows):
    assert [r.weight_layers for r in vgg_rows.values()] == [11, 11, 13, 16, 16, 19]
    assert vgg_rows["A-LRN"].layout.startswith("conv3-64 LRN | conv3-128 |")
    assert vgg_rows["C"].layout == ("conv3-64 x2 | conv3-128 x2 | conv3-256 x2 conv1-256 | "
                                    "conv3-512 x2 conv1-512 | conv3-512 x2 conv1-512")
    assert vgg_rows["E"].layout.endswith("conv3-512 x4 | conv3-512 x4")


def test_vgg_layout_of_a_batch_norm_model():
    import torch

    from classicnets import create_model

    with torch.device("meta"):
        features = create_model("vgg11_bn").features
    assert vgg_layout(features) == "conv3-64 | conv3-128 | conv3-256 x2 | conv3-512 x2 | conv3-512 x2"


def test_vgg_table2_text(vgg_rows):
    text = format_vgg_table2(list(vgg_rows.values()))
    lines = text.splitlines()
    assert any(line.startswith("C ") and "vgg16_c" in line and " 134 " in line for line in lines)
    assert "143,667,240" in text and "differs" not in text


def test_paper_table_picks_the_table():
    assert paper_table("vgg").startswith("VGG, Table 2")
    assert paper_table("vgg19_bn").startswith("VGG, Table 2")
    assert paper_table("googlenet_paper").startswith("GoogLeNet, Table 1")
    with pytest.raises(UnknownModelError, match="Did you mean"):
        paper_table("googlenett")


# ---------------------------------------------------------------- LeNet-5

@pytest.fixture(scope="module")
def lenet_paper():
    return compare_lenet5("lenet5_paper")


def test_lenet5_paper_gives_section_2b_figures(lenet_paper):
    assert lenet_paper.input_size == 32
    assert [(r.layer, r.params, r.connections) for r in lenet_paper.rows[:6]] == [
        ("C1", 156, 122_304), ("S2", 12, 5_880), ("C3", 1_516, 151_600), ("S4", 32, 2_000),
        ("C5", 48_120, 48_120), ("F6", 10_164, 10_164)]
    assert [r.paper for r in lenet_paper.rows[:6]] == list(LENET5_LAYERS)
    output, total = lenet_paper.rows[6:]
    assert (output.layer, output.params, output.connections) == ("output", 0, 84 * 10)  # fixed RBF codes
    assert (total.params, total.connections) == (60_000, 340_908)
    assert all(r.mismatches == () for r in lenet_paper.rows)
    assert lenet_paper.rows[2].kind == "convolution (Table I)"


def test_lenet5_counts_agree_with_the_model_modules_own_table(lenet_paper):
    assert [(r.layer, r.params, r.connections) for r in lenet_paper.rows[:6]] == [
        tuple(row) for row in lenet5_paper_layer_table()]


def test_lenet5_text(lenet_paper):
    text = format_lenet5(lenet_paper)
    assert text.startswith("LeNet-5, Section II.B") and "lenet5_paper at 32x32, 1 channel, 10 classes" in text
    assert "0 of 7 rows differ." in text
    assert any(line.split()[:3] == ["C3", "convolution", "convolution"] and "151,600" in line
               for line in text.splitlines())


def test_modern_lenet5_is_flagged_where_it_leaves_the_paper():
    comparison = compare_lenet5("lenet5")
    assert comparison.input_size == 28  # C1 pads by 2, so 28 px gives the printed 28x28 maps
    rows = {r.layer: r for r in comparison.rows}
    assert {name: r.mismatches for name, r in rows.items() if r.mismatches} == {
        "S2": ("type", "params", "connections"), "C3": ("params", "connections"),
        "S4": ("type", "params", "connections"), "total": ("params",)}
    assert (rows["C3"].params, rows["C3"].connections) == (6 * 25 * 16 + 16, 100 * (6 * 25 * 16 + 16))
    assert rows["S2"].connections == 14 * 14 * 6 * 4  # max-pool: window inputs, no bias
    assert "4 of 7 rows differ: S2, C3, S4, total." in format_lenet5(comparison)


# ---------------------------------------------------------------- AlexNet

@pytest.fixture(scope="module")
def alexnet_paper():
    return compare_alexnet("alexnet_paper")


def test_alexnet_paper_shapes_neurons_and_parameters(alexnet_paper):
    assert alexnet_paper.input_size == 227 and alexnet_paper.params == 60_965_224
    rows = {r.layer: r for r in alexnet_paper.rows}
    assert [rows[f"conv{i}"].output for i in range(1, 6)] == [
        (55, 55, 96), (27, 27, 256), (13, 13, 384), (13, 13, 384), (13, 13, 256)]
    assert [rows[f"conv{i}"].kernels for i in range(1, 6)] == [
        (96, 11, 3), (256, 5, 48), (384, 3, 256), (384, 3, 192), (256, 3, 192)]
    assert [r.neurons for r in alexnet_paper.rows] == [
        227 * 227 * 3, 290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
    assert {r.layer: r.mismatches for r in alexnet_paper.rows if r.mismatches} == {
        "input": ("input",), "conv1": ("neurons",)}  # printed 224 and 253,440 do not follow
    assert dict(alexnet_paper.at_printed_input)["conv1"] == (54, 54, 96)
    assert dict(alexnet_paper.at_printed_input)["conv5"] == (12, 12, 256)


def test_alexnet_paper_text(alexnet_paper):
    text = format_alexnet(alexnet_paper)
    assert "2 of 9 rows differ: input, conv1." in text
    assert "conv1: printed 253,440 neurons; 55x55x96 = 290,400." in text
    assert "the printed 224x224 does not give the printed 55x55x96 conv1 maps; 227x227" in text
    assert 'ours 60,965,224, printed "60 million" (ok;' in text


def test_torchvision_alexnet_shapes():
    comparison = compare_alexnet("alexnet")
    assert comparison.input_size == 224 and comparison.at_printed_input == ()
    assert comparison.params == 61_100_840
    assert [r.output for r in comparison.rows[1:6]] == [
        (55, 55, 64), (27, 27, 192), (13, 13, 384), (13, 13, 256), (13, 13, 256)]
    assert [r.layer for r in comparison.rows if r.mismatches] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert all("kernels" in r.mismatches for r in comparison.rows[1:6])


# ---------------------------------------------------------------- ResNet

@pytest.fixture(scope="module")
def resnet_flops():
    return {r.model_name: r for r in compare_resnet_flops()}


def test_resnet_table1_follows_from_the_paper_stride_models():
    table = compare_resnet_table1()
    assert table.model_names == ("resnet18", "resnet34", "resnet50_paper", "resnet101_paper", "resnet152_paper")
    assert len(table.rows) == 2 + 4 * 5 + 1
    assert all(r.mismatches == () and r.ours == r.paper for r in table.rows)
    assert {r.layer: r.output for r in table.rows} == {
        "conv1": "112x112", "conv2_x": "56x56", "conv3_x": "28x28", "conv4_x": "14x14", "conv5_x": "7x7",
        "head": "1x1"}
    r152 = next(r for r in table.rows if r.layer == "conv4_x" and r.depth == 152)
    assert r152.ours == "[1x1, 256; 3x3, 256; 1x1, 1024] x36"


def test_resnet_flops_are_multiply_adds_for_both_stride_placements(resnet_flops):
    assert {name: round(r.macs / 1e9, 2) for name, r in resnet_flops.items()} == {
        "resnet18": 1.81, "resnet34": 3.66, "resnet50_paper": 3.86, "resnet50": 4.09,
        "resnet101_paper": 7.57, "resnet101": 7.80, "resnet152_paper": 11.28, "resnet152": 11.51}
    assert {name: r.check for name, r in resnet_flops.items()} == {
        "resnet18": "ok", "resnet34": "rounds to 3.7 (3.6 if truncated)",
        "resnet50_paper": "rounds to 3.9 (3.8 if truncated)", "resnet50": "rounds to 4.1, +8%",
        "resnet101_paper": "ok", "resnet101": "rounds to 7.8, +3%",
        "resnet152_paper": "ok", "resnet152": "rounds to 11.5, +2%"}
    assert [r.stride_on for r in resnet_flops.values()] == [
        "3x3 (basic)", "3x3 (basic)", "1x1 (paper)", "3x3 (v1.5)", "1x1 (paper)", "3x3 (v1.5)",
        "1x1 (paper)", "3x3 (v1.5)"]
    assert all(r.layers == r.depth for r in resnet_flops.values())
    assert resnet_flops["resnet50"].params == resnet_flops["resnet50_paper"].params == 25_557_032


def test_resnet_table1_text(resnet_flops):
    text = format_resnet_table1(compare_resnet_table1(paper_strides=False), list(resnet_flops.values()))
    assert "ours from resnet18 / resnet34 / resnet50 / resnet101 / resnet152 at 224x224" in text
    assert "0 of 23 rows differ." in text and "multiply-adds" in text
    assert "5 of 8 models do not round to the printed figure: resnet34, resnet50_paper, resnet50, " \
           "resnet101, resnet152." in text
    assert text.count("conv3_x") == 1  # a layer's name and output once, as the paper prints them


def test_resnet_cifar_table6():
    rows = {r.depth: r for r in compare_resnet_cifar()}
    assert {d: r.params for d, r in rows.items()} == {
        20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
    assert rows[20].layers == (1, 6, 6, 6) and rows[110].layers == (1, 36, 36, 36)
    assert all(r.maps == (32, 16, 8) and r.filters == (16, 32, 64) for r in rows.values())
    assert all(r.weight_layers == r.depth and r.mismatches == () for r in rows.values())
    text = format_resnet_cifar(list(rows.values()))
    assert "0 of 5 rows differ." in text
    assert any(line.startswith("resnet110 ") and " 1.7 " in line and "1,727,962" in line
               for line in text.splitlines())


# ---------------------------------------------------------------- Inception v3

@pytest.fixture(scope="module")
def inception_v3_rows():
    return compare_inception_v3_table1()


def test_inception_v3_inputs_per_row(inception_v3_rows):
    assert [r.input for r in inception_v3_rows.rows] == [
        (299, 299, 3), (149, 149, 32), (147, 147, 32), (147, 147, 64), (73, 73, 64), (73, 73, 80),
        (71, 71, 192), (35, 35, 192), (17, 17, 768), (8, 8, 1280), (8, 8, 2048), (1, 1, 2048), (1, 1, 1000)]
    assert inception_v3_rows.reductions == (("Mixed_6a", (35, 35, 288), (17, 17, 768)),
                                            ("Mixed_7a", (17, 17, 768), (8, 8, 1280)))
    assert (inception_v3_rows.inference_params, inception_v3_rows.params) == (23_834_568, 27_161_264)


def test_inception_v3_printed_rows_that_do_not_follow(inception_v3_rows):
    assert [r.mismatches for r in inception_v3_rows.rows] == [
        (), (), (), (),
        ("patch",),  # ours is a 1x1 conv to 80
        ("patch", "input"),  # a 3x3/1 conv to 192 on 73x73, not 3x3/2 on 71x71
        ("type", "patch", "input"),  # ours max-pools 71x71x192 to 35x35: no conv on 35x35x192
        ("input",),  # 192 channels reach the 35x35 modules, not 288
        ("modules",),  # four 17x17 modules, not five
        (), (), (), ()]
    assert [r.patch for r in inception_v3_rows.rows[4:7]] == ["1x1/1", "3x3/1", "3x3/2"]
    text = format_inception_v3_table1(inception_v3_rows)
    assert "5 of 13 rows differ: conv 3x3/1 on 73x73x64, conv 3x3/2 on 71x71x80, conv 3x3/1 on 35x35x192, " \
           "3xInception on 35x35x288, 5xInception on 17x17x768." in text
    assert "Mixed_6a 35x35x288 -> 17x17x768" in text


# ---------------------------------------------------------------- which table, and building

def test_paper_table_for_the_new_families():
    assert paper_table("lenet").startswith("LeNet-5, Section II.B") and "from lenet5_paper" in paper_table("lenet")
    assert "from lenet5 at 28x28" in paper_table("lenet5")
    both = paper_table("alexnet")  # the family word and torchvision's layout: both tables
    assert both.count("AlexNet, Section 3") == 2 and "from alexnet_paper" in both and "from alexnet at" in both
    assert "from alexnet_paper" in paper_table("alexnet_paper") and paper_table("alexnet_paper").count("AlexNet,") == 1
    assert paper_table("inception_v3").startswith("Inception v3, Table 1")
    cifar = paper_table("resnet56")
    assert cifar.startswith("ResNet on CIFAR-10") and "Table 1 (" not in cifar


def test_paper_table_for_the_resnet_family():
    text = paper_table("resnet")
    assert text.startswith("ResNet, Table 1") and "ResNet on CIFAR-10" in text


def test_a_model_without_a_paper_table_is_one_sentence(monkeypatch):
    monkeypatch.delitem(PAPER_TABLES, "vgg")
    with pytest.raises(UserError, match=r"^vgg16 has no paper table; --paper covers the families vgg, .*\.$"):
        paper_table("vgg16")


def test_unknown_names_suggest_unregistered_models_too():
    with pytest.raises(UnknownModelError, match="Did you mean: resnet50"):
        paper_table("resnt50")


def test_build_uses_the_registry_then_the_module_builders():
    model = _build("resnet20", num_classes=10)
    assert isinstance(model, ResNet) and model.fc.out_features == 10
    assert next(model.parameters()).device == torch.device("meta")
    assert _build("vgg11").features[0].out_channels == 64
    with pytest.raises(UnknownModelError):
        _build("resnet9000")


def test_a_table_refuses_another_family():
    with pytest.raises(UserError, match="compares LeNet5 models, and vgg11 is not one"):
        compare_lenet5("vgg11")


def test_cli_paper_tables_for_the_new_families(capsys):
    assert main(["summary", "--paper", "lenet"]) == 0
    assert capsys.readouterr().out.startswith("LeNet-5, Section II.B")
    assert main(["summary", "inception_v3", "--paper"]) == 0
    assert "5xInception" in capsys.readouterr().out


def test_cli_model_without_a_paper_table_exits_2(capsys, monkeypatch):
    monkeypatch.delitem(PAPER_TABLES, "googlenet")
    assert main(["summary", "--paper", "googlenet_tv"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "googlenet_tv has no paper table" in captured.err
