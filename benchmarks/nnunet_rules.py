"""Which InstanceNorm step the LRP default should use on nnU-Net's networks, measured by
``strokelrp assess --nnunet`` on nnU-Nets trained by nnU-Net's own code.

For each network kind (``plain``: nnU-Net's default planner, a ``PlainConvUNet``; ``resenc``:
nnU-Net's ``nnUNetPlannerResEncM``, a ``ResidualEncoderUNet`` with its residual sums), the
script writes synthetic two-channel cases (DWI, ADC; one sphere lesion; the generator of the
tests' tiny nnU-Net, ``tests/nnunet/tiny_nnunet.py``) in nnU-Net's raw format, training cases
in ``imagesTr``/``labelsTr`` and held-out cases in ``imagesTs``/``labelsTs``; runs nnU-Net's
fingerprint, planner and preprocessing; shrinks the 3d_fullres plan (three stages, 8-16-32
features, patch 16 x 32 x 32) as a user could; trains fold ``all`` with nnU-Net's
``nnUNetTrainer`` (a subprocess, nnU-Net's own loop, augmentation and loss) for ``--epochs`` x
``--iterations``; then assesses ``lrp:epsilon(instancenorm=pass)``,
``lrp:epsilon(instancenorm=fold)`` and the gradient on the held-out cases through nnU-Net's
sliding window (:func:`strokelrp.pipeline.assess_nnunet.assess_nnunet`, no mirroring). The
residual sums have one step in the engine (the proportional split), so the ``resenc`` rows
compare the norms' steps on a network with residual sums.

Prints one markdown table per network: each method's mean and 95 % bootstrap interval of the
checked measures over the held-out cases, and the paired Wilcoxon p of pass vs fold
(docs/assess.md defines the measures). ``--model-dir`` assesses an existing model folder
instead of training (e.g. the tests' tiny nnU-Net), ``--data`` / ``--cases`` / ``--folds``
then name its raw folder, cases and folds.

    PYTHONPATH=src python benchmarks/nnunet_rules.py --root /tmp/nnrules --kinds plain resenc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests" / "nnunet"
METHODS = ("lrp:epsilon(instancenorm=pass)", "lrp:epsilon(instancenorm=fold)", "gradient")
MEASURES = (
    "lesion_share",
    "prior_gap",
    "random_gap",
    "randomisation_rho",
    "contrast_rho",
    "mass_accuracy",
)
PLANNERS = {"plain": "ExperimentPlanner", "resenc": "nnUNetPlannerResEncM"}
PLANS = {"plain": "nnUNetPlans", "resenc": "nnUNetResEncUNetMPlans"}


def dataset_name(kind: str) -> tuple[int, str]:
    number = {"plain": 911, "resenc": 912}[kind]
    return number, f"Dataset{number}_Rules{kind.capitalize()}"


def write_raw(raw: Path, n_train: int, n_test: int, seed: int) -> None:
    """Training cases in imagesTr/labelsTr, held-out ones in imagesTs/labelsTs."""
    sys.path.insert(0, str(TESTS))
    import tiny_nnunet as tiny

    rng = np.random.default_rng(seed)
    las = np.diag([-2.0, 1.0, 1.0, 1.0])
    for split, n, offset in (("Tr", n_train, 0), ("Ts", n_test, 500)):
        (raw / f"images{split}").mkdir(parents=True, exist_ok=True)
        (raw / f"labels{split}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            dwi, adc, lab = tiny._case(rng, (20, 48, 44))
            name = f"case_{offset + i:03d}"
            tiny._save(dwi, las, raw / f"images{split}" / f"{name}_0000.nii.gz")
            tiny._save(adc, las, raw / f"images{split}" / f"{name}_0001.nii.gz")
            tiny._save(lab, las, raw / f"labels{split}" / f"{name}.nii.gz")
    dataset = {
        "channel_names": {"0": "DWI", "1": "ADC"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_train,
        "file_ending": ".nii.gz",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))


def shrink_plan(plans_file: Path, kind: str) -> None:
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = [16, 32, 32]
    config["batch_size"] = 2
    arch = config["architecture"]["arch_kwargs"]
    arch.update(
        n_stages=3,
        features_per_stage=[8, 16, 32],
        kernel_sizes=[[3, 3, 3]] * 3,
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        n_conv_per_stage_decoder=[1, 1],
    )
    if kind == "resenc":
        arch["n_blocks_per_stage"] = [1, 2, 2]
        arch.pop("n_conv_per_stage", None)
    else:
        arch["n_conv_per_stage"] = [2, 2, 2]
    plans["configurations"] = {"3d_fullres": config}
    plans_file.write_text(json.dumps(plans, indent=2))


def train(root: Path, kind: str, epochs: int, iterations: int) -> None:
    """Runs in a subprocess with nnU-Net's environment set (``train`` sub-command)."""
    import torch

    torch.set_num_threads(1)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.run.run_training import get_trainer_from_args

    number, name = dataset_name(kind)
    os.environ["nnUNet_n_proc_DA"] = "1"  # noqa: SIM112 (nnU-Net's name)
    extract_fingerprints([number], num_processes=1, check_dataset_integrity=True, clean=False)
    plan_experiments([number], experiment_planner_class_name=PLANNERS[kind])
    os.environ["nnUNet_n_proc_DA"] = "0"  # noqa: SIM112
    shrink_plan(Path(nnUNet_preprocessed) / name / f"{PLANS[kind]}.json", kind)
    preprocess([number], PLANS[kind], configurations=("3d_fullres",), num_processes=(1,))
    trainer = get_trainer_from_args(
        str(number), "3d_fullres", "all", "nnUNetTrainer", PLANS[kind], device=torch.device("cpu")
    )
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    trainer.num_val_iterations_per_epoch = 2
    trainer.run_training()


