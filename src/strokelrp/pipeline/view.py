"""``strokelrp view`` and :func:`strokelrp.show`: the interactive viewer of an explanation
folder (what ``strokelrp explain`` wrote, with or without ``--model``).

:func:`viewer_case` reads one folder (``explanation.json``, its relevance files, the
prediction, and the inputs and ground truth it names) into a
:class:`~strokelrp.report.viewer.ViewerCase`; :func:`serve` serves the pages on 127.0.0.1;
:func:`show` displays one in Jupyter.
"""

from __future__ import annotations

import html
import http.server
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import nibabel as nib
import numpy as np

from strokelrp import run_files
from strokelrp.errors import StrokeLRPError
from strokelrp.report.viewer import NIIVUE_JS, ViewerCase, niivue_path, relevance_channels
from strokelrp.report.viewer import viewer_page as _page
from strokelrp.run_files import RunDir, read_explanation


def _load(path: Path, what: str) -> Any:
    """The NIfTI image at ``path``; one error naming it when it cannot be read."""
    try:
        return nib.load(str(path))
    except Exception as err:  # nibabel raises several kinds for a bad file
        raise StrokeLRPError(f"{what} {path}: cannot be read as NIfTI ({err})") from err


def _volume(path: Path, what: str) -> np.ndarray:
    try:
        return np.asarray(_load(path, what).get_fdata(dtype=np.float32))
    except (OSError, ValueError) as err:  # a truncated or corrupt data block
        raise StrokeLRPError(f"{what} {path}: cannot be read as NIfTI ({err})") from err


def _inputs(summary: dict[str, Any], folder: Path) -> tuple[dict[str, Path], Path | None]:
    """The input files (channel -> path) and ground truth the summary names (run explain:
    the provenance record's data files; ``--model``: ``images`` and ``label``)."""
    data = (summary.get("provenance") or {}).get("data") or {}
    record = (data.get("cases") or {}).get(str(summary.get("case")))
    if record:
        root = Path(data.get("root", folder))
        files = {k: root / v for k, v in record.get("files", {}).items()}
        truths = [files.pop(key) for key in _label_keys() if key in files]
        return files, truths[0] if truths else None
    images = [Path(p) for p in summary.get("images") or []]
    label = summary.get("label")
    return {p.name: p for p in images}, Path(label) if label else None


def _label_keys() -> tuple[str, ...]:
    """The keys of the ground truth among a case's files: ``OT`` in ISLES 2017, ``label`` in
    the other layouts (:class:`strokelrp.data.layouts.base.ReadSpec`)."""
    from strokelrp.data.layouts.base import ReadSpec
    from strokelrp.data.layouts.isles2017 import LABEL_TOKEN

    return (LABEL_TOKEN, ReadSpec.label)


def viewer_case(folder: str | Path) -> ViewerCase:
    """The viewer's volumes of one explanation folder; an input or ground truth that is
    missing or on another grid is left out with a note (the relevance is then shown alone)."""
    folder = Path(folder)
    summary = read_explanation(folder / run_files.EXPLANATION)
    case_id = str(summary.get("case", folder.name))
    settings = summary.get("settings") or []
    if not settings or not all(
        isinstance(s, dict) and {"label", "file"} <= set(s) for s in settings
    ):
        raise StrokeLRPError(
            f"{folder / run_files.EXPLANATION}: its settings do not list the relevance files "
            "(label and file per setting)"
        )
    first = _load(folder / settings[0]["file"], "relevance file")
    affine = first.affine
    volumes = first.shape[3] if len(first.shape) == 4 else 1
    files, truth_path = _inputs(summary, folder)
    names = summary.get("modalities") or summary.get("volumes")  # a run's case / --model
    if not names or len(names) != volumes:
        names = list(files) if len(files) == volumes else [f"channel {k}" for k in range(volumes)]
    if set(files) != set(names) and len(files) == len(names):  # --model: the images in order
        files = dict(zip(names, files.values(), strict=True))
    relevance = {}
    for setting in settings:
        path = folder / setting["file"]
        relevance[setting["label"]] = dict(
            relevance_channels(_volume(path, "relevance file"), names, str(path))
        )
    grid = first.shape[:3]
    notes: list[str] = []

    def on_grid(path: Path | None, what: str) -> np.ndarray | None:
        if path is None:
            return None
        if not path.is_file():
            notes.append(f"{what} {path} not found: not shown")
            return None
        volume = _volume(path, what)
        if volume.shape[:3] != grid:
            notes.append(f"{what} {path} is on another grid {volume.shape}: not shown")
            return None
        return volume

    mr: dict[str, np.ndarray] = {}
    for k, (name, path) in enumerate(files.items()):
        volume = on_grid(path, f"input {name}")
        if volume is None:
            continue
        if volume.ndim == 4:  # one 4-D input holding every channel
            mr.update({c: volume[..., j] for j, c in enumerate(names) if j < volume.shape[3]})
        elif name in names:  # a run's case: files by modality
            mr[name] = volume
        elif len(files) == len(names):  # --model: one --image per channel, in order
            mr[names[k]] = volume
    prediction = on_grid(folder / summary.get("prediction", "prediction.nii.gz"), "prediction")
    truth = on_grid(truth_path, "ground truth")
    if not mr:
        notes.append("no input volume found: the relevance is shown alone")
    return ViewerCase(
        case_id=case_id,
        channels=list(names),
        affine=affine,
        relevance=relevance,
        mr=mr,
        truth=None if truth is None else truth > 0,
        prediction=None if prediction is None else prediction > 0,
        start_channel=summary.get("figure_modality"),
        notes=notes,
    )


