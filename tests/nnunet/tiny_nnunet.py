"""Train a tiny nnU-Net v2 with nnU-Net's own code, as a user would (run as a script).

``python tiny_nnunet.py ROOT`` writes synthetic cases in nnU-Net's raw format under
``ROOT/nnUNet_raw/Dataset901_TinyStroke`` (two channels DWI and ADC, a bright/dark sphere as the
lesion, zero background to crop, 2 x 1 x 1 mm voxels in LAS order so that nnU-Net transposes),
runs nnU-Net's fingerprint extraction and planner, shrinks the 3d_fullres plan (features,
stages, a 16^3 patch) by editing ``nnUNetPlans.json`` as a user could, preprocesses, and trains
folds 0 and 1 of ``nnUNetTrainer`` for a few iterations on the CPU. It also writes ``imagesTs``:
two cases several patches large, one on another grid (resampled by nnU-Net) and orientation.
The nnU-Net environment variables must be set by the caller (see ``nnunet_env``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

DATASET_ID = 901
DATASET = "Dataset901_TinyStroke"
CONFIGURATION = "3d_fullres"
TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"
FOLDS = (0, 1)
TEST_CASES = ("tiny_100", "tiny_101")


def nnunet_env(root: Path) -> dict[str, str]:
    """The environment nnU-Net needs on a CPU: its three folders, no augmentation workers,
    no torch.compile, one preprocessing process."""
    return {
        "nnUNet_raw": str(root / "nnUNet_raw"),
        "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
        "nnUNet_results": str(root / "nnUNet_results"),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_compile": "f",
        "nnUNet_def_n_proc": "1",
        "OMP_NUM_THREADS": "1",
    }


def model_dir(root: Path) -> Path:
    """The results folder nnU-Net writes: ``DatasetXXX/<Trainer>__<Plans>__<configuration>``."""
    return root / "nnUNet_results" / DATASET / f"{TRAINER}__{PLANS}__{CONFIGURATION}"


def _case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    """(dwi, adc, label) in (x, y, z): a head-like box with a zero border and one sphere."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    head = np.zeros(shape, bool)
    head[2:-2, 3:-3, 3:-3] = True
    centre = np.array([rng.uniform(0.35, 0.65) * s for s in shape])
    scale = np.array([0.5, 1.0, 1.0])  # x voxels are 2 mm
    dist = np.sqrt(
        (((grid - centre[:, None, None, None]) * scale[:, None, None, None] * 2) ** 2).sum(0)
    )
    lesion = (dist < rng.uniform(5, 8)) & head
    dwi = np.where(head, 100 + 10 * rng.standard_normal(shape) + 80 * lesion, 0).astype(np.float32)
    adc = np.where(head, 800 + 60 * rng.standard_normal(shape) - 400 * lesion, 0).astype(np.float32)
    return dwi, adc, lesion.astype(np.uint8)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    nib.save(nib.Nifti1Image(array, affine), str(path))


def write_raw(root: Path, n_train: int = 6, seed: int = 0) -> Path:
    """nnU-Net raw data: ``imagesTr``, ``labelsTr``, ``imagesTs`` and ``dataset.json``."""
    rng = np.random.default_rng(seed)
    raw = root / "nnUNet_raw" / DATASET
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    las = np.diag([-2.0, 1.0, 1.0, 1.0])
    las[:3, 3] = [40.0, -20.0, -18.0]
    for i in range(n_train):
        dwi, adc, lab = _case(rng, (20, 40, 36))
        name = f"tiny_{i:03d}"
        _save(dwi, las, raw / "imagesTr" / f"{name}_0000.nii.gz")
        _save(adc, las, raw / "imagesTr" / f"{name}_0001.nii.gz")
        _save(lab, las, raw / "labelsTr" / f"{name}.nii.gz")
    # test cases: one on the training grid but larger, one on another grid (2 x 1 x 1.25 mm, RAS)
    ras = np.diag([2.0, 1.0, 1.25, 1.0])
    ras[:3, 3] = [-30.0, -25.0, -20.0]
    for name, shape, affine in (
        (TEST_CASES[0], (20, 30, 28), las),
        (TEST_CASES[1], (18, 28, 22), ras),
    ):
        dwi, adc, _ = _case(rng, shape)
        _save(dwi, affine, raw / "imagesTs" / f"{name}_0000.nii.gz")
        _save(adc, affine, raw / "imagesTs" / f"{name}_0001.nii.gz")
    dataset = {
        "channel_names": {"0": "DWI", "1": "ADC"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_train,
        "file_ending": ".nii.gz",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return raw


def shrink_plan(plans_file: Path) -> None:
    """A user's edit of the 3d_fullres plan: three stages of 4, 8, 16 features, 16^3 patches."""
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"][CONFIGURATION]
    config["patch_size"] = [16, 16, 16]
    config["batch_size"] = 2
    arch = config["architecture"]["arch_kwargs"]
    arch.update(
        n_stages=3,
        features_per_stage=[4, 8, 16],
        kernel_sizes=[[3, 3, 3]] * 3,
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        n_conv_per_stage=[1, 1, 1],
        n_conv_per_stage_decoder=[1, 1],
    )
    plans["configurations"] = {CONFIGURATION: config}
    plans_file.write_text(json.dumps(plans, indent=2))


def main(root: Path) -> None:
    import torch

    torch.set_num_threads(1)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.run.run_training import get_trainer_from_args

    if not (root / "nnUNet_raw" / DATASET / "dataset.json").is_file():
        write_raw(root)
    # the planner sets torch's threads to nnUNet_n_proc_DA: 0 (no augmentation workers) is
    # for training only
    os.environ["nnUNet_n_proc_DA"] = "1"  # noqa: SIM112 (nnU-Net's name)
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True, clean=False)
    plan_experiments([DATASET_ID])
    os.environ["nnUNet_n_proc_DA"] = "0"  # noqa: SIM112
    shrink_plan(Path(nnUNet_preprocessed) / DATASET / f"{PLANS}.json")
    preprocess([DATASET_ID], PLANS, configurations=(CONFIGURATION,), num_processes=(1,))
    for fold in FOLDS:
        trainer = get_trainer_from_args(
            str(DATASET_ID), CONFIGURATION, fold, TRAINER, PLANS, device=torch.device("cpu")
        )
        trainer.num_epochs = 2
        trainer.num_iterations_per_epoch = 3
        trainer.num_val_iterations_per_epoch = 1
        trainer.run_training()


if __name__ == "__main__":
    assert all(k in os.environ for k in ("nnUNet_raw", "nnUNet_results")), "set nnunet_env()"
    main(Path(sys.argv[1]))
