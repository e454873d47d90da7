"""The seams, checked on the source: the kernel imports no plugin, no import circle, one syscall module.

These read the code with ``ast`` (and a grep for FFI handles) instead of importing it, so they
see every import, also those inside functions that a test run may never reach.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

# Source folder -> the import name it is installed as (pallet/ holds the vendor re-exports).
TREES = {"kernel": "pallet.kernel", "plugins": "pallet.plugins", "pallet": "pallet"}
SYSCALL_MODULE = "pallet.kernel.linux"
GENERATED = {"pallet.kernel._ffi"}  # cffi's pre-parsed declarations, written by ffi_build


def project_modules() -> dict[str, Path]:
    """Every module of the project by import name; pallet/kernel and pallet/plugins are symlinks, skipped."""
    found = {}
    for folder, prefix in TREES.items():
        base = REPO / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if folder == "pallet" and parts[0] in ("kernel", "plugins"):
                continue
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([prefix, *parts])] = path
    return found


MODULES = project_modules()


def _nearest_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(node, parents) -> bool:
    """Inside ``if TYPE_CHECKING:``: never executed, so not an import at run time."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str) -> dict[str, int]:
    """Project modules ``name`` imports, anywhere in its body (functions too) -> first line number.

    ``from a import b`` counts as importing the module ``a.b`` when there is one, else ``a``.
    Importing ``a.b`` is not counted as importing the package ``a`` as well: a package's
    ``__init__`` importing its own submodules would otherwise make every package a circle.
    """
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [_nearest_module(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in MODULES else _nearest_module(base))
        for target in targets:
            if target and target != name and not _type_checking_only(node, parents):
                found.setdefault(target, node.lineno)
    return found


def raw_imports(path: Path) -> list[tuple[int, str]]:
    """Every imported dotted name in ``path`` (absolute form), with its line."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def test_the_kernel_imports_no_plugin():
    offenders = []
    for path in sorted((REPO / "kernel").rglob("*.py")):
        for line, imported in raw_imports(path):
            if imported == "pallet.plugins" or imported.startswith(("pallet.plugins.", "plugins.")):
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {imported}")
    assert not offenders, "the kernel must reach plugins through hooks or base classes:\n" + "\n".join(offenders)


def test_the_checks_see_the_project():
    """Guard the two tests below against vacuous passes: they must find the modules and their imports."""
    assert {"pallet.kernel.engine", "pallet.plugins.runtime.builtin.launch", "pallet.drivers"} <= set(MODULES)
    assert "pallet.kernel.linux" in imports_of("pallet.plugins.runtime.builtin.launch")
    assert "pallet.kernel.plugins" in imports_of("pallet.kernel.engine")  # an import inside a method


def _circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        circles.append(sorted(component))
    return circles


def test_no_import_circle_among_the_projects_modules():
    """Imports inside functions count: a lazy import still ties two modules into one unit of change."""
    graph = {name: imports_of(name) for name in MODULES}
    circles = _circles(graph)
    described = []
    for members in circles:
        edges = [f"{a} -> {b} (line {graph[a][b]})" for a in members for b in graph[a] if b in members]
        described.append("; ".join(edges))
    assert not circles, "import circles:\n" + "\n".join(described)


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _circles(graph) == [["a", "b", "c"]]


FFI_HANDLE = re.compile(r"\bimport ctypes\b|\bctypes\.(?:CDLL|PyDLL|cdll|pythonapi)\b|\bdlopen\b|\bfrom cffi\b|"
                        r"\bimport cffi\b")
SYSCALL_NUMBER = re.compile(r"\bsyscall\(\s*\d|\b_?(?:SYS|NR)_[A-Za-z_]+\s*=\s*\d")


def test_only_the_syscall_module_loads_libraries_or_numbers_syscalls():
    offenders = []
    for name, path in MODULES.items():
        if name in (SYSCALL_MODULE, *GENERATED) or name == "pallet.kernel.ffi_build":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if FFI_HANDLE.search(code) or SYSCALL_NUMBER.search(code):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, f"libc/libseccomp handles and syscall numbers belong in {SYSCALL_MODULE}:\n" + \
        "\n".join(offenders)


def test_the_syscall_module_is_where_the_handles_are():
    source = MODULES[SYSCALL_MODULE].read_text()
    assert "ffi.dlopen(None)" in source and 'ffi.dlopen("libseccomp.so.2")' in source
    assert '"landlock_create_ruleset": 444' in source