def viewer_page(folder: str | Path, niivue_src: str | None = None) -> str:
    """The viewer page of one explanation folder (NiiVue inlined when ``niivue_src`` is None)."""
    return _page(viewer_case(folder), niivue_src)


def explanation_folders(path: str | Path, case: str | None = None) -> list[Path]:
    """The explanation folders under ``path``: a run (its ``explanations/*``), a folder of
    case folders, or one explanation folder; ``case`` picks one by id."""
    path = Path(path)
    if not path.exists():
        raise StrokeLRPError(f"{path}: not found")
    if (path / run_files.EXPLANATION).is_file():
        found = [path]
    elif RunDir(path).is_run():
        found = [p.parent for p in RunDir(path).explanation_summaries()]
    else:
        found = sorted(p.parent for p in path.glob(f"*/{run_files.EXPLANATION}"))
    if case is not None:
        wanted = case.removeprefix("training_")
        found = [p for p in found if p.name.removeprefix("training_") == wanted]
        if not found:
            raise StrokeLRPError(f"{path}: no explanation of case {case}")
    if not found:
        raise StrokeLRPError(
            f"{path}: no {run_files.EXPLANATION} here or in its explanations/ or case folders "
            "(run `strokelrp explain` first)"
        )
    return found


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET / (the list of cases), /case/<n>.html (a viewer page), /niivue.umd.js; 404 else."""

    folders: Sequence[Path] = ()

    def do_GET(self) -> None:
        path = unquote(self.path.split("?")[0])
        try:
            if path == "/":
                links = "".join(
                    f'<li><a href="/case/{k}.html">{html.escape(str(f))}</a></li>'
                    for k, f in enumerate(self.folders)
                )
                self._send(
                    f"<!DOCTYPE html><title>strokelrp view</title><ul>{links}</ul>", "text/html"
                )
            elif path == f"/{NIIVUE_JS}":
                self._send(niivue_path().read_bytes(), "text/javascript")
            elif path.startswith("/case/") and path.endswith(".html"):
                k = int(path[len("/case/") : -len(".html")])
                self._send(viewer_page(self.folders[k], f"/{quote(NIIVUE_JS)}"), "text/html")
            elif path == "/favicon.ico":
                self.send_response(204)  # none: say so without an error in the console
                self.end_headers()
            else:
                self.send_error(404)
        except (ValueError, IndexError):
            self.send_error(404)
        except StrokeLRPError as err:
            self.send_error(500, explain=str(err))

    def _send(self, body: str | bytes, kind: str) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(200)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(folders: Sequence[Path], port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server on 127.0.0.1 (``port`` 0: a free one) for ``folders``, already serving in a
    daemon thread; its URL is :func:`url`; stop it with ``shutdown()`` and ``server_close()``."""
    niivue_path()  # fail before listening when the JavaScript was not built
    handler = type("Handler", (_Handler,), {"folders": list(folders)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server: http.server.ThreadingHTTPServer, folders: Sequence[Path]) -> str:
    """The page to open: the case's viewer for one folder, the list of cases otherwise."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/" + ("case/0.html" if len(folders) == 1 else "")


class Shown:
    """The viewer of one case for Jupyter: an iframe holding the whole page (``srcdoc``)."""

    def __init__(self, page: str, height: int = 760) -> None:
        self.page = page
        self.height = height

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.page, quote=True)}" style="width:100%;'
            f'height:{self.height}px;border:0"></iframe>'
        )


def arrays_case(
    relevance: Any,
    x: Any,
    *,
    labels: Sequence[str] | None = None,
    output: Any = None,
    label: Any = None,
    channels: Sequence[str] | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> ViewerCase:
    """A viewer case of model-scale arrays in the package's RAS layout: ``relevance``
    (K, C, D, H, W) or (C, D, H, W), one map per name of ``labels``; ``x`` the input
    (1, C, D, H, W) or (C, D, H, W); ``output`` logits (1, classes, D, H, W) whose arg-max
    (or > 0 for one class) is the prediction; ``label`` a (D, H, W) mask; ``spacing`` the voxel
    size (x, y, z) in mm. The (z, y, x) arrays become (x, y, z) volumes with a RAS affine."""

    def plain(value: Any) -> np.ndarray:
        value = value.detach().cpu().float().numpy() if hasattr(value, "detach") else value
        return np.asarray(value)

    maps = plain(relevance)
    maps = maps[None] if maps.ndim == 4 else maps
    image = plain(x)
    image = image[0] if image.ndim == 5 else image
    if maps.ndim != 5 or image.ndim != 4 or maps.shape[1:] != image.shape:
        raise StrokeLRPError(
            f"show: relevance {maps.shape} and input {image.shape} do not match: give maps "
            "(K, C, D, H, W) or (C, D, H, W) of the input (1, C, D, H, W) or (C, D, H, W)"
        )
    names = list(channels) if channels else _channel_names(image.shape[0])
    settings = list(labels) if labels else [f"map {k}" for k in range(len(maps))]
    if len(names) != image.shape[0] or len(settings) != len(maps):
        raise StrokeLRPError(
            f"show: {len(names)} channel names for {image.shape[0]} channels, "
            f"{len(settings)} labels for {len(maps)} maps"
        )

    def xyz(volume: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(volume).transpose(2, 1, 0))

    prediction = None
    if output is not None:
        logits = plain(output)
        logits = logits[0] if logits.ndim == 5 else logits
        prediction = xyz(logits.argmax(0) == 1 if len(logits) > 1 else logits[0] > 0)
    return ViewerCase(
        case_id="explanation",
        channels=names,
        affine=np.diag([*map(float, spacing), 1.0]),
        relevance={
            s: {c: xyz(maps[k, j]) for j, c in enumerate(names)} for k, s in enumerate(settings)
        },
        mr={c: xyz(image[j]) for j, c in enumerate(names)},
        truth=None if label is None else xyz(plain(label) > 0),
        prediction=prediction,
    )


def _channel_names(count: int) -> list[str]:
    """Names for arrays that come without the data set's channel names."""
    return [f"channel {k}" for k in range(count)]


def show(explanation: Any, x: Any = None, *, height: int = 760, **options: Any) -> Shown:
    """The viewer in a notebook, one line after ``explain``:

    - ``strokelrp.show("RUN/explanations/4")``, or the object the pipeline's explain returned
      (its ``out`` folder): that folder's files (a run with one explained case works too);
    - ``strokelrp.show(strokelrp.explain(model, x, ...), x)``: the maps at model scale over
      the input ``x``, one entry per filter setting (a relevance array (K, C, D, H, W) or
      (C, D, H, W), e.g. of ``strokelrp.attribute``, works the same); ``options`` go to
      :func:`arrays_case` (``label``, ``channels``, ``spacing``).

    Jupyter displays the returned object (an iframe holding the whole page)."""
    if x is not None:
        if hasattr(explanation, "relevance") and hasattr(explanation, "labels"):
            options.setdefault("labels", explanation.labels)
            options.setdefault("output", explanation.output)
            explanation = explanation.relevance
        return Shown(_page(arrays_case(explanation, x, **options)), height)
    if options:
        raise StrokeLRPError(f"show: {', '.join(options)} apply to arrays (give x)")
    folder = getattr(explanation, "out", explanation)
    if not isinstance(folder, (str, Path)):
        raise StrokeLRPError(
            f"show: got a {type(folder).__name__}; give an explanation folder, or maps with "
            "their input x (strokelrp.show(result, x))"
        )
    folders = explanation_folders(folder)
    if len(folders) != 1:
        raise StrokeLRPError(
            f"{folder}: holds {len(folders)} explanations; give one case folder "
            f"({', '.join(f.name for f in folders[:5])}...)"
        )
    return Shown(viewer_page(folders[0]), height)
