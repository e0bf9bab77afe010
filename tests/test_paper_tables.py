"""The papers' tables beside our computed figures: GoogLeNet Table 1, VGG Table 2."""

from __future__ import annotations

import pytest

from classicnets import UserError
from classicnets.analysis.paper_tables import (GOOGLENET_TABLE1, compare_googlenet_table1, compare_vgg_table2,
                                               format_googlenet_table1, format_vgg_table2, paper_table,
                                               vgg_layout)
from classicnets.errors import UnknownModelError


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
