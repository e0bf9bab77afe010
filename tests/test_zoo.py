"""`classicnets zoo`: one row per registered family, figures from the summary functions,
published accuracy from torchvision's weight enums, the chart, and output checks.
Timings are only checked to be numbers: this machine's speed is not the test's business."""

import math
import re
from pathlib import Path

import pytest
import torch

from classicnets.analysis.summary import count_macs, count_params, summarize
from classicnets.analysis.zoo import (BenchSettings, benchmark, describe, family_models, native_settings,
                                      representative, zoo_models)
from classicnets.cli.main import main
from classicnets.files import is_drawn_figure
from classicnets.models import create_model, get_model_entry, list_models
from classicnets.models.published import torchvision_published_accuracy

SRC = Path(__file__).resolve().parents[1] / "src" / "classicnets"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def registered_families() -> set[str]:
    return {get_model_entry(name).family for name in list_models()}


def markdown_rows(text: str) -> list[list[str]]:
    """The data rows of the page's table (header and rule left out)."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


@pytest.fixture(scope="module")
def zoo_run(module_tmp_path):
    """One `zoo --no-bench` run writing the page and the chart (meta device only: seconds)."""
    out, chart = module_tmp_path / "zoo.md", module_tmp_path / "zoo.png"
    assert main(["zoo", "--no-bench", "--out", str(out), "--chart", str(chart)]) == 0
    return out, chart


def test_one_row_per_registered_family(zoo_run):
    rows = markdown_rows(zoo_run[0].read_text())
    families = [row[0] for row in rows]
    assert sorted(families) == sorted(registered_families())
    for family, name in ((row[0], row[1]) for row in rows):
        assert get_model_entry(name).family == family
    assert all(row[9] == "not measured" and row[10] == "not measured" for row in rows)  # --no-bench


def test_the_page_links_the_chart_and_says_where_accuracy_comes_from(zoo_run):
    text = zoo_run[0].read_text()
    assert "![ImageNet top-1 against multiply-adds](zoo.png)" in text
    rows = {row[1]: row for row in markdown_rows(text)}
    for name, row in rows.items():
        published = torchvision_published_accuracy(name)
        if published is None:
            assert row[11] == row[12] == "-"
        else:
            assert row[11] == f"{published[0]:.2f}%"
            assert row[12] == published[1]


def test_chart_is_a_real_png_classicnets_may_redraw(zoo_run):
    chart = zoo_run[1]
    data = chart.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    assert is_drawn_figure(chart)


@pytest.mark.parametrize("name", ["vgg16", "googlenet"])
def test_params_and_macs_are_the_summary_functions(name):
    row = describe(name)
    size, in_chans, classes = native_settings(name)
    assert (size, in_chans, classes) == (row.input_size, row.in_chans, row.num_classes)
    with torch.device("meta"):
        model = create_model(name, num_classes=classes, in_chans=in_chans)
    summary = summarize(model, size, in_chans=in_chans, batch_size=1, training_pass=False)
    assert row.params == summary.inference_params and row.total_params == count_params(model)
    assert row.macs == count_macs(model, size, in_chans) == summary.macs
    assert row.activation_bytes == summary.activation_bytes
    assert row.receptive_field is not None and not row.receptive_field.whole


def test_known_figures():
    vgg16, googlenet = describe("vgg16"), describe("googlenet")
    assert (vgg16.params, vgg16.macs) == (138_357_544, 15_470_264_320)  # README, torchvision
    assert vgg16.receptive_field.size == (212, 212)  # the last conv of VGG16 sees 212 px
    assert googlenet.params == 7_005_832 and googlenet.total_params == 13_385_816  # aux heads left out
    assert googlenet.top1 is None  # true 5x5 kernels: torchvision's weights do not fit


def test_published_accuracy_comes_from_torchvision_meta():
    assert torchvision_published_accuracy("vgg16") == (
        pytest.approx(71.592), "torchvision weights VGG16_Weights.IMAGENET1K_V1 (meta)")
    assert torchvision_published_accuracy("googlenet") is None
    for name in list_models():
        published = torchvision_published_accuracy(name)
        assert published is None or 0 < published[0] < 100


def test_representatives_come_from_the_registry():
    names = zoo_models()
    assert len(names) == len(registered_families())
    for name in names:
        assert name in family_models(get_model_entry(name).family)
    assert sorted(zoo_models(all_models=True)) == list_models()
    if not any(getattr(get_model_entry(n), "representative", False) for n in family_models("vgg")):
        assert representative("vgg") == "vgg16"  # the middle of VGG 11/13/16/19 (+ BN) by size


def test_benchmark_fills_the_speed_columns():
    cheapest = min(zoo_models(), key=lambda name: describe(name).macs)
    row = benchmark(describe(cheapest), BenchSettings(repeats=1, warmup=0, batch_size=2))
    assert math.isfinite(row.latency_ms) and row.latency_ms > 0
    assert math.isfinite(row.images_per_s) and row.images_per_s > 0


@pytest.mark.parametrize("option", ["--out", "--chart"])
def test_bad_outputs_are_refused_before_any_work(tmp_path, capsys, option):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    for target in (tmp_path, photo):  # a directory; an image that may be a photo
        assert main(["zoo", "--no-bench", option, str(target)]) == 2
        assert "error" in capsys.readouterr().err
    assert photo.read_bytes().startswith(b"\xff\xd8")
    assert main(["zoo", "--no-bench", "--out", str(tmp_path / "z.png"), "--chart", str(tmp_path / "z.png")]) == 2


def test_bad_repeats_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "--repeats", "0"])
    assert exit_info.value.code == 2


def test_no_torchvision_import_outside_models():
    for path in (SRC / "analysis" / "zoo.py", SRC / "cli" / "zoo.py"):
        assert not re.search(r"^\s*(import|from)\s+torchvision\b", path.read_text(), flags=re.M), path
