"""nnU-Net v2 model folders: load (:func:`load_nnunet`), the cases they explain from any data
layout (:mod:`.cases`), nnU-Net's preprocessing and its inverse (:mod:`.preprocess`),
whole-volume prediction (:func:`predict_case`)."""

from strokelrp.families import Family
from strokelrp.families.nnunet.cases import NnUNetCase, case_files, list_cases, load_nnunet_case
from strokelrp.families.nnunet.model_folder import NnUNetModel, load_nnunet
from strokelrp.families.nnunet.predict import Prediction, nnunet_window, predict_case

FAMILY = Family(name="nnunet", networks={}, loader=load_nnunet)
"""nnU-Net in the family registry: no ``--arch`` network (nnU-Net trains its own), a loader of
results folders."""

__all__ = [
    "FAMILY",
    "NnUNetCase",
    "NnUNetModel",
    "Prediction",
    "case_files",
    "list_cases",
    "load_nnunet",
    "load_nnunet_case",
    "nnunet_window",
    "predict_case",
]
