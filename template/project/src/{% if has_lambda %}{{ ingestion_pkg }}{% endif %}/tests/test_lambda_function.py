"""The handler imported the way the Lambda image imports it: through docker/lambda_function.py.

The image's /var/task is on sys.path but is not a site directory, so the .pth files that
dependencies install there (setuptools' distutils shim, for one) run only because the
wrapper makes it one. This builds a task folder like the image's: the wrapper, with the
service's name filled in as Dockerfile.lambda's code stage does, next to a .pth file, and
imports the handler from it in a fresh interpreter, with the folder on sys.path the way the
runtime puts /var/task there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT_DIR.name
WRAPPER = PROJECT_DIR.parents[1] / "docker" / "lambda_function.py"


def test_wrapper_runs_pth_files_then_exposes_the_handler(tmp_path: Path) -> None:
    task = tmp_path / "task"
    (task / "from_pth").mkdir(parents=True)
    wrapper = WRAPPER.read_text().replace("@SERVICE_NAME@", PACKAGE)
    (task / "lambda_function.py").write_text(wrapper)
    # A .pth path line, as a dependency would install one: the module below is importable
    # only once the folder holding the .pth file is processed as a site directory.
    (task / "from_pth" / "pth_probe.py").write_text("LOADED = True\n")
    (task / "probe.pth").write_text("from_pth\n")
    code = (
        "import json, lambda_function, pth_probe\n"
        f"from {PACKAGE}.handler import handler\n"
        "print(json.dumps([lambda_function.handler is handler, pth_probe.LOADED]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=task, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [True, True]
