"""requirements-lock.txt: the exact tested set, generated from pyproject.toml (`make lock`).

`python tools/lock.py` runs pip-compile (every extra, with hashes) and stamps the lock with the
SHA-256 of pyproject's dependency declarations. `python tools/lock.py --check` (run by
`make test`) fails, offline, when the lock is stale: the stamp differs from pyproject.toml, or a
declared package is not pinned, or its pin no longer satisfies the declared bounds.
`python tools/lock.py --install` (run by `make setup` with the venv's python) installs the lock
with uv, then the project in editable mode. Standard library only, but for `--check`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
LOCK = REPO / "requirements-lock.txt"
STAMP = "# pyproject-sha256: "
PIP_COMPILE = [
    "pip-compile",
    "--quiet",
    "--all-extras",  # one lock for the whole project: runtime, [remote] and [dev]
    "--generate-hashes",
    "--allow-unsafe",  # pin setuptools (aim needs <82) and pip too
    "--strip-extras",
    "--no-emit-index-url",  # a machine's pip.conf indexes stay out of the lock
    "--no-emit-find-links",
]


def declared(pyproject: Path = PYPROJECT) -> dict:
    """What the lock is generated from: requires-python, dependencies and every extra."""
    import tomllib  # Python 3.11+, the lock's Python

    project = tomllib.loads(pyproject.read_text())["project"]
    return {
        "requires-python": project.get("requires-python", ""),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }


def digest(pyproject: Path = PYPROJECT) -> str:
    """SHA-256 of `declared` (comments and formatting of pyproject.toml do not count)."""
    return hashlib.sha256(json.dumps(declared(pyproject), sort_keys=True).encode()).hexdigest()


def pins(lock_text: str) -> dict[str, str]:
    """`name==version` lines of a lock -> {normalized name: version}."""
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", lock_text, re.MULTILINE)
    return {_normalize(name): version for name, version in found}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def stale_stamp(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> str | None:
    """Why `lock` was not generated from this `pyproject` (None when it was); standard library."""
    if not lock.is_file():
        return f"{lock.name} is missing: run `make lock`"
    stamp = re.search(rf"^{re.escape(STAMP)}(\w+)", lock.read_text(), re.MULTILINE)
    if stamp is None or stamp.group(1) != digest(pyproject):
        return f"{lock.name} was not generated from this {pyproject.name}: run `make lock`"
    return None


def problems(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> list[str]:
    """Why `lock` is not the lock of `pyproject` (empty when it is)."""
    from packaging.requirements import Requirement

    stale = stale_stamp(pyproject, lock)
    if not lock.is_file():
        return [stale]
    found = [stale] if stale else []
    pinned = pins(lock.read_text())
    spec = declared(pyproject)
    extras = spec["optional-dependencies"].values()
    for line in [*spec["dependencies"], *(r for group in extras for r in group)]:
        req = Requirement(line)
        version = pinned.get(_normalize(req.name))
        if version is None:
            found.append(f"{lock.name}: {req.name} (declared in {pyproject.name}) is not pinned")
        elif not req.specifier.contains(version, prereleases=True):
            found.append(f"{lock.name}: {req.name}=={version} does not satisfy {req}")
    return found


def stamp_lock(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> None:
    """Put the digest of `pyproject` on the first line of `lock` (replacing an older stamp)."""
    lines = [ln for ln in lock.read_text().splitlines() if not ln.startswith(STAMP)]
    lock.write_text("\n".join([STAMP + digest(pyproject), *lines]) + "\n")


def pip_index_options() -> list[str]:
    """The package sources pip is configured with (pip.conf, PIP_* variables) as uv options.

    uv does not read pip's configuration, so a machine whose pip uses a local mirror or a company
    index would send uv to PyPI (here: a 3 GB CUDA torch download instead of a local file).
    `unsafe-best-match` lets uv take a pinned version from any of them; every file must still
    match one of the lock's hashes.
    """
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    index_url, sources = [], []
    for key, value in re.findall(r"^[^.\s]*\.([a-z-]+)='(.*)'$", listed, re.MULTILINE):
        if key == "index-url":
            index_url = ["--index-url", value]  # the last one listed (PIP_INDEX_URL) wins
        elif key in ("extra-index-url", "find-links"):
            sources += [(f"--{key}", v) for v in value.split() if (f"--{key}", v) not in sources]
    options = [*index_url, *(x for pair in sources for x in pair)]
    return [*options, "--index-strategy", "unsafe-best-match"] if sources else options


def install(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> None:
    """Install `lock` into this interpreter's environment with uv, then the project (editable)."""
    stale = stale_stamp(pyproject, lock)
    if stale:  # installing it would leave pyproject's new requirements out
        raise SystemExit(f"error: {stale}")
    text = lock.read_text()
    uv_entry = re.search(r"^uv==.*?(?=^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    if uv_entry is None:
        raise SystemExit(f"error: {lock.name} pins no uv: run `make lock`")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
        req.write(uv_entry.group(0))
        req.flush()  # uv itself comes from pip, checked against the lock's hashes
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--require-hashes"]
        subprocess.run([*pip, "-r", req.name], check=True)
    uv = [str(Path(sys.executable).parent / "uv"), "pip"]
    target = ["--python", sys.executable]
    # Every package is pinned: nothing to resolve (--no-deps); `uv pip check` proves it complete.
    # --compile-bytecode: uv writes no .pyc files (pip does). Without them every process compiles
    # torch & co. again where .pyc files cannot be written (PYTHONDONTWRITEBYTECODE, read-only
    # venv): `import torch, torchvision, pytorch_lightning` took 18 s instead of 8 s here.
    subprocess.run(
        [
            *uv,
            "install",
            "-q",
            *target,
            "--no-deps",
            "--compile-bytecode",
            "-r",
            str(lock),
            *pip_index_options(),
        ],
        check=True,
    )
    # The editable install builds with the locked setuptools instead of downloading one.
    subprocess.run(
        [
            *uv,
            "install",
            "-q",
            *target,
            "--no-deps",
            "--no-build-isolation",
            "-e",
            str(pyproject.parent),
        ],
        check=True,
    )
    subprocess.run([*uv, "check", *target], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="only check that the lock is current")
    action.add_argument(
        "--install", action="store_true", help="install the lock and the project (editable)"
    )
    # Other options go to pip-compile, e.g. `--upgrade-package torchmetrics`.
    args, pip_compile_args = parser.parse_known_args(argv)
    if args.check:
        found = problems()
        for line in found:
            print(f"error: {line}", file=sys.stderr)
        return 1 if found else 0
    if args.install:
        install()
        return 0
    cmd = [*PIP_COMPILE, *pip_compile_args, f"--output-file={LOCK.name}", PYPROJECT.name]
    env = {**os.environ, "CUSTOM_COMPILE_COMMAND": "make lock"}  # the header's command
    subprocess.run(cmd, check=True, cwd=REPO, env=env)
    stamp_lock()
    return 0


if __name__ == "__main__":
    sys.exit(main())
