# /// script
# requires-python = ">=3.11"
# dependencies = ["pyyaml==6.0.3"]
# ///
"""Move this repo between the two workspace layouts, keeping the team's work.

    make switch-layout LAYOUT=independent   # one uv project and uv.lock per package
    make switch-layout LAYOUT=shared        # one workspace, one uv.lock at the root

With a committed work tree, this:
1. runs `copier update` at the repo's current template version with the new
   `workspace_layout`, for `.copier-answers.yml` and then for every `.copier/package-*.yml`,
   so the root pyproject.toml, Makefile, CI and Dockerfiles follow the new layout;
2. rewrites every package's `[tool.uv.sources]` entry for a local package to the other form
   (`{ workspace = true }` <-> `{ path = "../<pkg>" }`), the ones you added included;
3. brings the layout paragraphs of README.md along (a 3-way merge, your edits kept);
4. remakes the locks with uv (one root uv.lock <-> one uv.lock per package) and removes the
   stale ones;
5. commits the result as one commit.

Refused, with nothing changed: an unknown layout, the layout the repo already has, or
uncommitted changes. If any step fails (a lock uv cannot make, a conflict with your edits), or
the command is stopped (Ctrl-C, SIGTERM, a closed terminal's SIGHUP), the work tree is reset to
the commit it started from and the reason is printed. Temporary files (its own, and those of
the Copier and uv runs it starts) live in one `switch-layout.*` folder under $TMPDIR, removed
on the way out.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import answers as copier_answers
import check_conflicts
import monorepo
import yaml

ROOT = monorepo.ROOT
LAYOUTS = ("shared", "independent")
ROOT_ANSWERS = ".copier-answers.yml"
# The template's own form of each layout's local source; `path` is relative to the package.
SOURCE_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*=\s*"
    r"(?P<value>\{\s*(workspace\s*=\s*true|path\s*=\s*\"\.\./[^\"]+\"(\s*,\s*editable\s*=\s*\w+)?)\s*\})"
    r"(?P<rest>\s*(#.*)?)$"
)


class Refused(Exception):
    """Nothing was touched."""


class Failed(Exception):
    """Something was touched: the caller resets the tree."""


class Stopped(Exception):
    """A stop signal arrived mid-switch: handled as Ctrl-C is (the tree is reset)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


