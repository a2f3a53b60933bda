"""The viewer's data, `strokelrp view`'s server and `strokelrp.show`, without a browser (the
browser tests are in test_viewer_browser.py)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import nibabel as nib
import numpy as np
import pytest
from viewer_cases import oriented_case

import strokelrp
from strokelrp.errors import StrokeLRPError
from strokelrp.pipeline.view import explanation_folders, serve, url, viewer_case
from strokelrp.report.viewer import viewer_data


def _decode(text: str) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(text)))


def _page_data(page: str) -> dict:
    """The data a viewer page embeds."""
    return json.loads(page.split('type="application/json">')[1].split("</script>")[0])


def _to_ras_reference(affine: np.ndarray) -> list[tuple[int, bool]]:
    """Per world axis x, y, z: the voxel axis that moves most along it, and whether it moves
    backwards (explicit loops over the affine's columns)."""
    out = []
    for world in range(3):
        best = max(range(3), key=lambda axis: abs(affine[world, axis]))
        out.append((best, bool(affine[world, best] < 0)))
    return out


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory):
    from viewer_cases import model_explanation

    return model_explanation(tmp_path_factory.mktemp("viewer_model"))


@pytest.mark.parametrize("codes", ["LAS", "RAS"])
def test_the_page_data_holds_the_volumes_exactly(codes: str) -> None:
    case = oriented_case(codes)
    data = viewer_data(case)
    assert data["orientation"] == codes and data["shape"] == list(case.mr["ADC"].shape)
    for setting in ("for", "against"):
        img = _decode(data["volumes"][f"relevance/{setting}/ADC"])
        np.testing.assert_array_equal(
            img.get_fdata(dtype=np.float32), case.relevance[setting]["ADC"]
        )
        np.testing.assert_array_equal(img.affine, case.affine)
        peak = max(abs(float(v)) for v in case.relevance[setting]["ADC"].ravel())
        assert data["peaks"][setting]["ADC"] == peak
    np.testing.assert_array_equal(_decode(data["volumes"]["mr/ADC"]).get_fdata(), case.mr["ADC"])
    truth = _decode(data["volumes"]["truth"])
    assert truth.header.get_intent()[0] == "label"  # NiiVue outlines label volumes
    np.testing.assert_array_equal(np.asarray(truth.dataobj), case.truth.astype(np.uint8))
    assert [tuple(p) for p in data["to_ras"]] == _to_ras_reference(case.affine)
    # the focus (RAS voxel) maps back to a voxel of the lesion
    ijk = [0, 0, 0]
    for ras, (axis, flip) in enumerate(data["to_ras"]):
        ijk[axis] = (
            case.truth.shape[axis] - 1 - data["focus_ras"][ras] if flip else data["focus_ras"][ras]
        )
    assert case.truth[tuple(ijk)]


def test_to_ras_of_a_permuted_oblique_affine() -> None:
    case = oriented_case("RAS")
    affine = np.array([[0.0, 0.1, -2.0, 5], [1.9, 0.0, 0.2, 1], [0.1, -3.0, 0.0, 2], [0, 0, 0, 1]])
    case.affine = affine
    assert [tuple(p) for p in viewer_data(case)["to_ras"]] == _to_ras_reference(affine)


def test_volumes_on_another_grid_are_refused() -> None:
    case = oriented_case("RAS")
    case.mr["ADC"] = case.mr["ADC"][:-1]
    with pytest.raises(StrokeLRPError, match="case RAS: MR ADC has shape"):
        viewer_data(case)


def test_viewer_case_of_a_model_explanation(model_folder) -> None:
    folder, images, label = model_folder
    case = viewer_case(folder)
    assert case.channels == ["adc", "tmax"]
    assert list(case.relevance) == ["raw", "pass(0,0.4)"]
    raw = nib.load(folder / "relevance_raw.nii.gz").get_fdata(dtype=np.float32)
    for c, name in enumerate(case.channels):
        np.testing.assert_array_equal(case.relevance["raw"][name], raw[..., c])
        np.testing.assert_array_equal(
            case.mr[name], nib.load(images[c]).get_fdata(dtype=np.float32)
        )
    np.testing.assert_array_equal(case.truth, nib.load(label).get_fdata() > 0)
    pred = nib.load(folder / "prediction.nii.gz").get_fdata() > 0
    np.testing.assert_array_equal(case.prediction, pred)
    np.testing.assert_array_equal(case.affine, nib.load(images[0]).affine)
    assert not case.notes


def test_explanation_folders_finds_runs_folders_and_cases(model_folder, tmp_path) -> None:
    folder = model_folder[0]
    assert explanation_folders(folder) == [folder]
    assert explanation_folders(folder.parent) == [folder]
    assert explanation_folders(folder.parent, "explained") == [folder]
    with pytest.raises(StrokeLRPError, match="no explanation of case 9"):
        explanation_folders(folder.parent, "9")
    with pytest.raises(StrokeLRPError, match="run `strokelrp explain` first"):
        explanation_folders(tmp_path)


