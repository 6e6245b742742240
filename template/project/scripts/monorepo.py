"""What the CI scripts know about this repository: its layout, packages and their graph.

Standard library only, so CI can run the scripts before anything is installed. The
package list comes from the filesystem (every ``src/*/pyproject.toml``) and the graph from
what uv reads (the workspace's lockfile; each independent package's path sources), so adding
a package never needs an edit here or in a workflow.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the scripts declare requires-python >= 3.11
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        sys.exit("scripts/ need Python >= 3.11 (tomllib): run them with `uv run scripts/<name>.py`")

ROOT = Path(__file__).resolve().parent.parent

# Paths (files, or folders ending in "/") whose change can alter every package's build or
# test run: the workspace definition, the shared lock, the interpreter and uv pins, the images
# and the CI itself.
GLOBAL_PATHS = (
    "pyproject.toml",
    "uv.lock",
    ".python-version",
    ".github/uv/",
    ".dockerignore",
    "docker/",
    ".github/workflows/",
    "scripts/",
)

# Scripts CD runs with `uv run --locked` while it holds AWS access: each has its own lock
# (`<script>.lock`), made by `make lock` and checked by `make lock-check`, when the repo has it.
LOCKED_SCRIPTS = ("scripts/upload_all.py", "scripts/deploy_release.py")


# AWS names of the deployed packages (infra/ makes them, CD's deploy updates them): one rule.
# `<project>` is the repo's slug, recorded once as CDK context in infra/cdk.json.
FOUNDATION = "foundation"


def stack_name(project: str, package: str) -> str:
    """The CloudFormation stack of a deployable package (or of FOUNDATION): `my-repo-nt-api`.

    Also the Lambda function's name and the ECS task definition's family.
    """
    return f"{project}-{package.replace('_', '-')}"


def runtime_repository(project: str) -> str:
    """The ECR repository of the ECS runtime image, before the ECR_REPOSITORY_PREFIX."""
    return f"{project}-runtime"


class InvalidToml(SystemExit):
    """A TOML file that does not parse (say, conflict markers left by an update).

    A SystemExit, so any script reading the file stops with this one line, not a traceback;
    callers that can say more catch it first.
    """

    def __init__(self, path: Path, error: Exception) -> None:
        try:
            name = str(path.resolve().relative_to(ROOT))
        except ValueError:
            name = str(path)
        # tomllib's message ends with the place: "... (at line 12, column 1)".
        super().__init__(f"{name} is not valid TOML: {error}")
        self.path = name


def load_toml(path: Path) -> dict:
    with path.open("rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as error:
            raise InvalidToml(path, error) from None


def normalize(name: str) -> str:
    """PEP 503 name, the form uv.lock uses."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Package:
    dir_name: str  # the folder under src/, which is also the import name
    path: Path
    name: str  # distribution name from pyproject.toml
    version: str
    deploy: str  # "ecs", "lambda" or "library"
    local_deps: set[str] = field(default_factory=set)  # dir_names it depends on


def is_shared(root: Path = ROOT) -> bool:
    """Shared layout: one uv workspace at the root; independent: one project per package."""
    return "workspace" in load_toml(root / "pyproject.toml").get("tool", {}).get("uv", {})


def _deploy_kind(path: Path, dir_name: str, pyproject: dict) -> str:
    # An explicit `[tool.monorepo] deploy = "..."` wins; otherwise the package's shape says
    # it: a Lambda exposes handler.py, an ECS job runs as `python -m <pkg>`.
    explicit = pyproject.get("tool", {}).get("monorepo", {}).get("deploy")
    if explicit:
        return str(explicit)
    module = path / dir_name
    if (module / "handler.py").is_file():
        return "lambda"
    if (module / "__main__.py").is_file():
        return "ecs"
    return "library"


