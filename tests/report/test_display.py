"""Display transform: radiological axial panels from any axis-aligned affine, and figure 1."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from strokelrp.report.display import display_for
from strokelrp.report.figure1 import plot_figure1

SHAPE = (4, 5, 6)  # (D, H, W) = NIfTI (z, y, x)


def _world(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """RAS+ mm of every voxel, (3, D, H, W), computed directly from the affine."""
    d, h, w = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    voxels = np.stack([w, h, d, np.ones_like(d)]).reshape(4, -1)  # NIfTI order (x, y, z, 1)
    return (affine @ voxels)[:3].reshape(3, *shape)


def _axis_aligned_affines() -> list[np.ndarray]:
    """Every permutation of the voxel axes with every sign: 48 orientations."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            a = np.zeros((4, 4))
            for voxel_axis, world_axis in enumerate(perm):
                a[world_axis, voxel_axis] = signs[voxel_axis] * (1.0 + voxel_axis)
            a[:3, 3] = [10.0, -20.0, 5.0]
            a[3, 3] = 1.0
            out.append(a)
    return out


@pytest.mark.parametrize("affine", _axis_aligned_affines(), ids=lambda a: str(a.diagonal()))
def test_display_is_anterior_up_and_patient_right_on_the_left(affine: np.ndarray) -> None:
    disp = display_for(affine, SHAPE)
    world = _world(affine, SHAPE)
    x, y, z = (disp.volume(world[k]) for k in range(3))
    # rows: anterior (large y) at the top, falling downwards; columns: the patient's right
    # (large x) on the left, falling to the right; slices: inferior to superior
    assert np.all(np.diff(y, axis=1) < 0)
    assert np.all(np.diff(x, axis=2) < 0)
    assert np.all(np.diff(z, axis=0) > 0)
    for values, other_axes in ((y, (0, 2)), (x, (0, 1)), (z, (1, 2))):
        assert all(np.all(np.diff(values, axis=a) == 0) for a in other_axes)


def test_a_known_anterior_right_voxel_lands_top_left() -> None:
    # The synthetic cases' layout: diag(-sx, -sy, sz), voxel x grows to the patient's left and
    # voxel y to posterior, so voxel (x=0, y=0) is the most right and anterior.
    affine = np.diag([-1.2, -1.2, 6.5, 1.0])
    marker = np.zeros(SHAPE)
    marker[2, 0, 0] = 1.0  # array (z, y, x)
    shown = display_for(affine, SHAPE).volume(marker)
    assert np.argwhere(shown).tolist() == [[2, 0, 0]]
    # under RAS voxel order the same anatomy sits at the opposite corners of the array
    ras = np.diag([1.2, 1.2, 6.5, 1.0])
    marker = np.zeros(SHAPE)
    marker[2, SHAPE[1] - 1, SHAPE[2] - 1] = 1.0
    assert np.argwhere(display_for(ras, SHAPE).volume(marker)).tolist() == [[2, 0, 0]]


def test_slice_indices_and_spacing_follow_the_axes() -> None:
    flipped = np.diag([1.0, 2.0, -3.0, 1.0])  # slices run superior to inferior
    disp = display_for(flipped, SHAPE)
    assert [disp.slice_to_display(z) for z in range(4)] == [3, 2, 1, 0]
    assert disp.slice_to_array(disp.slice_to_display(1)) == 1
    assert disp.spacing((1.0, 2.0, 3.0)) == (3.0, 2.0, 1.0)
    swapped = np.array([[0, 2.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    disp = display_for(swapped, SHAPE)  # voxel x runs anterior, voxel y runs right
    assert disp.spacing((1.0, 2.0, 3.0)) == (3.0, 1.0, 2.0)
    assert disp.volume(np.zeros(SHAPE)).shape == (4, 6, 5)
    sagittal = np.array([[0, 0, 3.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="not inferior-superior"):
        display_for(sagittal, SHAPE).slice_to_display(0)


def test_channels_are_transformed_alike_and_shapes_are_checked() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(3, *SHAPE))
    disp = display_for(np.diag([-1.0, 1.0, 1.0, 1.0]), SHAPE)
    both = disp.volume(vol)
    for c in range(3):
        np.testing.assert_array_equal(both[c], disp.volume(vol[c]))
    np.testing.assert_array_equal(both[0], vol[0][:, ::-1, :])  # only rows flip here
    with pytest.raises(ValueError, match="grid"):
        disp.volume(np.zeros((4, 5, 7)))


def test_figure1_in_any_orientation(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = rng.random((6, 5, 8, 10)).astype(np.float32)
    image[1:, :, :2, :] = 0.0  # a "brain" that does not fill the grid: an outline to draw
    truth = np.zeros((5, 8, 10), np.uint8)
    truth[2, 3:6, 3:7] = 1
    maps = [("raw", rng.normal(size=image.shape))]
    swapped = np.array([[0, 1.0, 0, 0], [-1.0, 0, 0, 0], [0, 0, 6.0, 0], [0, 0, 0, 1]])
    for affine in (np.diag([-1.0, -1.0, 6.0, 1.0]), swapped):
        out = plot_figure1(
            tmp_path / "f.png", maps, image, truth, label=truth, affine=affine, dice=0.9
        )
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sagittal = np.array([[0, 0, 3.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="not inferior-superior"):
        plot_figure1(tmp_path / "g.png", maps, image, truth, affine=sagittal)
