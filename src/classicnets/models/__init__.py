"""The networks, written from the papers, and the registry that names them."""

from functools import partial

from .googlenet import GoogLeNet, GoogLeNetOutput, build_googlenet
from .registry import create_model, get_model_entry, list_models, register_model, run_or_refuse_input
from .vgg import VGG, build_vgg

_VGG_NAMES = {"A": "vgg11", "A-LRN": "vgg11_lrn", "B": "vgg13", "C": "vgg16_c", "D": "vgg16", "E": "vgg19"}
for _config, _name in _VGG_NAMES.items():
    register_model(_name, "vgg", f"VGG {_config}", partial(build_vgg, _config))
    if _config != "A-LRN":  # the paper has no batch-norm version of A-LRN
        register_model(f"{_name}_bn", "vgg", f"VGG {_config} + BN", partial(build_vgg, _config, batch_norm=True))

register_model("googlenet", "googlenet", "Inception v1, true 5x5, BN", partial(build_googlenet, "googlenet"))
register_model("googlenet_paper", "googlenet", "Inception v1 as printed (LRN, no BN)",
               partial(build_googlenet, "googlenet_paper"))
register_model("googlenet_tv", "googlenet", "torchvision's GoogLeNet layout",
               partial(build_googlenet, "googlenet_tv"))

__all__ = ["GoogLeNet", "GoogLeNetOutput", "VGG", "build_googlenet", "build_vgg",
           "create_model", "get_model_entry", "list_models", "register_model", "run_or_refuse_input"]
