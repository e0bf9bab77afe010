"""The registry and the CLI's error handling around it."""

import subprocess
import sys

import pytest

from classicnets import UserError, create_model, list_models
from classicnets.cli.main import main
from classicnets.errors import UnknownModelError

ALL_MODELS = [
    "alexnet", "alexnet_paper",
    "googlenet", "googlenet_paper", "googlenet_tv",
    "inception_v3", "lenet5", "lenet5_paper",
    "resnet101", "resnet101_paper", "resnet110", "resnet152", "resnet152_paper", "resnet18", "resnet20",
    "resnet32", "resnet34", "resnet44", "resnet50", "resnet50_paper", "resnet56",
    "vgg11", "vgg11_bn", "vgg11_lrn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
    "vgg16_c", "vgg16_c_bn", "vgg19", "vgg19_bn",
]


def test_list_models_is_sorted_and_complete():
    assert list_models() == ALL_MODELS


def test_list_models_filters_with_a_pattern():
    assert list_models("vgg1?_bn") == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert list_models("googlenet*") == ["googlenet", "googlenet_paper", "googlenet_tv"]


def test_unknown_model_lists_close_matches():
    with pytest.raises(UnknownModelError) as info:
        create_model("vgg17")
    message = str(info.value)
    assert "unknown model 'vgg17'" in message
    assert "Did you mean" in message and "vgg16" in message
    assert isinstance(info.value, UserError) and isinstance(info.value, KeyError)


def test_unknown_model_without_close_match_still_lists_models():
    with pytest.raises(UnknownModelError, match="Known models: alexnet"):
        create_model("densenet121")


@pytest.mark.parametrize("kwargs,match", [({"num_classes": 0}, "num_classes"), ({"in_chans": 0}, "in_chans"),
                                          ({"pretrained": "imagenet-21k"}, "pretrained source")])
def test_bad_arguments_raise_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        create_model("vgg11", **kwargs)


def test_cli_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == "classicnets 0.1.0"
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "summary" in capsys.readouterr().out


def test_cli_without_a_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: classicnets" in capsys.readouterr().err


def test_cli_unknown_model_exits_2_without_traceback():
    result = subprocess.run([sys.executable, "-m", "classicnets", "summary", "vgg17"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown model 'vgg17'" in result.stderr and "vgg16" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unknown_subcommand_exits_2():
    result = subprocess.run([sys.executable, "-m", "classicnets", "fly"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr
