"""ResNet-50/101 from torchvision with frozen BatchNorm, returning layer1..layer4 (DETR / ReferFormer).

Frames are processed independently. Output level i (layer{i+1}): [N, 256 * 2**i, H/stride, W/stride],
strides 4, 8, 16, 32 (the last is 16 with ``dilation``, DETR's DC5).
"""
from typing import Dict

import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

RESNET_CONFIGS = {
    "resnet50": dict(dilation=False),
    "resnet101": dict(dilation=False),
}
RESNET_CHANNELS = [256, 512, 1024, 2048]
RESNET_RETURN_LAYERS: Dict[str, str] = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
TRAINABLE_STAGES = ("layer2", "layer3", "layer4")


def build_resnet_body(name: str, dilation: bool = False) -> IntermediateLayerGetter:
    """Randomly initialised torchvision ResNet (FrozenBatchNorm2d, eps 1e-5) wrapped to return layer1..4.

    Keys: ``conv1``, ``bn1``, ``layer1..4`` (no ``fc``). Pretrained ImageNet weights come from a local
    file through ``--backbone_pretrained`` (see ``convert.load_backbone_pretrained``).
    """
    if name not in RESNET_CONFIGS:
        raise ValueError(f"unknown ResNet {name!r}; valid: {sorted(RESNET_CONFIGS)}")
    resnet = getattr(torchvision.models, name)(
        weights=None, replace_stride_with_dilation=[False, False, dilation], norm_layer=FrozenBatchNorm2d)
    return IntermediateLayerGetter(resnet, return_layers=RESNET_RETURN_LAYERS)


def resnet_strides(dilation: bool) -> list:
    return [4, 8, 16, 16 if dilation else 32]


def freeze_resnet(body: nn.Module, train_backbone: bool) -> None:
    """As the original: only layer2-4 parameters train, and none when the backbone LR is 0."""
    for name, parameter in body.named_parameters():
        if not train_backbone or not name.startswith(TRAINABLE_STAGES):
            parameter.requires_grad_(False)
