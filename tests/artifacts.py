"""Read what a built artifact really holds: ELF machines, wheel tags, bytecode headers.

The container tests use these on a Lambda image's /var/task or an extracted venv tarball to
show that an artifact built on this x86_64 machine is made for its target, not for the
builder. Nothing here runs the artifact.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

# e_machine values of the ELF header (offset 18, little-endian on both targets).
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
# The legacy manylinux names and the glibc they stand for.
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
# Flags word of a .pyc header (PEP 552): 0 timestamp, 1 unchecked hash, 3 checked hash.
PYC_KINDS = {0: "timestamp", 1: "unchecked-hash", 3: "checked-hash"}


def elf_machine(path: Path) -> str | None:
    """The machine an ELF file is built for ('aarch64', 'x86_64', ...); None if not ELF."""
    with path.open("rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF" or len(header) < 20:
        return None
    (machine,) = struct.unpack_from("<H", header, 18)
    return ELF_MACHINES.get(machine, f"e_machine {machine}")


def elf_machines(root: Path) -> dict[Path, str]:
    """Every ELF file under root (symlinks not followed) and the machine it is built for."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and (machine := elf_machine(path)):
            found[path] = machine
    return found


def wheel_tags(root: Path) -> dict[str, list[str]]:
    """The tags each installed distribution's WHEEL file records, by dist-info folder name."""
    return {
        wheel.parent.name: [
            line.split(":", 1)[1].strip()
            for line in wheel.read_text().splitlines()
            if line.startswith("Tag:")
        ]
        for wheel in root.glob("*.dist-info/WHEEL")
    }


def platform_problem(tag: str, machine: str, max_glibc: tuple[int, int]) -> str:
    """Why a wheel tag's platform cannot run on `machine` with glibc `max_glibc` ("" if it can)."""
    platform = tag.rsplit("-", 1)[-1]
    if platform == "any":
        return ""
    for legacy, glibc in LEGACY_MANYLINUX.items():
        if platform.startswith(f"{legacy}_"):
            arch = platform.removeprefix(f"{legacy}_")
            break
    else:
        match = MANYLINUX_RE.match(platform)
        if not match:
            return f"{tag}: not a manylinux wheel"
        glibc, arch = (int(match[1]), int(match[2])), match[3]
    if arch != machine:
        return f"{tag}: built for {arch}, not {machine}"
    if glibc > max_glibc:
        return f"{tag}: needs glibc {glibc[0]}.{glibc[1]}, the runtime has {max_glibc[0]}.{max_glibc[1]}"
    return ""


def wheel_problems(root: Path, machine: str, max_glibc: tuple[int, int]) -> list[str]:
    """Every installed wheel that records no tag the target runtime accepts."""
    problems = []
    for dist, tags in wheel_tags(root).items():
        reasons = [platform_problem(tag, machine, max_glibc) for tag in tags]
        if not tags or all(reasons):
            problems.append(f"{dist}: {'; '.join(reasons) or 'no Tag in WHEEL'}")
    return problems


def pyc_kinds(folder: Path) -> dict[str, str]:
    """Bytecode files under folder and how each is invalidated."""
    kinds = {}
    for pyc in folder.rglob("*.pyc"):
        (flags,) = struct.unpack_from("<I", pyc.read_bytes(), 4)
        kinds[pyc.name] = PYC_KINDS.get(flags, f"flags {flags}")
    return kinds
