"""The networks ``strokelrp train --arch`` can train: ours and three MONAI U-Nets.

One factory per name, all (B, in_channels, D, H, W) -> logits (B, num_classes, D, H, W) and
parameterised by ``width`` (channels of the first level). The MONAI networks downsample
in-plane only (strides (1, 2, 2)): the series keep their 19 slices, which the MONAI ``UNet`` and
``DynUNet`` could not halve three times; H and W must be divisible by 8 for them (the
series A-X are). ``BasicUNet`` pools by 2 along every axis four times (MONAI's choice) and
pads after up-sampling: any size >= 16 per axis.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from strokelrp.model.unet3d import UNet3D

ARCHS: tuple[str, ...] = ("unet3d", "monai-basicunet", "monai-unet", "monai-dynunet")
"""Architecture names, as ``--arch`` offers them and ``config.toml`` records them."""

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


_FACTORIES: dict[str, Callable[[int, int, int], nn.Module]] = {
    "unet3d": lambda cin, classes, w: UNet3D(in_channels=cin, num_classes=classes, width=w),
    "monai-basicunet": _basicunet,
    "monai-unet": _unet,
    "monai-dynunet": _dynunet,
}


def build_network(arch: str, in_channels: int, num_classes: int, width: int) -> nn.Module:
    """A fresh network of architecture ``arch`` (one of :data:`ARCHS`)."""
    if arch not in _FACTORIES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    return _FACTORIES[arch](in_channels, num_classes, width)
