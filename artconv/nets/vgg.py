"""VGG16/VGG19 feature stacks with their conventional layer names.

The modules are torchvision's own (`torchvision.models.vgg.cfgs`), so a torchvision or
caffe-converted state dict maps onto them index for index; only the names are added.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models import vgg as tv_vgg

from artconv.errors import ArtconvError

ARCHS = {"vgg16": "D", "vgg19": "E"}


def layer_names(arch: str) -> list[str]:
    """`conv1_1, relu1_1, ..., pool5` in network order (37 for VGG19, 31 for VGG16)."""
    names: list[str] = []
    block, index = 1, 1
    for v in tv_vgg.cfgs[_cfg_key(arch)]:
        if v == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


def build_features(arch: str) -> nn.Sequential:
    """torchvision's `vgg.features` for `arch`, children renamed, ReLUs made out-of-place.

    Out-of-place ReLUs matter: a hook capturing `convX_Y` would otherwise see its tensor
    overwritten by the in-place ReLU that follows.
    """
    features = tv_vgg.make_layers(tv_vgg.cfgs[_cfg_key(arch)], batch_norm=False)
    modules = []
    for name, module in zip(layer_names(arch), features, strict=True):
        if isinstance(module, nn.ReLU):
            module = nn.ReLU(inplace=False)
        modules.append((name, module))
    return nn.Sequential(OrderedDict(modules))


def torchvision_index(arch: str) -> dict[str, int]:
    """Name -> index in torchvision's `features` (the key prefix of a state dict)."""
    return {name: i for i, name in enumerate(layer_names(arch))}


def _cfg_key(arch: str) -> str:
    if arch not in ARCHS:
        raise ArtconvError(f"--arch {arch!r}: unknown architecture (choose {', '.join(ARCHS)})")
    return ARCHS[arch]
