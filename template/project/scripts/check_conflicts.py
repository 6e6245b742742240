# /// script
# requires-python = ">=3.10"
# ///
"""Fail when a file of the repo holds merge-conflict markers or is a ``.rej`` file.

`copier update` leaves either inline markers or ``*.rej`` files where the template and
the repository both changed a line; committing one unresolved breaks code quietly.

    uv run scripts/check_conflicts.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Built from pieces so this file does not flag itself.
MARKERS = ("<" * 7, ">" * 7)


def repo_files() -> list[str]:
    """Tracked files and new ones not ignored (`copier update` adds files untracked), once each."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # An unmerged file is listed once per index stage (base, ours, theirs).
    return list(dict.fromkeys(name for name in out.split("\0") if name))


def problems() -> list[str]:
    """One line per conflict marker (file:line) and per .rej file, in file order."""
    found = []
    for name in repo_files():
        if name.endswith(".rej"):
            found.append(f"{name}: rejected hunk from an update; apply it by hand and delete it")
            continue
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if line.startswith(MARKERS) and (len(line) == 7 or line[7] == " "):
                found.append(f"{name}:{number}: conflict marker")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
