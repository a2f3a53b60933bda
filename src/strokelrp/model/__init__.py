"""The paper's 3-D U-Net and the explicit graph that describes it."""

from strokelrp.model.graph import INPUT, Concat, CropLike, Node, run_graph
from strokelrp.model.unet3d import UNet3D, count_parameters

__all__ = ["INPUT", "Concat", "CropLike", "Node", "UNet3D", "count_parameters", "run_graph"]
