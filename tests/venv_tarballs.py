"""Stand-in venv tarballs for the release and runtime scripts.

A real venv tarball takes a container build; the scripts that release and run one only care
that it is a .tar.gz holding `bin/python`. The stand-in's `bin/python` is a shell script that
prints what it was asked to run as one JSON line, so a test sees the job start. Built
reproducibly (fixed mtimes, no gzip timestamp): the same content gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

JOB_SCRIPT = """#!/bin/sh
# stand-in for the venv's python: `python -m <package> args...`
printf '{"job": "%s", "marker": "%s", "args": "%s"}\\n' "$2" "{marker}" "$*"
"""


def venv_tarball(path: Path, marker: str = "v1", files: int = 1, script: str = "") -> Path:
    """Write a stand-in venv tarball to `path`; `marker` changes its bytes, `script` replaces
    the job (a shell script run as `bin/python -m <package> args...`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        job = script or JOB_SCRIPT.replace("{marker}", marker)
        entries = {"bin/python": job.encode()}
        # Padding so extraction takes a moment: concurrency tests need an overlap.
        entries |= {f"lib/site-packages/mod{i}.py": b"x = 1\n" * 200 for i in range(files)}
        for name, data in sorted(entries.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
