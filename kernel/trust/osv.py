"""An offline OSV vulnerability database: a directory of OSV JSON advisories, an index, imports, and matching.

The directory holds advisories in the OSV schema (``<id>.json``, any layout below it). A scan
reads ``.pallet-index/index.sqlite``, a compact table indexed by ecosystem and package name that is
rebuilt whenever a directory of the database changed (an advisory added, removed or replaced). Debian advisories
name source packages, so Debian packages are matched by binary and by source name.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write
from pallet.kernel.trust import versions

INDEX = ".pallet-index"          # a directory, so writing the index leaves the database's own mtime alone
INDEX_VERSION = 1
MATCHED = {"Debian", "Alpine", "PyPI", "npm", "Go", "Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE"}
# OSV ecosystems that exist but that pallet's inventory does not produce: accepted, never matched.
KNOWN = MATCHED | {"Maven", "crates.io", "NuGet", "RubyGems", "Packagist", "Hex", "Pub", "Ubuntu", "Wolfi", "Chainguard", "Linux", "OSS-Fuzz",
                   "Android", "GitHub Actions", "Bitnami", "CRAN", "Photon OS", "Mageia", "openEuler", "SwiftURL",
                   "ConanCenter", "GIT"}
SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")


@dataclass(frozen=True)
class Finding:
    package: object
    id: str
    summary: str
    severity: str
    fixed: str | None


def _ecosystem_base(name: str) -> str:
    return name.split(":", 1)[0]


def _severity(advisory: dict, affected: dict) -> str:
    for holder in (affected.get("ecosystem_specific") or {}, affected.get("database_specific") or {},
                   advisory.get("database_specific") or {}):
        value = str(holder.get("severity") or holder.get("urgency") or "").upper()
        if value in SEVERITIES:
            return value
        if value in ("MODERATE",):
            return "MEDIUM"
    for entry in advisory.get("severity") or []:
        score = entry.get("score") if isinstance(entry, dict) else None
        try:
            number = float(score)
        except (TypeError, ValueError):
            continue
        return "CRITICAL" if number >= 9 else "HIGH" if number >= 7 else "MEDIUM" if number >= 4 else "LOW"
    return "UNKNOWN"


def compact(advisory, where: str) -> list[tuple[str, str, dict]]:
    """(ecosystem, package name, compact entry) for each affected package; an invalid file is one clear error."""
    if not isinstance(advisory, dict) or not isinstance(advisory.get("id"), str):
        raise PalletError(f"invalid OSV advisory {where}: no id")
    rows = []
    for affected in advisory.get("affected") or []:
        package = affected.get("package") if isinstance(affected, dict) else None
        if not isinstance(package, dict) or not isinstance(package.get("ecosystem"), str) or "name" not in package:
            raise PalletError(f"invalid OSV advisory {where}: an affected entry has no package ecosystem and name")
        ecosystem = package["ecosystem"]
        if _ecosystem_base(ecosystem) not in KNOWN:
            raise PalletError(f'invalid OSV advisory {where}: unknown ecosystem "{ecosystem}"')
        if _ecosystem_base(ecosystem) not in MATCHED:
            continue
        ranges = [{"type": r.get("type"), "events": r.get("events") or []} for r in affected.get("ranges") or []
                  if isinstance(r, dict) and r.get("type") in ("ECOSYSTEM", "SEMVER")]
        rows.append((_ecosystem_base(ecosystem), package["name"], {
            "id": advisory["id"], "summary": advisory.get("summary") or advisory.get("details", "")[:200],
            "severity": _severity(advisory, affected), "ranges": ranges,
            "versions": [v for v in affected.get("versions") or [] if isinstance(v, str)]}))
    return rows


def _load_json(path: str):
    try:
        with open(path, "rb") as file:
            return json.loads(file.read())
    except (OSError, ValueError) as exc:
        raise PalletError(f"invalid OSV advisory {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _walk(db: Path) -> tuple[dict[str, int], list[str]]:
    """(mtime of every directory below ``db``, the advisory files, sorted) in one walk, on plain strings.

    Adding, removing or renaming an advisory changes its directory's mtime: stat-ing directories
    rather than 50,000 files keeps an up-to-date scan well under a second (an advisory edited in
    place, same name, needs a ``touch`` of its directory or a re-import). A cold index of 50,000
    files spends its time opening and parsing them, not on paths (pathlib's objects tripled it).
    """
    stamps, files = {}, []
    root = str(db)
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        stamps[os.path.relpath(directory, root)] = os.stat(directory).st_mtime_ns
        files += [os.path.join(directory, name) for name in names if name.endswith(".json") and not name.startswith(".")]
    files.sort()
    return stamps, files


def build_index(files: list[str]) -> dict:
    table: dict[str, dict[str, list]] = {}
    for path in files:
        for ecosystem, name, entry in compact(_load_json(path), path):
            table.setdefault(ecosystem, {}).setdefault(name, []).append(entry)
    return table


class Index:
    """Advisories by (ecosystem, package name), from the sqlite index or, for a read-only database, from memory."""

    def __init__(self, connection=None, table: dict | None = None):
        self.connection, self.table = connection, table

    def lookup(self, ecosystem: str, name: str) -> list[dict]:
        if self.table is not None:
            return self.table.get(ecosystem, {}).get(name, [])
        rows = self.connection.execute("SELECT entry FROM advisories WHERE ecosystem = ? AND name = ?",
                                       (ecosystem, name))
        return [json.loads(row[0]) for row in rows]

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def _open_index(path: Path, stamp: str):
    import sqlite3

    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        row = connection.execute("SELECT stamp FROM meta").fetchone()
    except sqlite3.Error:
        return None
    if row is None or row[0] != stamp:
        connection.close()
        return None
    return connection


def _write_index(path: Path, stamp: str, table: dict) -> None:
    import sqlite3
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".index.", suffix=".tmp")
    os.close(fd)
    try:
        connection = sqlite3.connect(tmp)
        with connection:
            connection.execute("CREATE TABLE meta (stamp TEXT)")
            connection.execute("CREATE TABLE advisories (ecosystem TEXT, name TEXT, entry TEXT)")
            connection.execute("INSERT INTO meta VALUES (?)", (stamp,))
            connection.executemany("INSERT INTO advisories VALUES (?, ?, ?)",
                                   ((eco, name, json.dumps(entry)) for eco, names in table.items()
                                    for name, entries in names.items() for entry in entries))
            connection.execute("CREATE INDEX by_package ON advisories (ecosystem, name)")
        connection.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(db: str | Path) -> Index:
    """The index of ``db``, rebuilt and saved when the advisories changed."""
    db = Path(db)
    if not db.is_dir():
        raise PalletError(f"vulnerability database {db} is not a directory (import one with --update-from)")
    index_path = db / INDEX / "index.sqlite"
    try:
        (db / INDEX).mkdir(exist_ok=True)
    except OSError:
        pass  # a read-only database still scans, just without keeping its index
    stamps, files = _walk(db)
    stamp = json.dumps({"version": INDEX_VERSION, "dirs": stamps}, sort_keys=True)
    connection = _open_index(index_path, stamp)
    if connection is not None:
        return Index(connection)
    table = build_index(files)
    try:
        _write_index(index_path, stamp, table)
    except OSError:
        return Index(table=table)
    return Index(_open_index(index_path, stamp)) if index_path.exists() else Index(table=table)


def import_zip(db: str | Path, source: str) -> int:
    """Import the advisories of an OSV zip (a file or an http(s) URL) into ``db``; every file is checked first."""
    db = Path(db)
    if source.startswith(("http://", "https://")):
        from pallet.kernel.images.registry import _httpx
        httpx = _httpx()
        try:
            response = httpx.get(source, timeout=120.0, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise PalletError(f"cannot download {source}: {exc}") from None
        if response.status_code != 200:
            raise PalletError(f"cannot download {source}: HTTP {response.status_code}")
        data = response.content
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise PalletError(f"cannot read {source}: {exc.strerror}") from None
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise PalletError(f"{source} is not a zip archive of OSV advisories") from None
    advisories = {}
    for name in archive.namelist():
        if not name.endswith(".json"):
            continue
        where = f"{source}!{name}"
        try:
            advisory = json.loads(archive.read(name))
        except ValueError as exc:
            raise PalletError(f"invalid OSV advisory {where}: {exc}") from None
        compact(advisory, where)
        ident = advisory["id"]
        if "/" in ident or ident.startswith("."):
            raise PalletError(f"invalid OSV advisory {where}: unsafe id {ident!r}")
        advisories[ident] = json.dumps(advisory).encode()
    db.mkdir(parents=True, exist_ok=True)
    for ident, body in advisories.items():
        atomic_write(db / f"{ident}.json", body, durable=False)
    os.sync()
    load(db).close()   # index now, so that the first scan after an import is a warm one
    return len(advisories)


def _affected(ecosystem: str, version: str, entry: dict) -> tuple[bool, str | None]:
    if version in entry["versions"]:
        return True, None
    compare = versions.COMPARE[ecosystem]
    for block in entry["ranges"]:
        events = []
        for event in block["events"]:
            for kind in ("introduced", "fixed", "last_affected", "limit"):
                if isinstance(event, dict) and isinstance(event.get(kind), str):
                    events.append((kind, event[kind]))
        affected, fixed = False, None
        try:
            for kind, value in sorted(events, key=lambda e: (e[1] != "0", versions.key(ecosystem)(e[1])
                                                              if e[1] != "0" else 0)):
                if kind == "introduced" and (value == "0" or compare(version, value) >= 0):
                    affected = True
                elif kind == "fixed":
                    if compare(version, value) >= 0:
                        affected = False
                    elif affected and fixed is None:
                        fixed = value
                elif kind == "last_affected" and compare(version, value) > 0:
                    affected = False
                elif kind == "limit" and compare(version, value) >= 0:
                    affected = False
        except ValueError:
            continue   # a version this ecosystem cannot order: no claim either way
        if affected:
            return True, fixed
    return False, None


def match(index: Index, packages) -> list[Finding]:
    findings = []
    for package in packages:
        if package.ecosystem not in MATCHED:
            continue
        names = dict.fromkeys(filter(None, [package.name, package.source]))
        seen = set()
        for name in names:
            for entry in index.lookup(package.ecosystem, name):
                if entry["id"] in seen:
                    continue
                hit, fixed = _affected(package.ecosystem, package.version, entry)
                if hit:
                    seen.add(entry["id"])
                    findings.append(Finding(package, entry["id"], entry["summary"], entry["severity"], fixed))
    return sorted(findings, key=lambda f: (-SEVERITIES.index(f.severity), f.package.name, f.id))
