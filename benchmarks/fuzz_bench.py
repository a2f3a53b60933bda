"""Hostile-NIfTI fuzzing: seeded corruptions of a valid case, each read in its own process.

Writes one valid synthetic case, then for each trial i damages one of its seven files with
``hostile_nifti.corrupt`` (seed ``[SEED, i]``: header or voxel byte flips, truncation, a
hostile value in one header field, the same on a gzip file or a NIfTI-2 file, gzip stream
damage) and reads the tree in a forked child (``load_cases(..., on_error="skip")``) under
a time limit and a 4 GiB address-space limit. The parent classifies each outcome:

- clean error: every problem is one line ``case 1: FILE: ...`` naming the damaged file;
- accepted: the case loaded and its image, each channel's value range (in float32), affine
  and spacing are finite (a flip inside the voxel data often leaves a valid file);
- silent bad: loaded with non-finite values, or a problem line that is not clean;
- unexpected: a line from the reader's last-resort handler (an exception no check foresaw);
- traceback: an exception escaped, or the child died;
- hang: the child ran past the time limit.

Peak memory is the child's ``ru_maxrss`` (from ``wait4``); a forked child starts with the
parent's resident pages, so the parent's RSS is printed beside it.

    python benchmarks/fuzz_bench.py [--trials 300] [--seed 0] [--timeout 20] [--shape 64 64 12]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))

from hostile_nifti import FUZZ_FAMILIES, corrupt

from strokelrp.data.layouts import load_cases
from strokelrp.data.synth import synthesize_isles2017

ADDRESS_LIMIT = 4 << 30
OUTCOMES = ("clean error", "accepted", "silent bad", "unexpected", "traceback", "hang")


def _read_tree(root: Path, damaged: str) -> dict:
    """What the reader makes of ``root`` (run in the child) -> outcome and detail."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cases = load_cases(root, on_error="skip")
    lines = [str(w.message).removeprefix("skipping invalid case: ") for w in caught]
    lines = [line for line in lines if line.startswith("case ")]
    if cases:
        case = cases[0]
        finite = (
            np.isfinite(case.image).all()
            and np.isfinite(case.image.max(axis=(1, 2, 3)) - case.image.min(axis=(1, 2, 3))).all()
            and np.isfinite(case.affine).all()
            and all(np.isfinite(s) and s > 0 for s in case.spacing)
        )
        return {"outcome": "accepted" if finite else "silent bad", "detail": repr(case)}
    if any("(unexpected " in line for line in lines):
        return {"outcome": "unexpected", "detail": lines[0]}
    clean = bool(lines) and all(
        "\n" not in line and line.startswith("case 1: ") and len(line) < 400 for line in lines
    )
    named = any(damaged in line for line in lines)
    outcome = "clean error" if clean and named else "silent bad"
    return {"outcome": outcome, "detail": " | ".join(lines)[:300]}


def _run_child(root: Path, damaged: str, timeout: float) -> tuple[dict, int]:
    """Fork, read the tree in the child -> (result, child's peak RSS in KiB)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))
            result = _read_tree(root, damaged)
        except BaseException as err:  # what the benchmark counts
            tb = traceback.format_exception_only(type(err), err)[-1].strip()
            result, code = {"outcome": "traceback", "detail": tb[:300]}, 2
        with os.fdopen(write_fd, "w") as fh:
            fh.write(json.dumps(result))
        os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            _, status, usage = os.wait4(pid, 0)
            os.close(read_fd)
            return {"outcome": "hang", "detail": f"killed after {timeout:g} s"}, usage.ru_maxrss
        time.sleep(0.005)
    with os.fdopen(read_fd) as fh:
        text = fh.read()
    if not text:
        return {"outcome": "traceback", "detail": f"child died (status {status})"}, usage.ru_maxrss
    return json.loads(text), usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 12), metavar=("H", "W", "D"))
    parser.add_argument("--show", type=int, default=3, help="examples printed per outcome")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fuzz_bench_"))
    try:
        pristine = synthesize_isles2017(work / "pristine", 1, shape=tuple(args.shape), seed=3)
        files = sorted(p.relative_to(pristine) for p in pristine.glob("training_1/*/*.nii"))
        parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        counts: Counter[tuple[str, str]] = Counter()
        peaks: list[int] = []
        examples: dict[str, list[str]] = {}
        start = time.perf_counter()
        for i in range(args.trials):
            rng = np.random.default_rng([args.seed, i])
            root = work / f"t{i}"
            shutil.copytree(pristine, root, ignore=shutil.ignore_patterns("*.json"))
            target = root / files[int(rng.integers(len(files)))]
            damaged, what = corrupt(target, rng)
            family = what.split(":")[0]
            result, peak = _run_child(root, damaged.name, args.timeout)
            counts[(family, result["outcome"])] += 1
            peaks.append(peak)
            examples.setdefault(result["outcome"], []).append(
                f"{i} {what} ({damaged.name.split('.')[4]}) -> {result['detail']}"
            )
            shutil.rmtree(root)
        elapsed = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"# Hostile NIfTI fuzzing: {args.trials} trials, seed {args.seed}, case grid "
        f"{'x'.join(map(str, args.shape))} (H W D), {date.today()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, python {platform.python_version()}, {elapsed:.0f} s\n"
    )
    print("| family | trials | " + " | ".join(OUTCOMES) + " |")
    print("|---|" + "---|" * (len(OUTCOMES) + 1))
    for family in (*FUZZ_FAMILIES, "all"):
        row = [
            sum(n for (f, o), n in counts.items() if (family == "all" or f == family) and o == out)
            for out in OUTCOMES
        ]
        print(f"| {family} | {sum(row)} | " + " | ".join(str(n) for n in row) + " |")
    print(
        f"\npeak RSS of a child: max {max(peaks) / 1024:.0f} MiB, median "
        f"{np.median(peaks) / 1024:.0f} MiB (parent before forking: {parent_rss / 1024:.0f} MiB)"
    )
    for outcome in OUTCOMES:
        for line in examples.get(outcome, [])[: args.show]:
            print(f"  [{outcome}] {line}")


if __name__ == "__main__":
    main()
