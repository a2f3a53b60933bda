"""The paper's 3-D U-Net (Tjoa et al. 2020, annex figure 1), width configurable.

Encoder: four blocks of two (Conv3d k3 p1 -> BatchNorm3d -> LeakyReLU(0.2)), channels
6->w->2w, 2w->2w->4w, 4w->4w->8w, 8w->8w->16w (w = 32 in the paper), MaxPool3d(2,
ceil_mode=True) between them, so 19 slices become 10, 5, 3. Decoder: ConvTranspose3d(C, C,
k2, s2, no bias), crop to the skip's shape, concatenate (skip, up), two conv layers. Head: a
1x1x1 Conv3d to ``num_classes`` logits (the authors' extra BatchNorm + ReLU after the head is
left out: cross-entropy wants unbounded logits). The convolutions are
:class:`strokelrp.model.conv.Conv3d`: ``nn.Conv3d`` with a faster CPU path for batch 1.
``forward`` is a plain module forward: the relevance engine records it like any network's.
"""

from __future__ import annotations

import torch
from torch import nn

from strokelrp.model.conv import Conv3d

LEAKY_SLOPE = 0.2


class ConvBlock(nn.Module):
    """Two (Conv3d k3 p1 -> BatchNorm3d -> LeakyReLU(0.2)): (B, cin, D, H, W) -> (B, cout, ...)."""

    def __init__(self, cin: int, cmid: int, cout: int) -> None:
        super().__init__()
        self.conv1 = Conv3d(cin, cmid, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm3d(cmid)
        self.act1 = nn.LeakyReLU(LEAKY_SLOPE)
        self.conv2 = Conv3d(cmid, cout, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm3d(cout)
        self.act2 = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(x)))


class UNet3D(nn.Module):
    """(B, in_channels, D, H, W) -> logits (B, num_classes, D, H, W), any D, H, W >= 1.

    Decoder level ``l``: ``up{l}`` (transposed convolution), cropped to the skip's shape,
    concatenated as (skip, up) and passed through ``dec{l}``.
    """

    def __init__(self, in_channels: int = 6, num_classes: int = 2, width: int = 32) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.in_channels, self.num_classes, self.width = in_channels, num_classes, width
        w = width
        self.enc1 = ConvBlock(in_channels, w, 2 * w)
        self.pool1 = nn.MaxPool3d(2, ceil_mode=True)
        self.enc2 = ConvBlock(2 * w, 2 * w, 4 * w)
        self.pool2 = nn.MaxPool3d(2, ceil_mode=True)
        self.enc3 = ConvBlock(4 * w, 4 * w, 8 * w)
        self.pool3 = nn.MaxPool3d(2, ceil_mode=True)
        self.enc4 = ConvBlock(8 * w, 8 * w, 16 * w)
        self.up3 = nn.ConvTranspose3d(16 * w, 16 * w, kernel_size=2, stride=2, bias=False)
        self.dec3 = ConvBlock(8 * w + 16 * w, 8 * w, 8 * w)
        self.up2 = nn.ConvTranspose3d(8 * w, 8 * w, kernel_size=2, stride=2, bias=False)
        self.dec2 = ConvBlock(4 * w + 8 * w, 4 * w, 4 * w)
        self.up1 = nn.ConvTranspose3d(4 * w, 4 * w, kernel_size=2, stride=2, bias=False)
        self.dec1 = ConvBlock(2 * w + 4 * w, 2 * w, 2 * w)
        self.head = Conv3d(2 * w, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet3D expects (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}"
            )
        skips = []
        h = x
        for level in (1, 2, 3):
            h = getattr(self, f"enc{level}")(h)
            skips.append(h)
            h = getattr(self, f"pool{level}")(h)
        h = self.enc4(h)
        for level in (3, 2, 1):
            skip = skips[level - 1]
            up = getattr(self, f"up{level}")(h)
            d, hh, w = skip.shape[2:]  # 2 * ceil(n / 2) may exceed n by one: crop
            h = getattr(self, f"dec{level}")(torch.cat([skip, up[..., :d, :hh, :w]], dim=1))
        return self.head(h)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