def _listening(port: int) -> list[str]:
    """The local addresses listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hexport = local.split(":")
                if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                    found.append(address)
    return found


def _refused(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) != 0


def test_serve_listens_on_loopback_only_and_serves_the_page(model_folder) -> None:
    folder = model_folder[0]
    server = serve([folder])
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1" and port > 0
        if sys.platform.startswith("linux"):
            assert _listening(port) == ["0100007F"]  # 127.0.0.1, nothing else
            assert _refused("127.0.0.2", port)  # another loopback address: nobody there
        page = urllib.request.urlopen(url(server, [folder]), timeout=10).read().decode()
        assert '<script id="strokelrp-data"' in page and 'src="/niivue.umd.js"' in page
        js = urllib.request.urlopen(f"http://127.0.0.1:{port}/niivue.umd.js", timeout=10).read()
        assert len(js) > 100_000
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/case/7.html", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert _refused("127.0.0.1", port)


def test_view_command_prints_the_url_and_stops_on_ctrl_c(model_folder) -> None:
    folder = model_folder[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "strokelrp", "view", str(folder.parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:") and line.endswith("/case/0.html"), line
        page = urllib.request.urlopen(line, timeout=20).read().decode()
        assert "strokelrp viewer: case" in page
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        port = int(line.split(":")[2].split("/")[0])
        assert _refused("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_show_gives_the_whole_page_in_an_iframe(model_folder) -> None:
    folder = model_folder[0]

    class Result:  # what the pipeline's explain returns: an object with its folder in .out
        out = folder

    for what in (Result(), folder, str(folder)):
        shown = strokelrp.show(what)
        frame = shown._repr_html_()
        assert frame.startswith("<iframe srcdoc=") and "niivue" in frame
        page = shown.page
        assert "<script src=" not in page  # NiiVue inlined: nothing to fetch
        data = _page_data(page)
        assert data["channels"] == ["adc", "tmax"]
    with pytest.raises(StrokeLRPError, match="nothing: not found"):
        strokelrp.show(folder / "nothing")


def test_show_of_model_scale_maps_over_their_input() -> None:
    import torch
    from monai.networks.nets import UNet
    from viewer_cases import MODEL_ARGS

    torch.manual_seed(1)
    model = UNet(**MODEL_ARGS).eval()
    x = torch.rand(1, 2, 8, 12, 16)  # (1, C, z, y, x)
    result = strokelrp.explain(model, x, filters=[None, strokelrp.PassFilter((0, 0.4))])
    data = _page_data(strokelrp.show(result, x, channels=["adc", "tmax"]).page)
    assert data["settings"] == ["raw", "pass(0,0.4)"] and data["orientation"] == "RAS"
    for k, setting in enumerate(data["settings"]):
        for c, name in enumerate(["adc", "tmax"]):
            volume = _decode(data["volumes"][f"relevance/{setting}/{name}"]).get_fdata()
            expected = result.relevance[k, c].numpy()
            for i, j, m in [(0, 0, 0), (15, 11, 7), (3, 5, 2)]:  # (x, y, z) = array[z, y, x]
                assert volume[i, j, m] == np.float32(expected[m, j, i])
    mr = _decode(data["volumes"]["mr/tmax"]).get_fdata()
    assert mr.shape == (16, 12, 8) and mr[3, 5, 2] == np.float32(x[0, 1, 2, 5, 3])
    with pytest.raises(StrokeLRPError, match="do not match"):
        strokelrp.show(result, x[:, :1])


def test_report_frames_each_case_viewer_or_says_why_not(model_folder, tmp_path, monkeypatch):
    from strokelrp.pipeline.report import build_report

    run = tmp_path / "run"
    (run / "explanations").mkdir(parents=True)
    (run / "config.toml").write_text('series = "A"\n')
    (run / "explanations" / "1").symlink_to(model_folder[0], target_is_directory=True)
    text = build_report([run]).read_text(encoding="utf-8")
    assert '<iframe src="viewer/run-1.html"' in text and "<script" not in text
    page = (run / "viewer" / "run-1.html").read_text(encoding="utf-8")
    assert '<script src="niivue.umd.js">' in page
    for name in ("niivue.umd.js", "NIIVUE_LICENSE", "THIRD_PARTY_LICENSES"):
        assert (run / "viewer" / name).stat().st_size > 1000
    assert _page_data(page)["channels"] == ["adc", "tmax"]

    monkeypatch.setattr("strokelrp.report.viewer.ASSETS", tmp_path / "not-built")
    text = build_report([run], tmp_path / "again.html").read_text(encoding="utf-8")
    assert "<iframe" not in text and "no interactive viewer:" in text and "make viewer" in text


def test_a_broken_explanation_folder_gives_one_clear_error(model_folder, tmp_path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(model_folder[0], folder)
    (folder / "relevance_raw.nii.gz").write_bytes(b"\x1f\x8b not a NIfTI")
    with pytest.raises(
        StrokeLRPError, match=r"relevance file .*relevance_raw.nii.gz: cannot be read"
    ):
        viewer_case(folder)
    summary = json.loads((folder / "explanation.json").read_text())
    summary["settings"] = [{"label": "raw"}]
    (folder / "explanation.json").write_text(json.dumps(summary))
    with pytest.raises(StrokeLRPError, match="do not list the relevance files"):
        viewer_case(folder)
