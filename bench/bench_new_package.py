"""Print how fast `make new-package` refuses bad names, and how long a good one takes to add.

Figures, not assertions: run it before and after a change and compare.

    uv run --locked python bench/bench_new_package.py [--runs 3]

It generates a repo from a clone of this checkout (python_version=3.11, the lambda target
only, so TYPE=ecs meets the deploy-target check) and prints, for each bad NAME/TYPE: the
median wall time of `make new-package` over --runs runs, its exit code and how many lines it
printed. For comparison, one row times Copier refusing a name by itself (the pinned `uvx`
Copier that `make new-package` runs, without the Makefile's check in front). Last, the wall
time of one successful `make new-package` (Copier through uvx, plus the package's lock).
uv's cache is warm after the first run of each command; Python is never downloaded.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import ENV, ROOT, commit, sh, template_clone

sys.path.insert(0, str(ROOT))
from extensions.validators import PACKAGE_NAME_MAX_LENGTH as CAP  # noqa: E402
BAD = [
    ("prefix typed again", "nt_billing", "library"),
    ("shell code", "x;echo hi >f;:", "library"),
    ("make code", "$(shell touch pwned)", "library"),
    ("250 characters", "a" * 250, "library"),
    (f"{CAP + 1} characters", "a" * (CAP + 1), "library"),
    ("capital", "Billing", "library"),
    ("keyword", "class", "library"),
    ("leading digit", "1abc", "library"),
    ("exists", "common", "library"),
    ("unknown TYPE", "billing", "web"),
    ("missing target", "billing", "ecs"),
]


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    return time.perf_counter() - start, result


def lines(result: subprocess.CompletedProcess[str]) -> int:
    return len((result.stdout + result.stderr).splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = template_clone(work)
        repo = work / "repo"
        sh(sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
           "--vcs-ref", "HEAD", "-d", "python_version=3.11", "-d", "deploy_targets=[lambda]",
           str(template), str(repo), cwd=work)
        commit(repo, "generated")
        print(f"{'refused':<26} {'s (median)':>10} {'exit':>4} {'lines':>5}")
        for what, name, package_type in BAD:
            cmd = ["make", "new-package", f"NAME={name}", f"TYPE={package_type}"]
            timed(cmd, repo)  # warm uv's script environment; not reported
            runs = [timed(cmd, repo) for _ in range(args.runs)]
            result = runs[-1][1]
            print(f"{what:<26} {statistics.median(r[0] for r in runs):>10.2f} "
                  f"{result.returncode:>4} {lines(result):>5}", flush=True)
        # What a refusal cost before the Makefile checked first: Copier's own validator, run
        # the way the Makefile runs Copier (its pinned command, the recorded source and commit).
        copier = re.search(r"(?m)^COPIER \?= (.*)$", (repo / "Makefile").read_text())
        assert copier, "the generated Makefile names no COPIER"
        source, version = sh("uv", "run", "--quiet", "scripts/answers.py", "_src_path", "_commit",
                             cwd=repo).split()
        cmd = [*shlex.split(copier.group(1)), "copy", "--trust", "--defaults", "--vcs-ref", version,
               "--data", "template_kind=package", "--data", "package_name=nt_billing",
               "--data", "package_type=library", source, "."]
        timed(cmd, repo)
        runs = [timed(cmd, repo) for _ in range(args.runs)]
        result = runs[-1][1]
        print(f"{'copier alone, nt_billing':<26} {statistics.median(r[0] for r in runs):>10.2f} "
              f"{result.returncode:>4} {lines(result):>5}", flush=True)
        status = sh("git", "status", "--porcelain", cwd=repo)
        print(f"git status after the refusals: {'clean' if not status else status}")

        seconds, result = timed(["make", "new-package", "NAME=billing", "TYPE=library"], repo)
        if result.returncode != 0:
            sys.exit(f"make new-package NAME=billing failed:\n{result.stdout}\n{result.stderr}")
        print(f"{'added NAME=billing':<26} {seconds:>10.2f} {result.returncode:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
