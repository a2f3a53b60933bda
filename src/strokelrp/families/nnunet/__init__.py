"""nnU-Net v2 model folders: load (:func:`load_nnunet`), nnU-Net's preprocessing and its
inverse (:mod:`.preprocess`), whole-volume prediction (:func:`predict_case`)."""

from strokelrp.families.nnunet.model_folder import NnUNetModel, load_nnunet
from strokelrp.families.nnunet.predict import Prediction, nnunet_window, predict_case

__all__ = ["NnUNetModel", "Prediction", "load_nnunet", "nnunet_window", "predict_case"]
