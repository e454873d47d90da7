"""The build context: a directory (or an unpacked tarball), its ``.dockerignore``, and the files a step uses.

Ignore patterns follow Docker's: Go ``filepath.Match`` syntax per path segment, ``**`` for any
number of segments, ``!`` re-includes, the last matching pattern wins, and a pattern that matches
a directory excludes everything under it. BuildKit's ``NAME.dockerignore`` next to the Dockerfile
takes precedence over the context's ``.dockerignore``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pallet.kernel.errors import PalletError


@dataclass
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern


def _translate(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise PalletError(f'invalid .dockerignore pattern "{pattern}": unterminated [')
            body = pattern[i + 1:end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def parse_ignore(text: str) -> list[Pattern]:
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/") if line else line
        if not line or line == ".":
            continue
        patterns.append(Pattern(line, exclusion, _translate(line)))
    return patterns


class Ignore:
    def __init__(self, patterns: list[Pattern]):
        self.patterns = patterns
        self.has_exclusions = any(p.exclusion for p in patterns)

    def ignored(self, rel: str) -> bool:
        """Whether ``rel`` (slash separated, relative to the context) is excluded."""
        matched = False
        parents = _parents(rel)
        for pattern in self.patterns:
            if pattern.exclusion == matched:
                # only a pattern that could flip the result needs evaluating
                if pattern.regex.match(rel) or any(pattern.regex.match(p) for p in parents):
                    matched = not pattern.exclusion
        return matched

    def skip_dir(self, rel: str) -> bool:
        """A directory whose whole subtree is ignored (no ``!`` pattern can bring a file back)."""
        return not self.has_exclusions and self.ignored(rel)


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


class Context:
    """A context directory; ``owned`` when pallet unpacked it and removes it on ``close``."""

    def __init__(self, root: Path, ignore: Ignore, owned: bool = False, stat_cache: Path | None = None):
        self.root, self.ignore, self.owned = Path(root), ignore, owned
        # File hashes keyed by what stat says (as BuildKit's content cache): a rebuild re-reads only
        # files whose size, mtime, inode or mode changed. Not used for unpacked (temporary) contexts.
        self.stat_cache = None if owned else stat_cache
        self._hashes: dict | None = None
        self._dirty = False

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)
        elif self._dirty and self.stat_cache is not None:
            from pallet.kernel.fsutil import atomic_write

            with contextlib.suppress(OSError):
                atomic_write(self.stat_cache, json.dumps(self._hashes, separators=(",", ":")).encode(), durable=False)

    def _file_hash(self, name: str, path: Path, st: os.stat_result) -> str:
        if self._hashes is None:
            self._hashes = {}
            if self.stat_cache is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._hashes = json.loads(self.stat_cache.read_text())
        stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"
        known = self._hashes.get(name)
        if known and known[0] == stamp:
            return known[1]
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
        self._hashes[name] = [stamp, hasher.hexdigest()]
        self._dirty = True
        return hasher.hexdigest()

    def matches(self, source: str) -> list[str]:
        """Context-relative paths a COPY source names (wildcards expanded), ignored ones left out."""
        if os.path.normpath(source).split("/")[0] == "..":
            raise PalletError(f"forbidden path outside the build context: {source}")
        rel = os.path.normpath(source).lstrip("/")
        if rel in ("", "."):
            return [""]
        if not any(c in rel for c in "*?["):
            path = self.root / rel
            real = os.path.realpath(path)
            if not (real == str(self.root.resolve()) or real.startswith(str(self.root.resolve()) + "/")) \
                    and not path.is_symlink():
                raise PalletError(f"forbidden path outside the build context: {source}")
            if not os.path.lexists(path) or self.ignore.ignored(rel):
                raise PalletError(f'"{source}": not found in the build context')
            return [rel]
        regex = _translate(rel)
        found = []
        depth = rel.count("/") + 1
        for entry in self._walk("", depth):
            if regex.match(entry) and not self.ignore.ignored(entry):
                found.append(entry)
        if not found:
            raise PalletError(f'"{source}": no source files were specified (nothing in the context matches)')
        return sorted(found)

    def _walk(self, rel: str, depth: int):
        base = self.root / rel if rel else self.root
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except NotADirectoryError:
            return
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            yield name
            if depth > 1 and entry.is_dir(follow_symlinks=False):
                yield from self._walk(name, depth - 1)

    def tree(self, rel: str):
        """``(relative path, lstat)`` of ``rel`` and, for a directory, everything under it not ignored."""
        path = self.root / rel if rel else self.root
        st = os.lstat(path)
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            yield from self._subtree(rel)

    def _subtree(self, rel: str):
        base = self.root / rel if rel else self.root
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            name = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if self.ignore.skip_dir(name):
                    continue
                if not self.ignore.ignored(name):
                    yield name, st
                    yield from self._subtree(name)
                    continue
                inside = list(self._subtree(name))  # an excluded directory comes along for a re-included file
                if inside:
                    yield name, st
                    yield from inside
            elif not self.ignore.ignored(name):
                yield name, st

    def digest(self, rels: list[str]) -> str:
        """A content hash over exactly the files named (and under named directories): names, types, modes,
        symlink targets and contents; not times or owners (COPY resets owners, times do not matter)."""
        hasher = hashlib.sha256()
        for rel in rels:
            hasher.update(b"\0root\0" + rel.encode())
            for name, st in self.tree(rel):
                hasher.update(f"\0{name}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
                path = self.root / name
                if stat.S_ISLNK(st.st_mode):
                    hasher.update(os.readlink(path).encode())
                elif stat.S_ISREG(st.st_mode):
                    hasher.update(self._file_hash(name, path, st).encode())
        return "sha256:" + hasher.hexdigest()


def load_ignore(context_dir: Path, dockerfile: Path | None) -> Ignore:
    candidates = []
    if dockerfile is not None:
        candidates.append(dockerfile.with_name(dockerfile.name + ".dockerignore"))
    candidates.append(Path(context_dir) / ".dockerignore")
    for path in candidates:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            return Ignore(parse_ignore(path.read_text()))
    return Ignore([])


def unpack_tar(stream, scratch: Path) -> Path:
    """Unpack a context tarball (maybe compressed) into a fresh directory under ``scratch``; entries
    that would land outside it (``..``, absolute names, links out) are refused."""
    scratch.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix="context-", dir=scratch))
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                name = member.name
                parts = name.split("/")
                if name.startswith("/") or ".." in parts:
                    raise PalletError(f'the context tarball has an entry outside the context: "{name}"')
                if member.islnk() and (member.linkname.startswith("/") or ".." in member.linkname.split("/")):
                    raise PalletError(f'the context tarball has a hard link outside the context: "{name}"')
                if member.isdev():
                    continue
                tar.extract(member, target, set_attrs=True, filter="tar")
    except (tarfile.TarError, EOFError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise PalletError(f"the build context is not a valid tar archive: {exc}") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target
