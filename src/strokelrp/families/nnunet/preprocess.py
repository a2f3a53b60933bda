"""nnU-Net's own preprocessing of a case and its inverse for maps (needs ``nnunetv2``).

Forward (:func:`preprocess_case`): the configuration's preprocessor (``DefaultPreprocessor``
unless the plan names another) reads the channel files with the plan's reader, transposes
(``transpose_forward``), crops to the non-zero region, normalises per channel and resamples to
the plan's spacing: exactly what ``nnUNetv2_predict`` feeds its sliding window.

Inverse (:func:`to_native`), in the order nnU-Net exports a prediction: resample with the plan's
``resampling_fn_probabilities`` to the cropped shape, insert into the pre-crop shape (zeros
outside the crop box), transpose back. The result is in the reader's array order; for the
NIfTI readers nnU-Net ships (``SimpleITKIO``, ``NibabelIO``) that is the file's voxel order
reversed, so :func:`write_native` transposes it back and writes it with the first channel
file's affine and header: the map lies voxel for voxel on the input's native grid.
Resampling interpolates, so a map that was resampled no longer sums exactly to the explained
scalar; the model-grid map does (explanation.json reports both sums).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strokelrp.errors import StrokeLRPError
from strokelrp.families.nnunet.model_folder import NnUNetModel

NATIVE_READERS = ("SimpleITKIO", "NibabelIO")
"""nnU-Net readers whose arrays are the NIfTI voxel order reversed (no reorientation)."""


@dataclass
class PreprocessedCase:
    """One case as nnU-Net's network sees it.

    ``data`` (C, *S) float32 in the plan's transposed, cropped, resampled grid;
    ``properties``: nnU-Net's record of the case (spacing, crop box, shapes, reader metadata);
    ``files``: the channel files in ``dataset.json`` order; ``label`` (*S) int: the case's
    label file preprocessed with it (nnU-Net marks voxels outside the cropped non-zero region
    -1), None without one."""

    case_id: str
    files: list[Path]
    data: np.ndarray
    properties: dict[str, Any]
    label: np.ndarray | None = None


def _managers(model: NnUNetModel) -> tuple[Any, Any]:
    try:
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    except ImportError as err:
        raise StrokeLRPError(
            "nnU-Net's preprocessing needs nnunetv2: install strokelrp's nnU-Net extra (see the "
            "README's section 'Explain your nnU-Net')"
        ) from err
    plans = PlansManager(model.plans)
    return plans, plans.get_configuration(model.configuration)


def reader_name(model: NnUNetModel) -> str:
    return str(model.plans.get("image_reader_writer", "SimpleITKIO"))


def preprocess_case(
    model: NnUNetModel,
    files: Sequence[str | Path],
    case_id: str,
    label: str | Path | None = None,
) -> PreprocessedCase:
    """Run nnU-Net's preprocessor of ``model``'s configuration on one case's channel files
    (and its ``label`` file, resampled as nnU-Net resamples segmentations)."""
    paths = [Path(f) for f in files]
    if len(paths) != len(model.channel_names):
        raise StrokeLRPError(
            f"case {case_id}: {len(paths)} image file(s) given, the model takes "
            f"{len(model.channel_names)} ({', '.join(model.channel_names)}, in this order)"
        )
    for p in paths if label is None else [*paths, Path(label)]:
        if not p.is_file():
            raise StrokeLRPError(f"case {case_id}: image {p} does not exist")
    if reader_name(model) not in NATIVE_READERS:
        raise StrokeLRPError(
            f"{model.folder}: the plan reads images with {reader_name(model)}; strokelrp writes "
            f"maps back for {' and '.join(NATIVE_READERS)} only"
        )
    plans, config = _managers(model)
    if len(config.patch_size) != 3:
        raise StrokeLRPError(
            f"{model.folder}: configuration {model.configuration} is 2-D (nnU-Net predicts it "
            "slice by slice); strokelrp explains 3-D configurations"
        )
    preprocessor = config.preprocessor_class(verbose=False)
    try:
        data, seg, properties = preprocessor.run_case(
            [str(p) for p in paths],
            None if label is None else str(label),
            plans,
            config,
            model.dataset,
        )
    except (RuntimeError, ValueError, AssertionError, OSError) as err:
        raise StrokeLRPError(f"case {case_id}: nnU-Net could not read {paths[0]}: {err}") from err
    labels = None if label is None else np.asarray(seg[0], np.int16)
    return PreprocessedCase(
        case_id, paths, np.ascontiguousarray(data, np.float32), properties, labels
    )


def to_native(model: NnUNetModel, maps: np.ndarray, properties: dict[str, Any]) -> np.ndarray:
    """Maps (K, *S) on the network's grid -> (K, *native) in the reader's array order, as
    nnU-Net exports its logits: resample, un-crop (zeros outside the box), un-transpose."""
    import torch
    from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

    plans, config = _managers(model)
    forward = plans.transpose_forward
    spacing = [properties["spacing"][i] for i in forward]
    cropped = properties["shape_after_cropping_and_before_resampling"]
    current = (
        config.spacing if len(config.spacing) == len(cropped) else [spacing[0], *config.spacing]
    )
    resampled = config.resampling_fn_probabilities(
        torch.from_numpy(np.ascontiguousarray(maps, np.float32)), cropped, current, spacing
    )
    resampled = np.asarray(resampled.cpu() if isinstance(resampled, torch.Tensor) else resampled)
    full = np.zeros((maps.shape[0], *properties["shape_before_cropping"]), np.float32)
    full = insert_crop_into_image(
        full, resampled.astype(np.float32), properties["bbox_used_for_cropping"]
    )
    return np.ascontiguousarray(full.transpose([0, *[i + 1 for i in plans.transpose_backward]]))


def model_grid_mask(
    model: NnUNetModel, mask: np.ndarray, properties: dict[str, Any], shape: Sequence[int]
) -> np.ndarray:
    """A mask (*native) in the reader's array order -> the network's grid (``shape``) as nnU-Net
    brings a training segmentation there: transpose, crop to the case's box, resample with the
    plan's ``resampling_fn_seg``. Returns a bool array (*shape)."""
    from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice

    plans, config = _managers(model)
    forward = plans.transpose_forward
    seg = np.asarray(mask, np.int16)[None].transpose([0, *[i + 1 for i in forward]])
    seg = seg[(slice(None), *bounding_box_to_slice(properties["bbox_used_for_cropping"]))]
    spacing = [properties["spacing"][i] for i in forward]
    target = (
        config.spacing if len(config.spacing) == len(spacing) else [spacing[0], *config.spacing]
    )
    resampled = config.resampling_fn_seg(seg, list(shape), spacing, target)
    return np.asarray(resampled)[0] > 0