# Ctrl-C arrives as KeyboardInterrupt; these end a process without unwinding it unless handled.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def ignore_stop_signals() -> None:
    """While the tree is being restored, a second signal must not cut the restore short."""
    for sig in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Failed(f"git {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def run(cmd: list[str], what: str) -> None:
    """Run a step with its output shown; a failure carries uv's or Copier's own words."""
    print(f"+ {shlex.join(cmd)}", flush=True)
    # `uv run` gives this script its own environment; the repo's uv projects pick their own.
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise Failed(f"{what} failed:\n{(result.stderr or result.stdout).strip()}")


def checkpoint(message: str) -> None:
    # Copier updates only a clean tree: each step is committed, and all of them squashed at
    # the end. No hooks: these commits never outlive the command.
    git("add", "--all")
    git(
        "commit",
        "--quiet",
        "--no-verify",
        "--allow-empty",
        "--message",
        f"switch-layout: {message}",
    )
    # Copier leaves inline markers where the team's edits and the layout change meet.
    problems = check_conflicts.problems()
    if problems:
        raise Failed(
            "copier update left conflicts with your edits:\n  "
            + "\n  ".join(problems)
            + "\nUndo those edits (or make them again after the switch), then run it again"
        )


def local_packages() -> dict[str, str]:
    """Normalized distribution name -> folder under src/, for every package in the repo."""
    return {monorepo.normalize(p.name): p.dir_name for p in monorepo.discover(ROOT).values()}


def rewrite_sources(text: str, layout: str, local: dict[str, str]) -> str:
    """Every [tool.uv.sources] entry naming a local package, in the given layout's form."""
    lines = []
    in_sources = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            in_sources = stripped == "[tool.uv.sources]"
        elif in_sources and (match := SOURCE_LINE.match(stripped)):
            folder = local.get(monorepo.normalize(match["name"]))
            if folder:
                # Inline tables written whole (no f-string braces to escape).
                target = "workspace = true" if layout == "shared" else f'path = "../{folder}"'
                value = "{ " + target + " }"
                ending = "\n" if line.endswith("\n") else ""
                line = f"{match['name']} = {value}{match['rest']}{ending}"
        lines.append(line)
    return "".join(lines)


def check_sources(layout: str, local: dict[str, str]) -> None:
    """Fail on a local source left in the other form (say, a multi-line table)."""
    for folder in local.values():
        path = ROOT / "src" / folder / "pyproject.toml"
        sources = monorepo.load_toml(path).get("tool", {}).get("uv", {}).get("sources", {})
        for dist, source in sources.items():
            target = local.get(monorepo.normalize(dist))
            if not target or not isinstance(source, dict):
                continue
            ok = (
                source.get("workspace") is True
                if layout == "shared"
                else (source.get("path") == f"../{target}")
            )
            if not ok:
                raise Failed(
                    f"src/{folder}/pyproject.toml: the source of {dist} ({source}) is not in a "
                    f"form this command rewrites; write it as one line "
                    f"`{dist} = " + "{ ... }` under [tool.uv.sources] and run it again"
                )


def copier_data_file(answers: Path, directory: Path) -> Path:
    """The answers without Copier's private keys, for rendering the template elsewhere."""
    kept = {k: v for k, v in copier_answers.load(answers).items() if not k.startswith("_")}
    path = directory / "answers.yml"
    path.write_text(yaml.safe_dump(kept))
    return path


def merge_readme(copier: list[str], old: str, new: str) -> None:
    """README.md is the team's (never overwritten by updates): merge the layout change in."""
    readme = ROOT / "README.md"
    if not readme.is_file():
        return
    answers = ROOT / ROOT_ANSWERS
    with tempfile.TemporaryDirectory() as tmp:
        data = copier_data_file(answers, Path(tmp))
        rendered = {}
        for layout in (old, new):
            dst = Path(tmp) / layout
            run(
                [
                    *copier,
                    "copy",
                    "--trust",
                    "--defaults",
                    "--quiet",
                    "--skip-tasks",
                    "--vcs-ref",
                    copier_answers.answer(answers, "_commit"),
                    "--data-file",
                    str(data),
                    "--data",
                    f"workspace_layout={layout}",
                    # Only README.md is needed from each render.
                    "--exclude",
                    "*",
                    "--exclude",
                    "!README.md",
                    copier_answers.answer(answers, "_src_path"),
                    str(dst),
                ],
                f"rendering README.md for the {layout} layout",
            )
            rendered[layout] = dst / "README.md"
        result = subprocess.run(
            ["git", "merge-file", "-p", str(readme), str(rendered[old]), str(rendered[new])],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode == 0:
        readme.write_text(result.stdout)
    elif result.returncode > 0:
        # Conflicts in prose are not worth failing the move for: say where to look instead.
        print(
            "switch-layout: README.md: your edits overlap the layout paragraphs; "
            "left as it was, update them by hand",
            file=sys.stderr,
        )
    else:
        raise Failed(f"merging README.md failed:\n{result.stderr.strip()}")


def relock(layout: str, packages: list[str]) -> None:
    if layout == "independent":
        shared_lock = ROOT / "uv.lock"
        for folder in packages:
            lock = ROOT / "src" / folder / "uv.lock"
            # Seeded with the workspace's lock, uv keeps the versions the team had where they
            # still fit the package's own requirements, instead of taking the newest.
            if shared_lock.is_file() and not lock.exists():
                lock.write_bytes(shared_lock.read_bytes())
            run(["uv", "lock", "--project", f"src/{folder}"], f"locking src/{folder}")
    else:
        for folder in packages:
            (ROOT / "src" / folder / "uv.lock").unlink(missing_ok=True)
    # The root lock: the whole workspace (shared), or the dev tooling only (independent).
    run(["uv", "lock"], "locking the root project")


def switch(layout: str, old: str, copier: list[str]) -> None:
    local = local_packages()
    pyprojects = {
        folder: (ROOT / "src" / folder / "pyproject.toml").read_text() for folder in local.values()
    }

    # Between layouts the template changes a package's pyproject.toml only in its sources.
    # Copier's 3-way merge reports a conflict wherever the team added a source next to the
    # template's own (`uv add` puts it on the next line), so each package's pyproject.toml is
    # kept as the team left it through the updates, and its sources are rewritten afterwards:
    # every other line stays as it was.
    def keep_pyprojects() -> None:
        for folder, text in pyprojects.items():
            (ROOT / "src" / folder / "pyproject.toml").write_text(text)

    update = [
        *copier,
        "update",
        "--trust",
        "--defaults",
        "--vcs-ref",
        ":current:",
        "--data",
        f"workspace_layout={layout}",
    ]
    run([*update, "--answers-file", ROOT_ANSWERS], f"copier update of {ROOT_ANSWERS}")
    keep_pyprojects()
    checkpoint(ROOT_ANSWERS)
    for answers in sorted((ROOT / ".copier").glob("package-*.yml")):
        relative = str(answers.relative_to(ROOT))
        run([*update, "--answers-file", relative], f"copier update of {relative}")
        keep_pyprojects()
        checkpoint(relative)
    for folder, text in pyprojects.items():
        (ROOT / "src" / folder / "pyproject.toml").write_text(rewrite_sources(text, layout, local))
    check_sources(layout, local)
    merge_readme(copier, old, layout)
    relock(layout, sorted(pyprojects))
    checkpoint("sources, README.md and locks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layout", help="shared or independent")
    parser.add_argument(
        "--copier", default="copier", help="the Copier command (make passes its pin)"
    )
    args = parser.parse_args(argv)
    copier = shlex.split(args.copier)
    try:
        if args.layout not in LAYOUTS:
            raise Refused(
                f"unknown layout {args.layout!r}; "
                "usage: make switch-layout LAYOUT=independent|shared"
            )
        old = copier_answers.answer(ROOT / ROOT_ANSWERS, "workspace_layout")
        # Every step renders the template from the recorded source and version: refuse a
        # source Copier cannot find from here before anything changes.
        for key in ("_src_path", "_commit"):
            copier_answers.answer(ROOT / ROOT_ANSWERS, key)
        if old == args.layout:
            raise Refused(f"this repo already uses the {old} layout; nothing to do")
        if git("status", "--porcelain"):
            raise Refused(
                "commit or stash your changes first: the switch runs copier update, which needs "
                "a clean tree, and goes back to your last commit if anything fails"
            )
        start = git("rev-parse", "HEAD").strip()
    except (Refused, Failed, copier_answers.Refused) as refusal:
        print(f"switch-layout: {refusal}. Nothing was changed.", file=sys.stderr)
        return 2
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    scratch: Path | None = None
    try:
        # Copier and uv runs inherit TMPDIR: whatever a stopped run leaves goes with the folder.
        scratch = Path(tempfile.mkdtemp(prefix="switch-layout."))
        os.environ["TMPDIR"] = tempfile.tempdir = str(scratch)
        switch(args.layout, old, copier)
        git("reset", "--soft", start)
        git("commit", "--quiet", "--message", f"Switch to the {args.layout} workspace layout")
    except (Failed, copier_answers.Refused, KeyboardInterrupt, Stopped) as failure:
        ignore_stop_signals()
        # Back to exactly the commit the command started from: tracked files reset, files it
        # created removed (ignored ones, such as .venv folders, are left alone).
        restore = [["git", "reset", "--quiet", "--hard", start], ["git", "clean", "--quiet", "-fd"]]
        problems = []
        for cmd in restore:
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                problems.append(done.stderr.strip())
        reason = "stopped by Ctrl-C" if isinstance(failure, KeyboardInterrupt) else failure
        if problems:
            # Say so rather than claim a restore: a git killed mid-command can leave a lock.
            print(
                f"\nswitch-layout: {reason}\nRestoring the repo failed: {' '.join(problems)}\n"
                f"Once no git command is running, remove .git/index.lock if it is there and run "
                f"`git reset --hard {start[:12]} && git clean -fd`.",
                file=sys.stderr,
            )
        else:
            print(
                f"\nswitch-layout: {reason}\n"
                f"The repo is back at {start[:12]}, as before the command.",
                file=sys.stderr,
            )
        if isinstance(failure, Stopped):
            return 128 + failure.signum
        return 130 if isinstance(failure, KeyboardInterrupt) else 1
    finally:
        ignore_stop_signals()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    commit = git("rev-parse", "--short", "HEAD").strip()
    print(f"switch-layout: now in the {args.layout} layout, committed as one commit ({commit}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