def _lock_edges(lock_path: Path) -> dict[Path, set[Path]]:
    """Local package folder -> local package folders it depends on, as one lockfile says.

    A lock lists each local package with a source such as ``{ editable = "src/x" }``
    (workspace member) or ``{ directory = "../x" }`` (path dependency), relative to the
    lock's folder, and its dependencies (runtime, extras and groups) by name.
    """
    lock = load_toml(lock_path)
    base = lock_path.parent
    local: dict[str, Path] = {}
    for pkg in lock.get("package", []):
        source = pkg.get("source", {})
        for kind in ("editable", "virtual", "directory", "path"):
            if kind in source:
                local[pkg["name"]] = (base / source[kind]).resolve()
    edges: dict[Path, set[Path]] = {}
    for pkg in lock.get("package", []):
        if pkg["name"] not in local:
            continue
        deps = list(pkg.get("dependencies", []))
        for table in ("optional-dependencies", "dev-dependencies"):
            for group in pkg.get(table, {}).values():
                deps.extend(group)
        targets = {local[d["name"]] for d in deps if d["name"] in local}
        edges.setdefault(local[pkg["name"]], set()).update(targets)
    return edges


def requirement_name(requirement: str) -> str:
    """The normalized distribution name a PEP 508 requirement string names."""
    return normalize(re.split(r"[<>=!~;\[(@ ]", requirement.strip(), maxsplit=1)[0])


def declared_requirements(project: dict, extras: bool = True) -> list[str]:
    """The requirement strings a pyproject.toml declares: runtime dependencies, its extras'
    (unless `extras` is false) and its dependency groups' (not `{include-group}` tables)."""
    meta = project.get("project", {})
    requirements = list(meta.get("dependencies", []))
    if extras:
        for group in meta.get("optional-dependencies", {}).values():
            requirements.extend(group)
    for group in project.get("dependency-groups", {}).values():
        requirements.extend(r for r in group if isinstance(r, str))
    return requirements


def _source_edges(folder: Path, project: dict) -> set[Path]:
    """Independent layout: the local package folders a package depends on, as uv reads them.

    A local dependency is a requirement (runtime, extra or dependency group) whose
    ``[tool.uv.sources]`` entry is a ``path``. Reading the small pyproject.toml instead of the
    package's own uv.lock keeps `affected.py` fast with many packages; `lock-check` holds the
    locks to the same declarations.
    """
    names = {requirement_name(r) for r in declared_requirements(project)}
    sources = project.get("tool", {}).get("uv", {}).get("sources", {})
    return {
        (folder / source["path"]).resolve()
        for name, source in sources.items()
        if normalize(name) in names and isinstance(source, dict) and "path" in source
    }


def discover(root: Path = ROOT) -> dict[str, Package]:
    """Every package under src/, keyed by folder name, with its local dependencies."""
    packages: dict[str, Package] = {}
    projects: dict[Path, dict] = {}
    for pyproject_path in sorted((root / "src").glob("*/pyproject.toml")):
        path = pyproject_path.parent
        project = projects[path.resolve()] = load_toml(pyproject_path)
        meta = project.get("project", {})
        packages[path.name] = Package(
            dir_name=path.name,
            path=path,
            name=meta.get("name", path.name),
            version=str(meta.get("version", "0")),
            deploy=_deploy_kind(path, path.name, project),
        )
    by_path = {p.path.resolve(): p for p in packages.values()}
    edges: dict[Path, set[Path]] = {}
    if is_shared(root):
        # The root lock holds the whole workspace.
        if (root / "uv.lock").is_file():
            edges = _lock_edges(root / "uv.lock")
    else:
        edges = {path: _source_edges(path, projects[path]) for path in by_path}
    for source, targets in edges.items():
        if source in by_path:
            by_path[source].local_deps.update(
                by_path[t].dir_name for t in targets if t in by_path and t != source
            )
    return packages


def dependents(packages: dict[str, Package], changed: set[str]) -> set[str]:
    """The changed packages plus every package that depends on one of them, transitively."""
    result = set(changed)
    grew = True
    while grew:
        grew = False
        for pkg in packages.values():
            if pkg.dir_name not in result and pkg.local_deps & result:
                result.add(pkg.dir_name)
                grew = True
    return result
