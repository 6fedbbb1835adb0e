"""The in-repo code a script runs: the transitive closure of its imports, read statically.

One answer serves two places: `tests/test_dag.py` checks that every DVC stage's `deps` are exactly
the code its command imports, and a training run's fingerprint (`fashionfail.models.train`)
includes that code's digest, so a run killed before a code change is not resumed after it.

Every `import` / `from ... import` statement counts, also inside functions (lazy imports run in
some configurations), except those under `if TYPE_CHECKING:` (never run). A module is in-repo when
its top-level package (or module) lies under `root`. Importing `a.b.c` runs `a/__init__.py` and
`a/b/__init__.py` too, so they are part of the closure.

No imports from the package itself: it is read by the training's fingerprint and by tests alike.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path


def module_file(name: str, root: Path) -> Path | None:
    """The file of module `name` under `root` (a module file or a package's __init__.py)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement, nested ones included, except under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_names(path: Path, root: Path) -> set[str]:
    """Fully qualified names of the modules (or module attributes) `path` imports."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_package = path.name == "__init__.py"
    here = _module_name(path, root).split(".") if path.is_relative_to(root) else []
    names: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative import: resolved against this module's package
            package = here if is_package else here[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _files_of(name: str, root: Path) -> list[Path]:
    """The in-repo files that importing `name` runs: each package on the way and the module."""
    parts = name.split(".")
    files = []
    for i in range(1, len(parts) + 1):
        found = module_file(".".join(parts[:i]), root)
        if found is None:
            break  # not in the repo, or an attribute (`from a import function`)
        files.append(found)
    return files


def closure(entries: Iterable[Path], root: Path) -> set[Path]:
    """The in-repo .py files the entry scripts run, transitively (entries included)."""
    root = root.resolve()
    todo = [Path(e).resolve() for e in entries]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path, root):
            todo.extend(f for f in _files_of(name, root) if f not in seen)
    return seen


def digest(files: Iterable[Path], root: Path) -> str:
    """sha256 over the files' paths (relative to `root`) and contents, in path order."""
    h = hashlib.sha256()
    for path in sorted(Path(f).resolve() for f in files):
        h.update(str(path.relative_to(root.resolve())).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def module_code_digest(module_file_path: Path) -> str:
    """Digest of a package module's code closure; `root` is the folder holding the package."""
    path = Path(module_file_path).resolve()
    root = path.parent
    while (root / "__init__.py").is_file():
        root = root.parent
    return digest(closure([path], root), root)
