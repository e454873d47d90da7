"""``pallet plugins new storage|volume|network NAME [DIR]``: a complete vendor distribution to start from.

What it writes needs nothing of pallet's source tree: a ``pyproject.toml`` declaring the entry
point, the driver module with every method of its base class written out and documented (a small
working implementation, so the distribution passes its conformance kit as generated), a test
module running that kit, and a README. The templates are in :mod:`pallet.kernel.scaffold.templates`.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from pallet.kernel.errors import Conflict, UsageError

KINDS = ("storage", "volume", "network")
_NAME = re.compile(r"[a-z][a-z0-9]{1,19}")


def check_name(name: str) -> str:
    """Driver names become entry-point names, module names and link-name prefixes: short lowercase words."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise UsageError(f'invalid driver name "{name}" (want 2 to 20 lowercase letters and digits, starting with a letter)')
    return name


def files(kind: str, name: str) -> dict[str, str]:
    """``{relative path: text}`` of the distribution for a ``kind`` driver called ``name``."""
    from pallet.kernel import PLUGIN_API
    from pallet.kernel.scaffold import templates

    if kind not in KINDS:
        raise UsageError(f'cannot scaffold a "{kind}" driver (kinds: {", ".join(KINDS)})')
    package = f"pallet_{name}"
    major = int(PLUGIN_API.split(".")[0])
    values = {
        "name": name, "kind": kind, "package": package, "Class": name.capitalize() + templates.CLASS_SUFFIX[kind],
        "group": templates.GROUP[kind], "api": PLUGIN_API, "api_range": f">={major}.0,<{major + 1}",
        "prefix": name[:2],
    }
    fill = lambda text: Template(text).substitute(values)  # noqa: E731 - one line, used four times
    return {
        "pyproject.toml": fill(templates.PYPROJECT),
        "README.md": fill(templates.README[kind]),
        f"src/{package}/__init__.py": fill(templates.INIT),
        f"src/{package}/driver.py": fill(templates.DRIVER[kind]),
        "tests/test_conformance.py": fill(templates.TEST[kind]),
    }


def scaffold(kind: str, name: str, directory: Path) -> list[Path]:
    """Write the distribution into ``directory`` (made; it must not exist or be empty); return the files."""
    check_name(name)
    contents = files(kind, name)
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise Conflict(f"{directory} already exists and is not empty")
    written = []
    for rel, text in contents.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