def trained_model(root: Path, kind: str, args: argparse.Namespace) -> tuple[Path, Path]:
    """(model folder, raw folder) of ``kind``, trained unless it exists."""
    sys.path.insert(0, str(TESTS))
    import tiny_nnunet as tiny

    _, name = dataset_name(kind)
    raw = root / "nnUNet_raw" / name
    model = root / "nnUNet_results" / name / f"nnUNetTrainer__{PLANS[kind]}__3d_fullres"
    held_out = len(list((raw / "imagesTs").glob("*_0000.nii.gz")))
    if not (raw / "dataset.json").is_file() or held_out < args.held_out:
        # the same generator and seed: the training cases come out identical, the held-out
        # ones extend the earlier ones, so a trained model stays valid
        write_raw(raw, args.train_cases, args.held_out, seed=7)
    if (model / "fold_all" / "checkpoint_final.pth").is_file():
        return model, raw
    env = {**os.environ, **tiny.nnunet_env(root)}
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "train", str(root), kind]
    cmd += ["--epochs", str(args.epochs), "--iterations", str(args.iterations)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"training {kind} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    print(f"<!-- {kind}: trained in {time.perf_counter() - t0:.0f} s -->")
    return model, raw


def table(out: Path, title: str) -> None:
    from strokelrp.analysis.assess import summarize_methods
    from strokelrp.analysis.statistics import bootstrap_interval
    from strokelrp.run_files import read_csv

    rows = read_csv(out / "assess.csv")
    pairs = read_csv(out / "assess_pairs.csv")
    summary = summarize_methods(rows)
    cases = sorted({r["case"] for r in rows})
    print(f"\n{title}: {len(cases)} held-out case(s) ({', '.join(cases)})\n")
    print("| method | " + " | ".join(MEASURES) + " | checks passed |")
    print("|---|" + "---|" * (len(MEASURES) + 1))
    for s in summary:
        mine = [r for r in rows if r["method"] == s["method"]]
        cells = []
        for m in MEASURES:
            values = [float(r[m]) for r in mine if r[m] not in ("", None)]
            mean, low, high = bootstrap_interval(values)
            cells.append("n/a" if np.isnan(mean) else f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        passed = sum(bool(v) for k, v in s.items() if k.endswith("_ok"))
        print(f"| {s['method']} | " + " | ".join(cells) + f" | {passed} |")
    wanted = {METHODS[0], METHODS[1]}
    for p in pairs:
        if {p["method"], p["other"]} == wanted and p["median_difference"] != "":
            print(
                f"- {p['measure']}: {p['method']} minus {p['other']}, median difference "
                f"{float(p['median_difference']):.3f} over {p['pairs']} case(s), paired "
                f"Wilcoxon p = {p['p'] or 'n/a'}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    if len(sys.argv) > 1 and sys.argv[1] == "train":
        parser.add_argument("cmd")
        parser.add_argument("root", type=Path)
        parser.add_argument("kind", choices=list(PLANNERS))
        parser.add_argument("--epochs", type=int, required=True)
        parser.add_argument("--iterations", type=int, required=True)
        args = parser.parse_args()
        train(args.root, args.kind, args.epochs, args.iterations)
        return
    parser.add_argument("--root", type=Path, default=Path("/tmp/strokelrp-nnunet-rules"))
    parser.add_argument("--kinds", nargs="+", choices=list(PLANNERS), default=["plain"])
    parser.add_argument("--train-cases", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--cases", nargs="*", default=None)
    parser.add_argument("--folds", default="all")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    import torch

    from strokelrp.pipeline.assess_nnunet import assess_nnunet

    torch.set_num_threads(1)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cpu = platform.processor() or platform.machine()
    print(f"# {stamp}, {cpu}, {os.cpu_count()} cores (shared), torch {torch.__version__}, 1 thread")
    jobs = []
    if args.model_dir is not None:
        jobs.append(("given", args.model_dir, args.data, args.cases, args.folds))
    else:
        for kind in args.kinds:
            model, raw = trained_model(args.root, kind, args)
            jobs.append((kind, model, raw, None, "all"))
    for kind, model, raw, cases, folds in jobs:
        out = args.root / f"assess-{kind}"
        t0 = time.perf_counter()
        assess_nnunet(
            model,
            raw,
            out,
            cases=cases,
            methods=METHODS,
            folds=folds,
            mirror=False,
            seeds=tuple(range(1, args.seeds + 1)),
            random_seeds=5,
            extras=False,
        )
        seconds = time.perf_counter() - t0
        table(out, f"{kind}: {model.name} folds {folds}, assessed in {seconds:.0f} s")


if __name__ == "__main__":
    main()
