# /// script
# requires-python = ">=3.11"
# dependencies = ["pyyaml==6.0.3"]
# ///
"""Pull template improvements in with Copier, stop cleanly on conflicts, refresh the locks.

    make update                  uv run scripts/update.py root [-d key=value ...]
    make update-package NAME=x   uv run scripts/update.py package x
    make update-packages         uv run scripts/update.py packages   (one commit per package)

The root (`.copier-answers.yml`) and each package added with `make new-package`
(`.copier/package-<name>.yml`) are updated on their own. After Copier runs, every file is
searched for conflict markers before anything parses one: a conflict is listed (file and
line, once each) and the command stops with what to do next, before `make lock`. The check
is here, not in a sub-make, because the Makefile itself may be the conflicted file.

For .github/workflows/template-update.yml:

    uv run scripts/update.py check            is a newer template out? (GitHub output `outdated`)
    uv run scripts/update.py branch --body F  update everything, one commit each, conflicts kept
                                              as markers; F gets the pull request's description
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import answers as copier_answers
import check_conflicts
import lock
import monorepo

ROOT = monorepo.ROOT
ROOT_ANSWERS = ".copier-answers.yml"


class Stop(Exception):
    """The command cannot go on; the message says why and what to do."""


def package_answers() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".copier").glob("package-*.yml"))


def run_copier(copier: list[str], answers: str, data: list[str]) -> None:
    # Refuse a template source Copier cannot find from here, with the fix, before it runs.
    copier_answers.answer(ROOT / answers, "_src_path")
    cmd = [*copier, "update", "--trust", "--defaults", "--answers-file", answers, *data]
    print(f"+ {shlex.join(cmd)}", flush=True)
    # `uv run` gives this script its own environment; Copier's tasks must not inherit it.
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    if subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode != 0:
        raise Stop(f"copier update of {answers} failed (Copier's message is above)")


def stop_on_conflicts(answers: str, again: str = "") -> None:
    problems = check_conflicts.problems()
    if not problems:
        return
    listed = "\n  ".join(problems)
    message = (
        f"copier update of {answers} left conflicts with your edits:\n  {listed}\n"
        "The lock files were not refreshed. Next: resolve each conflict (keep what both sides "
        "need), `git add` the files, run `make lock` and commit"
    )
    message += f"; then run `{again}` again for the rest." if again else "."
    if any(line.startswith("Makefile:") for line in problems):
        message += "\n`make` cannot read the Makefile until its conflicts are resolved."
    raise Stop(message)


def relock() -> None:
    print("+ make lock", flush=True)
    if lock.main() != 0:
        raise Stop("`make lock` failed (its message is above); fix that, then run `make lock`")


def commit(message: str) -> None:
    """Commit everything, if anything changed (your git hooks run as for any commit)."""
    subprocess.run(["git", "add", "--all"], cwd=ROOT, check=False)
    staged = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=ROOT, check=False)
    if staged.returncode == 0:
        return
    done = subprocess.run(["git", "commit", "--quiet", "--message", message], cwd=ROOT, check=False)
    if done.returncode != 0:
        raise Stop(f"git commit of {message!r} failed (git's message is above); commit by hand")


def update_root(copier: list[str], data: list[str]) -> None:
    run_copier(copier, ROOT_ANSWERS, data)
    stop_on_conflicts(ROOT_ANSWERS)
    relock()


def update_package(copier: list[str], name: str) -> None:
    answers = f".copier/package-{name}.yml"
    if not name or not (ROOT / answers).is_file():
        known = ", ".join(Path(a).stem.removeprefix("package-") for a in package_answers())
        raise Stop(
            f"usage: make update-package NAME=<name>, one of the packages added with "
            f"`make new-package`: {known or 'none yet'}"
        )
    run_copier(copier, answers, [])
    stop_on_conflicts(answers)
    relock()


def update_packages(copier: list[str]) -> None:
    # Copier updates only a clean tree: each package's update is committed before the next.
    for answers in package_answers():
        run_copier(copier, answers, [])
        stop_on_conflicts(answers, again="make update-packages")
        relock()
        commit(f"Update {answers} from the template")


def versions() -> dict[str, str]:
    """Answers file -> the template version it records."""
    files = [ROOT_ANSWERS, *package_answers()]
    return {f: copier_answers.answer(ROOT / f, "_commit") for f in files}


def update_branch(copier: list[str], body: Path) -> None:
    """Every answers file updated and committed in turn, conflicts committed as markers, and
    a pull request description listing them."""
    before = versions()
    for answers in before:
        run_copier(copier, answers, [])
        conflicted = bool(check_conflicts.problems())
        commit(f"Update {answers} from the template" + (" (conflicts)" if conflicted else ""))
    problems = check_conflicts.problems()
    if not problems:
        relock()
        commit("Refresh the lock files")
    after = versions()
    lines = ["Template update, made by `.github/workflows/template-update.yml`:", ""]
    lines += [f"- `{f}`: {before[f]} -> {after.get(f, '?')}" for f in before]
    if problems:
        lines += [
            "",
            "### Conflicts to resolve",
            "",
            "Copier met this repo's edits on the same lines; the markers are committed here:",
            "",
            *(f"- `{line}`" for line in problems),
            "",
            "Check out this branch, resolve each conflict, `git add` the files, run `make lock`, "
            "commit and push. The lock files are not refreshed until then.",
        ]
    else:
        lines += ["", "No conflicts; the lock files are refreshed (`make lock`)."]
    lines += [
        "",
        "What changed for generated repos: the template's CHANGELOG.md. This branch is rebuilt "
        "from the default branch on every run: merge it (or close it) before the next one.",
    ]
    body.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def check(copier: list[str]) -> None:
    """Report whether a newer template release is out, for the workflow's summary and output.

    A source recorded as a local folder that this machine does not have is reported with
    the fix (a git URL) and counts as current: the run succeeds.
    """
    outdated, summary = [], []
    for answers in [ROOT_ANSWERS, *package_answers()]:
        source = copier_answers.answer(ROOT / answers, "_src_path")
        if not copier_answers.GIT_URL.match(source) and not Path(source).expanduser().is_dir():
            note = (
                f"{answers} records the template source {source}, a folder this runner does "
                f"not have. To get template updates as pull requests, set `_src_path:` in "
                f"{answers} to the template's git URL (for example `_src_path: "
                f"https://github.com/<owner>/copier-uv-monorepo.git`) and commit it."
            )
            print(f"::notice title=Template source not reachable::{note}")
            summary.append(note)
            continue
        cmd = [*copier, "check-update", "--quiet", "--answers-file", answers]
        print(f"+ {shlex.join(cmd)}", flush=True)
        status = subprocess.run(cmd, cwd=ROOT, check=False).returncode
        if status == 2:
            outdated.append(answers)
        elif status != 0:
            raise Stop(f"copier check-update of {answers} failed (Copier's message is above)")
    if outdated:
        summary.append(
            f"A newer template version is out for: {', '.join(outdated)}. This run updates "
            "the `template-update` branch and its pull request."
        )
    elif not summary:
        summary.append("The template is up to date.")
    print("\n".join(summary))
    github_file("GITHUB_STEP_SUMMARY", "\n\n".join(summary) + "\n")
    github_file("GITHUB_OUTPUT", f"outdated={'true' if outdated else 'false'}\n")


def github_file(variable: str, text: str) -> None:
    """Append to a file GitHub Actions reads (the step summary, the step's outputs)."""
    path = os.environ.get(variable)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--copier", default="copier", help="the Copier command (make passes its pin)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("root", help="make update; Copier options may follow, e.g. -d key=value")
    package = sub.add_parser("package", help="make update-package")
    package.add_argument("name", nargs="?", default="")
    sub.add_parser("packages", help="make update-packages")
    sub.add_parser("check", help="is a newer template out?")
    sub.add_parser("branch", help="update everything for a pull request").add_argument(
        "--body", type=Path, required=True, help="where to write the pull request's description"
    )
    # The root's update passes what it does not know to Copier (make update DATA="-d k=v").
    args, data = parser.parse_known_args(argv)
    if data and args.command != "root":
        parser.error(f"unrecognized arguments: {' '.join(data)}")
    copier = shlex.split(args.copier)
    try:
        if args.command == "root":
            update_root(copier, data)
        elif args.command == "package":
            update_package(copier, args.name)
        elif args.command == "packages":
            update_packages(copier)
        elif args.command == "check":
            check(copier)
        else:
            update_branch(copier, args.body)
    except (Stop, copier_answers.Refused) as stop:
        print(f"\nupdate: {stop}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nupdate: interrupted; `git status` shows what changed so far", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