def native_labels(
    model: NnUNetModel, logits: Any, properties: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net's own export of stitched logits (K, *S), an array or tensor kept in its dtype
    (nnU-Net resamples its float16 logits as float16): (segmentation (*native) in the reader's
    array order, probabilities (K, *native) float32)."""
    import torch
    from nnunetv2.inference.export_prediction import (
        convert_predicted_logits_to_segmentation_with_correct_shape,
    )

    plans, config = _managers(model)
    seg, prob = convert_predicted_logits_to_segmentation_with_correct_shape(
        torch.as_tensor(logits),
        plans,
        config,
        plans.get_label_manager(model.dataset),
        properties,
        return_probabilities=True,
        num_threads_torch=max(1, torch.get_num_threads()),
    )
    return np.asarray(seg), np.asarray(prob, np.float32)


def reader_to_nifti(array: np.ndarray) -> np.ndarray:
    """The reader's (z, y, x) array order -> the NIfTI file's (x, y, z) voxel order (leading
    axes such as settings or channels kept in front)."""
    spatial = array.ndim - 3
    return np.ascontiguousarray(
        array.transpose([*range(spatial), *reversed(range(spatial, array.ndim))])
    )


def write_native(path: Path, array: np.ndarray, reference: Path, *, description: str = "") -> Path:
    """Write ``array`` ((*native) or (C, *native), reader order) as a NIfTI on the grid, affine
    and header of ``reference`` (the case's first channel file, read by the data layer's
    checked reader); C > 1 becomes the 4th axis."""
    from strokelrp.data.nifti_file import NiftiProblem, read_header

    try:
        ref = read_header(Path(reference), frames=True)
    except NiftiProblem as err:
        raise StrokeLRPError(f"{reference}: {err}") from err
    return write_on_grid(path, array, ref.affine, ref.header, description=description)


def write_on_grid(
    path: Path, array: np.ndarray, affine: np.ndarray, header: Any, *, description: str = ""
) -> Path:
    """Write ``array`` ((*native) or (C, *native), reader order) as a NIfTI with ``affine`` and
    a copy of ``header`` (its grid must be the array's; its qform/sform codes are kept, 1 when
    unset); float arrays as float32 without scaling, uint8 as uint8; C > 1 becomes the 4th
    axis."""
    import nibabel as nib

    from strokelrp.atomic import atomic_path

    vol = reader_to_nifti(array)
    if vol.ndim == 4:
        vol = np.moveaxis(vol, 0, -1)
    grid = tuple(int(n) for n in header.get_data_shape()[:3])
    if tuple(vol.shape[:3]) != grid:
        raise StrokeLRPError(f"{path.name}: the map's grid {tuple(vol.shape[:3])} is not {grid}")
    header = header.copy()
    dtype = np.uint8 if vol.dtype == np.uint8 else np.float32
    header.set_data_dtype(dtype)
    header["descrip"] = description[:79].encode()
    if dtype == np.float32:
        header.set_slope_inter(1.0, 0.0)
    image = nib.Nifti1Image(vol.astype(dtype), affine, header)
    image.set_sform(affine, int(header["sform_code"]) or 1)
    image.set_qform(affine, int(header["qform_code"]) or 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp.nii.gz") as tmp:
        nib.save(image, str(tmp))
    return path
