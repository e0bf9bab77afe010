"""The networks, written from the papers, and the registry that names them.

Each registration below is all the rest of the package knows about a network besides
what the network itself answers (:mod:`.protocol`): its family, its paper and year, its
native and smallest input sizes, and torchvision's weights where torchvision has them.
"""

from functools import partial

from . import alexnet as _alexnet
from . import googlenet as _googlenet
from . import inception3 as _inception3
from . import lenet as _lenet
from . import resnet as _resnet
from . import vgg as _vgg
from .googlenet import GoogLeNet, GoogLeNetOutput, build_googlenet
from .inception3 import InceptionV3Output
from .porting import GOOGLENET_TV_NAMES
from .registry import (ModelEntry, create_model, get_model_entry, list_models, register_model, registered_entries,
                       run_or_refuse_input, unregister_model)
from .vgg import VGG, build_vgg

# ----------------------------------------------------------------------------- VGG (2014)

_VGG = dict(paper=_vgg.PAPER, year=_vgg.YEAR, native_input_size=_vgg.NATIVE_INPUT_SIZE,
            min_input_size=_vgg.MIN_INPUT_SIZE)
_VGG_NAMES = {"A": "vgg11", "A-LRN": "vgg11_lrn", "B": "vgg13", "C": "vgg16_c", "D": "vgg16", "E": "vgg19"}
_VGG_WEIGHTS = {"vgg11": "VGG11", "vgg13": "VGG13", "vgg16": "VGG16", "vgg19": "VGG19"}  # torchvision has no A-LRN, C
for _config, _name in _VGG_NAMES.items():
    _weights = _VGG_WEIGHTS.get(_name)
    register_model(_name, "vgg", f"VGG {_config}", partial(build_vgg, _config),
                   torchvision_weights=f"{_weights}_Weights.IMAGENET1K_V1" if _weights else None, **_VGG)
for _config, _name in _VGG_NAMES.items():  # the paper has no batch-norm version of A-LRN
    _weights = _VGG_WEIGHTS.get(_name)
    if _config != "A-LRN":
        register_model(f"{_name}_bn", "vgg", f"VGG {_config} + BN", partial(build_vgg, _config, batch_norm=True),
                       torchvision_weights=f"{_weights}_BN_Weights.IMAGENET1K_V1" if _weights else None, **_VGG)

# ----------------------------------------------------------------------------- GoogLeNet (2014)

_GOOGLENET = dict(paper=_googlenet.PAPER, year=_googlenet.YEAR, native_input_size=_googlenet.NATIVE_INPUT_SIZE)
register_model("googlenet", "googlenet", "Inception v1, true 5x5, BN", partial(build_googlenet, "googlenet"),
               min_input_size=_googlenet.MIN_INPUT_SIZE["googlenet"], **_GOOGLENET,
               torchvision_refusal="googlenet uses true 5x5 kernels and cannot take torchvision's GoogLeNet "
                                   "weights, whose '5x5' branch is a 3x3 convolution; use googlenet_tv, which has "
                                   "torchvision's layout.")
register_model("googlenet_paper", "googlenet", "Inception v1 as printed (LRN, no BN)",
               partial(build_googlenet, "googlenet_paper"),
               min_input_size=_googlenet.MIN_INPUT_SIZE["googlenet_paper"], **_GOOGLENET)
register_model("googlenet_tv", "googlenet", "torchvision's GoogLeNet layout", partial(build_googlenet, "googlenet_tv"),
               min_input_size=_googlenet.MIN_INPUT_SIZE["googlenet_tv"], **_GOOGLENET,
               torchvision_weights="GoogLeNet_Weights.IMAGENET1K_V1", torchvision_names=GOOGLENET_TV_NAMES,
               torchvision_transform_input=True)

# ----------------------------------------------------------------------------- LeNet-5 (1998)


def _sizes(module, name: str) -> dict:
    return dict(paper=module.PAPER, year=module.YEAR, native_input_size=module.NATIVE_INPUT_SIZE[name],
                min_input_size=module.MIN_INPUT_SIZE[name])


register_model("lenet5_paper", "lenet", "LeNet-5 as printed (Table I C3, RBF output)", _lenet.lenet5_paper,
               max_input_size=_lenet.NATIVE_INPUT_SIZE["lenet5_paper"], **_sizes(_lenet, "lenet5_paper"))
register_model("lenet5", "lenet", "LeNet-5, modern form (ReLU, max-pool)", _lenet.lenet5, **_sizes(_lenet, "lenet5"))

# ----------------------------------------------------------------------------- AlexNet (2012)

register_model("alexnet_paper", "alexnet", "AlexNet as printed (two towers, LRN)", _alexnet.alexnet_paper,
               **_sizes(_alexnet, "alexnet_paper"),
               torchvision_refusal="alexnet_paper has the paper's two-tower layout (96 filters in conv1, grouped "
                                   "convolutions), which torchvision's AlexNet weights do not fit; use alexnet, "
                                   "which has torchvision's layout.")
register_model("alexnet", "alexnet", "torchvision's one-tower AlexNet", _alexnet.alexnet, **_sizes(_alexnet, "alexnet"),
               torchvision_weights="AlexNet_Weights.IMAGENET1K_V1")

# ----------------------------------------------------------------------------- ResNet (2015)

# torchvision's V1 weights everywhere: they are the paper-era recipe (about 76.1% top-1
# for ResNet-50); its V2 weights for 50/101/152 come from a 2021 training recipe.
_RESNET_CONFIGS = {
    "resnet18": ("ResNet-18", "ResNet18"), "resnet34": ("ResNet-34", "ResNet34"),
    "resnet50": ("ResNet-50, stride on the 3x3 (v1.5)", "ResNet50"),
    "resnet101": ("ResNet-101, stride on the 3x3 (v1.5)", "ResNet101"),
    "resnet152": ("ResNet-152, stride on the 3x3 (v1.5)", "ResNet152"),
    "resnet50_paper": ("ResNet-50 as printed (stride on the 1x1)", None),
    "resnet101_paper": ("ResNet-101 as printed (stride on the 1x1)", None),
    "resnet152_paper": ("ResNet-152 as printed (stride on the 1x1)", None),
    **{name: (f"CIFAR ResNet-{name[6:]} (6n+2, option A)", None)
       for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")},
}
for _name, (_config, _weights) in _RESNET_CONFIGS.items():
    _refusal = None
    if _name.endswith("_paper"):
        _base = _name[:-len("_paper")]
        _refusal = (f"{_name} strides on the first 1x1 convolution of a stage as the paper does, and torchvision's "
                    f"weights were trained with the stride on the 3x3 convolution; use {_base}, which has "
                    f"torchvision's layout.")
    register_model(_name, "resnet", _config, getattr(_resnet, _name), **_sizes(_resnet, _name),
                   torchvision_weights=f"{_weights}_Weights.IMAGENET1K_V1" if _weights else None,
                   torchvision_refusal=_refusal)

# ----------------------------------------------------------------------------- Inception v3 (2015)

register_model("inception_v3", "inception_v3", "Inception v3, released model", _inception3.inception_v3,
               **_sizes(_inception3, "inception_v3"), torchvision_weights="Inception_V3_Weights.IMAGENET1K_V1",
               torchvision_transform_input=True)

__all__ = ["GoogLeNet", "GoogLeNetOutput", "InceptionV3Output", "ModelEntry", "VGG", "build_googlenet", "build_vgg",
           "create_model", "get_model_entry", "list_models", "register_model", "registered_entries",
           "run_or_refuse_input", "unregister_model"]
