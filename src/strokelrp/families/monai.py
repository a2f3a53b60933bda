"""The MONAI family: three MONAI U-Nets as ``--arch monai-basicunet``, ``monai-unet`` and
``monai-dynunet`` (see :mod:`strokelrp.families` for the interface).

All map (B, in_channels, D, H, W) -> logits (B, num_classes, D, H, W) and are parameterised by
``width`` (channels of the first level). ``UNet`` and ``DynUNet`` downsample in-plane only
(strides (1, 2, 2)): the series keep their 19 slices, which they could not halve three
times; H and W must be divisible by 8 for them (the series A-X are). ``BasicUNet`` pools by 2
along every axis four times (MONAI's choice) and pads after up-sampling: any size >= 16 per
axis. MONAI is imported when a network is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strokelrp.families import Family

if TYPE_CHECKING:
    from torch import nn

_PLANE = (1, 2, 2)


def _basicunet(cin: int, classes: int, w: int) -> nn.Module:
    from monai.networks.nets import BasicUNet

    return BasicUNet(3, cin, classes, features=(w, w, 2 * w, 4 * w, 8 * w, w), norm="batch")


def _unet(cin: int, classes: int, w: int) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        3, cin, classes, channels=(w, 2 * w, 4 * w, 8 * w), strides=(_PLANE,) * 3,
        num_res_units=2, norm="batch",
    )  # fmt: skip


def _dynunet(cin: int, classes: int, w: int) -> nn.Module:
    from monai.networks.nets import DynUNet

    return DynUNet(
        3, cin, classes, kernel_size=[3] * 4, strides=[1, _PLANE, _PLANE, _PLANE],
        upsample_kernel_size=[_PLANE] * 3, filters=[w, 2 * w, 4 * w, 8 * w],
        norm_name="batch", res_block=True,
    )  # fmt: skip


FAMILY = Family(
    "monai",
    {"monai-basicunet": _basicunet, "monai-unet": _unet, "monai-dynunet": _dynunet},
)
