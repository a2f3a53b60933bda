"""The paper's 3-D U-Net."""

from strokelrp.model.unet3d import UNet3D, count_parameters

__all__ = ["UNet3D", "count_parameters"]
