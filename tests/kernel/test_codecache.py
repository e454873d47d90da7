"""kernel/codecache.py: the code of dataclasses' generated methods, kept between runs."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

PROBE = """
import sys
from pallet.kernel import codecache
codecache.install()
from dataclasses import dataclass, field

@dataclass
class Point:
    x: int
    y: int = 2
    tags: list = field(default_factory=list)

from pallet.kernel import containers   # pallet's own records
p = Point(1)
print(p == Point(1, 2, []), repr(p), Point.__init__.__code__.co_filename, len(codecache._new) > 0)
try:
    Point()
except TypeError as exc:
    print(exc)
"""


def _probe(tmp_path, **env):
    environ = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "prefix"), **env}
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=str(REPO),
                         env=environ, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _cache_file(tmp_path):
    found = list((tmp_path / "prefix").rglob("dataclass-code.*.marshal"))
    return found[0] if found else None


def test_generated_methods_are_compiled_once_then_loaded_and_behave_the_same(tmp_path):
    first = _probe(tmp_path)
    assert first == ["True Point(x=1, y=2, tags=[]) <string> True",
                     "Point.__init__() missing 1 required positional argument: 'x'"]
    cache = _cache_file(tmp_path)
    assert cache is not None and cache.stat().st_size > 1000
    before = cache.stat().st_mtime_ns
    second = _probe(tmp_path)   # everything found: nothing compiled, the file not written again
    assert second == ["True Point(x=1, y=2, tags=[]) <string> False", first[1]]
    assert cache.stat().st_mtime_ns == before


def test_a_damaged_cache_is_ignored_and_replaced_and_none_is_written_without_bytecode(tmp_path):
    _probe(tmp_path)
    cache = _cache_file(tmp_path)
    cache.write_bytes(b"not a marshal file")
    assert _probe(tmp_path)[0].endswith("<string> True")   # compiled again
    assert cache.read_bytes() != b"not a marshal file"
    assert _probe(tmp_path)[0].endswith("<string> False")
    other = tmp_path / "other"
    assert _probe(other, PYTHONDONTWRITEBYTECODE="1")[0].endswith("<string> True")
    assert _cache_file(other) is None
