"""A tiny nnU-Net trained by nnU-Net's own code (tiny_nnunet.py), once per session.

The trained folder is cached under the system temp folder, keyed by the training script and
the nnunetv2 version, so a second session reuses it; the tests skip only where nnunetv2 is not
installed (``make test`` installs it: see the Makefile's ``.nnunet`` step)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def tiny_nnunet() -> Path:
    """The root holding nnUNet_raw, nnUNet_preprocessed and nnUNet_results of the tiny model."""
    nnunetv2 = pytest.importorskip("nnunetv2", reason="nnU-Net extra not installed")
    import importlib.metadata

    sys.path.insert(0, str(HERE))
    import tiny_nnunet as tiny

    key = hashlib.sha256((HERE / "tiny_nnunet.py").read_bytes()).hexdigest()[:12]
    version = importlib.metadata.version("nnunetv2")
    root = Path(tempfile.gettempdir()) / f"strokelrp-tiny-nnunet-{version}-{key}"
    done = root / "done"
    if not done.is_file():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        env = {**os.environ, **tiny.nnunet_env(root)}
        run = subprocess.run(
            [sys.executable, str(HERE / "tiny_nnunet.py"), str(root)],
            env=env,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise RuntimeError(
                f"tiny nnU-Net training failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
            )
        done.write_text(nnunetv2.__name__)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_nnunet: Path) -> Path:
    import tiny_nnunet as tiny

    return tiny.model_dir(tiny_nnunet)
