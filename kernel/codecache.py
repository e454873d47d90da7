"""Compiled code for the methods ``dataclasses`` generates, kept between runs as ``.pyc`` files keep modules'.

``@dataclass`` writes ``__init__``, ``__repr__``, ``__eq__`` (and more) of each class as source text and
compiles it with ``exec`` every time the class is defined: bytecode caching does not cover it. The ~35
dataclasses a ``pallet run`` imports spent ~27 ms of a cold command here in that compiler; with their
code objects loaded from one marshal file, ~6 ms. There is no library for this, and the standard
library offers no hook, so :func:`install` gives the ``dataclasses`` module its own ``exec``: the same
call with the code object compiled from the same text (``"<string>"``, as ``exec`` of a string names
it), found by that text. It depends on nothing of how ``dataclasses`` builds the text, only on its
calling the global name ``exec`` with it (3.8 to 3.13 do); anything else passes through unchanged.

The file lives beside the bytecode of this package (``__pycache__/dataclass-code.<tag>.marshal``, or
under ``sys.pycache_prefix``), tagged with the interpreter's bytecode magic; it is only written when
bytecode is (``PYTHONDONTWRITEBYTECODE`` unset), atomically, and only when a run compiled text the file
lacked. Texts no longer used stay until the file holds more than ``LIMIT``, when a run rewrites it with
only what it compiled. An unreadable or foreign file is ignored and replaced.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys

LIMIT = 2000
_codes: dict[str, object] | None = None
_new: dict[str, object] = {}


def _magic() -> bytes:
    import _frozen_importlib_external

    return _frozen_importlib_external.MAGIC_NUMBER


def path() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    name = f"dataclass-code.{sys.implementation.cache_tag}.marshal"
    if sys.pycache_prefix:
        return os.path.join(sys.pycache_prefix, here.lstrip(os.sep), name)
    return os.path.join(here, "__pycache__", name)


def _load() -> dict[str, object]:
    try:
        with open(path(), "rb") as handle:
            data = handle.read()
        magic = _magic()
        if data[: len(magic)] == magic:
            codes = marshal.loads(data[len(magic):])
            if isinstance(codes, dict):
                return codes
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return {}


def cached_exec(source, globals=None, locals=None, /):  # noqa: A002 (exec's own parameter names)
    if type(source) is str and _codes is not None:
        code = _codes.get(source)
        if code is None:
            code = _new[source] = _codes[source] = compile(source, "<string>", "exec")
        source = code
    return builtins.exec(source, globals, locals)


def install() -> None:
    """From now on, classes that ``@dataclass`` makes take their methods' code from the cache."""
    global _codes
    if _codes is not None or sys.implementation.name != "cpython":
        return
    import atexit
    import dataclasses

    _codes = _load()
    dataclasses.exec = cached_exec
    atexit.register(save)


def save() -> None:
    """Write the file if this run compiled text it lacked (and bytecode may be written)."""
    if not _new or sys.dont_write_bytecode or _codes is None:
        return
    codes = _codes if len(_codes) <= LIMIT else dict(_new)
    target = path()
    temp = f"{target}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(temp, "wb") as handle:
            handle.write(_magic() + marshal.dumps(codes))
        os.replace(temp, target)
        _new.clear()
    except (OSError, ValueError):
        try:
            os.unlink(temp)
        except OSError:
            pass
