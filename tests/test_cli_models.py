"""``classicnets models`` and ``classicnets summary``: output, flags and exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from classicnets import list_models
from classicnets.cli.main import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_module(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "classicnets", *argv], capture_output=True, text=True,
                          timeout=300)


def test_models_lists_every_registered_model(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[2:]]
    assert names == list_models()
    vgg16 = next(line for line in out.splitlines() if line.startswith("vgg16 "))
    assert "VGG D" in vgg16 and "138,357,544" in vgg16 and vgg16.endswith("15.47 G")
    googlenet = next(line for line in out.splitlines() if line.startswith("googlenet "))
    assert "13,385,816" in googlenet and "7,005,832" in googlenet and googlenet.endswith("1.59 G")


def test_models_pattern_and_markdown(capsys):
    code, out, _ = run_cli(capsys, "models", "googlenet_*", "--markdown")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "| model | family | paper config | params | inference params | MACs @224 |"
    assert lines[1] == "| --- | --- | --- | ---: | ---: | ---: |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| googlenet_paper", "| googlenet_tv"]
    assert "| 6,624,904 | 1.50 G |" in lines[3]


def test_models_pattern_without_match_exits_2(capsys):
    code, out, err = run_cli(capsys, "models", "densenet*")
    assert code == 2 and out == ""
    assert err.startswith("classicnets models: error: no model matches 'densenet*'")


def test_summary_blocks_of_vgg16(capsys):
    code, out, _ = run_cli(capsys, "summary", "vgg16", "--blocks")
    assert code == 0
    assert out.startswith("vgg16: input 1x3x224x224")
    assert "block5" in out and "features.0" not in out
    assert "138,357,544" in out and "15.47 G" in out


def test_summary_layers_with_a_setting(capsys):
    code, out, _ = run_cli(capsys, "summary", "googlenet", "--image-size", "64", "--in-chans", "1",
                           "--num-classes", "10", "--batch-size", "2")
    assert code == 0
    assert out.startswith("googlenet: input 2x1x64x64")
    assert "aux2.fc2" in out and "2x10" in out and "train" in out
    assert "saved for backward" in out and "n/a" not in out


def test_summary_paper_tables(capsys):
    code, out, _ = run_cli(capsys, "summary", "--paper", "vgg")
    assert code == 0 and out.startswith("VGG, Table 2") and "vgg16_c" in out
    code, out, _ = run_cli(capsys, "summary", "googlenet_tv", "--paper")
    assert code == 0 and out.startswith("GoogLeNet, Table 1") and "from googlenet_tv" in out
    assert "inception (5b)" in out


def test_summary_paper_refuses_a_different_setting(capsys):
    code, out, err = run_cli(capsys, "summary", "googlenet", "--paper", "--input-size", "32")
    assert code == 2 and out == ""
    assert "--image-size cannot be used with it" in err  # named as train names it, alias or not


@pytest.mark.parametrize("argv", [
    ["summary", "vgg16", "--input-size", "0"],
    ["summary", "vgg16", "--batch-size", "two"],
    ["summary", "vgg16", "--blocks", "--paper"],
    ["models", "--unknown-flag"],
])
def test_bad_arguments_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_summary_input_too_small_is_one_sentence(capsys):
    code, out, err = run_cli(capsys, "summary", "googlenet_tv", "--input-size", "8")
    assert code == 2 and out == ""
    assert err.startswith("classicnets summary: error: googlenet_tv cannot run on a 3x8x8 input, too small for it")
    assert len(err.strip().splitlines()) == 1


def test_unknown_model_exits_2_without_traceback():
    result = run_module("summary", "vgg1")
    assert result.returncode == 2
    assert "unknown model 'vgg1'. Did you mean:" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_unknown_paper_family_exits_2_without_traceback():
    result = run_module("summary", "--paper", "googlenett")
    assert result.returncode == 2
    assert "Did you mean: googlenet" in result.stderr and "Traceback" not in result.stderr
