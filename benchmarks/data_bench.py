"""Data-loading benchmark: load + preprocess synthetic ISLES 2017 cases, cold and cached.

Writes N synthetic cases (default 43 of 192x192x19) to a temporary folder, then builds a
``CaseDataset`` for series X and A twice each: *cold* (empty strokelrp cache: read and
validate every NIfTI, normalise, resize, write the cache) and *cached* (the same call again),
and reads every item in both cases. Prints a markdown table. The OS file cache is warm in
both runs (the files were just written), as it is when one trains after ``strokelrp synth``.

    python benchmarks/data_bench.py [--cases 43] [--shape 192 192 19] [--data DIR]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from strokelrp.data.dataset import CaseDataset
from strokelrp.data.synth import synthesize_isles2017


def _load_all(root: Path, series: str, cache: Path) -> tuple[float, int, int]:
    """-> (seconds to build the dataset and read every item, cases, cache hits)."""
    start = time.perf_counter()
    ds = CaseDataset(root, series, cache_dir=cache)
    for i in range(len(ds)):
        x, y, _ = ds[i]
        assert x.shape[0] == 6 and y.ndim == 3
    return time.perf_counter() - start, len(ds), ds.cache_hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=43)
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(192, 192, 19), metavar=("H", "W", "D")
    )
    parser.add_argument("--data", type=Path, default=None, help="use (or create) this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="strokelrp-bench-") as tmp:
        tmp_path = Path(tmp)
        root = args.data or tmp_path / "isles"
        synth_s = None
        if not (root / "synth_manifest.json").exists():
            start = time.perf_counter()
            synthesize_isles2017(root, args.cases, shape=tuple(args.shape), seed=0)
            synth_s = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in root.rglob("*.nii")) / 1e6
        rows = []
        for series in ("X", "A"):
            cache = tmp_path / f"cache-{series}"
            cold, n, hits_cold = _load_all(root, series, cache)
            cached, _, hits_warm = _load_all(root, series, cache)
            assert hits_cold == 0 and hits_warm == n
            cache_mb = sum(p.stat().st_size for p in cache.glob("*.npy")) / 1e6
            rows.append((series, n, cold, cached, cache_mb))

    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"python {platform.python_version()}, torch {torch.__version__}, date {date.today()}"
    )
    h, w, d = args.shape
    extra = f", written in {synth_s:.1f} s" if synth_s is not None else ""
    print(f"data: {n} synthetic cases of {w}x{h}x{d} (x y z), {size_mb:.0f} MB of .nii{extra}\n")
    print(
        "| series | cases | cold load + preprocess (s) | cached load (s) "
        "| per case cold / cached (ms) | cache (MB) |"
    )
    print("|---|---|---|---|---|---|")
    for series, n, cold, cached, cache_mb in rows:
        print(
            f"| {series} | {n} | {cold:.2f} | {cached:.2f} | "
            f"{1000 * cold / n:.0f} / {1000 * cached / n:.0f} | {cache_mb:.0f} |"
        )


if __name__ == "__main__":
    main()
