"""Peak memory of ``inspect`` and of loading one case, at 256^3 and 512^3 (6 int16 channels).

Writes one ISLES 2017 case of six int16 modalities and an OT mask per size (uncompressed
NIfTI, random values) to a temporary folder, then measures in a fresh Python process each:
``headers`` (``inspect --headers-only``: files, headers, grids, budget), ``inspect``
(validate every file of the tree, values included) and ``load`` (read the case into its
float32 array). The peak is the child's maximum resident set size minus its resident size after the
imports (so the numbers are the reader's own). ``--baseline SRC`` also runs the same steps
with the strokelrp source tree SRC (e.g. the main branch before layouts) for a ratio in one
run. Prints a markdown table.

    python benchmarks/layout_memory_bench.py [--sizes 256 512] [--baseline /work/main]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np

CHILD = r"""
import json, resource, sys, time
root, step = sys.argv[1], sys.argv[2]
try:
    from strokelrp.data.layouts import inspect_data as inspect, load_cases as load
except ImportError:  # the reader before data layouts
    from strokelrp.data.isles2017 import inspect_isles2017 as inspect, load_isles2017 as load
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    if step == "inspect":
        ok = all(r.status == "ok" for r in inspect(root))
    elif step == "headers":
        ok = all(r.status == "ok" for r in inspect(root, voxels=False))
    else:
        (case,) = load(root)
        ok = case.image.dtype.name == "float32"
    error = None
except BaseException as err:
    ok, error = False, f"{type(err).__name__}: {str(err)[:120]}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ok": ok, "error": error, "mib": (peak - base) / 1024,
                  "s": time.perf_counter() - start}))
"""


def write_case(root: Path, n: int) -> int:
    """One ISLES 2017 case of six n^3 int16 modalities and a uint8 OT -> bytes on disk."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    rng = np.random.default_rng(0)
    total = 0
    tokens = ["MR_ADC", "MR_MTT", "MR_rCBF", "MR_rCBV", "MR_Tmax", "MR_TTP", "OT"]
    for k, token in enumerate(tokens):
        if token == "OT":
            data = np.zeros((n, n, n), np.uint8)
            data[n // 4 : n // 2, n // 4 : n // 2, n // 4 : n // 2] = 1
        else:
            data = rng.integers(0, 4000, (n, n, n), dtype=np.int16)
        name = f"VSD.Brain.XX.O.{token}.{100 + k}"
        path = root / "training_1" / name / f"{name}.nii"
        path.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(data, affine), path)
        total += path.stat().st_size
        del data
    return total


def measure(root: Path, step: str, src: Path | None) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src / "src")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), step], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        return {"ok": False, "error": out.stderr.strip().splitlines()[-1], "mib": float("nan")}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--baseline", type=Path, default=None, help="another strokelrp checkout")
    args = parser.parse_args()
    readers = [("layouts", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            size = write_case(root, n)
            case_mib = 6 * n**3 * 4 / 2**20
            for name, src in readers:
                for step in ("headers", "inspect", "load") if src is None else ("inspect", "load"):
                    r = measure(root, step, src)
                    note = "ok" if r["ok"] else (r.get("error") or "failed")
                    rows.append((n, name, step, size / 2**20, case_mib, r["mib"], r.get("s"), note))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, {date.today()}")  # fmt: skip
    print()
    print("| grid | reader | step | files MiB | case float32 MiB | peak MiB | s | result |")
    print("|---|---|---|---|---|---|---|---|")
    for n, name, step, files, case, peak, secs, note in rows:
        s = "-" if secs is None else f"{secs:.1f}"
        print(f"| {n}^3 | {name} | {step} | {files:.0f} | {case:.0f} | {peak:.0f} | {s} | {note} |")


if __name__ == "__main__":
    main()
