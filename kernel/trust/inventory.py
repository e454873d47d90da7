"""What is installed in an image, read from the package databases inside its layers (no unpacking, no mount).

Layers are read in order as tar streams; whiteouts remove what lower layers added, so a package
database deleted or replaced upstairs counts as the top layer has it. Read: dpkg ``status`` and
``status.d``, apk ``installed``, rpm's sqlite database (``rpmdb.sqlite``, headers decoded here),
Python ``*.dist-info/METADATA`` and ``*.egg-info``, npm ``node_modules/**/package.json``, the Go
build info of executables (toolchain and modules), and the version a static busybox binary reports.
"""

from __future__ import annotations

import email.parser
import json
import posixpath
import re
import tarfile
from dataclasses import dataclass
from urllib.parse import quote

from pallet.kernel.images import layers as layerlib
from pallet.kernel.images import manifest as mf

BUSYBOX = ("bin/busybox", "usr/bin/busybox")
RPMDB = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
MAX_RPMDB = 512 << 20
# rpm header tags and types (rpmtag.h): what an SBOM entry needs
RPM_NAME, RPM_VERSION, RPM_RELEASE, RPM_EPOCH, RPM_ARCH, RPM_SOURCERPM = 1000, 1001, 1002, 1003, 1022, 1044
RPM_INT32, RPM_STRING = 4, 6
# os-release ID -> the OSV ecosystem whose advisories cover that distribution's rpms
RPM_ECOSYSTEM = {"rhel": "Red Hat", "rocky": "Rocky Linux", "almalinux": "AlmaLinux", "opensuse-leap": "openSUSE",
                 "opensuse-tumbleweed": "openSUSE", "sles": "SUSE"}
MAX_FILE = 8 << 20
_BUSYBOX_VERSION = re.compile(rb"BusyBox v(\d+(?:\.\d+)+)")
GO_MAGIC = b"\xff Go buildinf:"
GO_MARK = b"\0pallet-go-buildinfo\0"   # what image_files keeps for a Go executable instead of its bytes
MAX_EXECUTABLE = 256 << 20


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    ecosystem: str          # the OSV ecosystem name (Debian, Alpine, Red Hat…, PyPI, npm, Go); "rpm", "generic" unmatched
    purl: str
    location: str           # the database file it was read from
    source: str | None = None   # Debian source package / apk origin (advisories name these)
    arch: str | None = None


def _interesting(path: str) -> bool:
    if path in ("var/lib/dpkg/status", "lib/apk/db/installed", "etc/os-release", "usr/lib/os-release") \
            or path in BUSYBOX or path.startswith("var/lib/dpkg/status.d/"):
        return True
    if any(path in (db, db + "-wal") for db in RPMDB):
        return True
    if ("site-packages/" in path or "dist-packages/" in path) and (
            path.endswith(".dist-info/METADATA") or path.endswith(".egg-info/PKG-INFO") or path.endswith(".egg-info")):
        return True
    if path.endswith("/package.json") and "node_modules/" in path:
        parent = path[:-len("/package.json")].split("node_modules/")[-1]
        return parent.count("/") == 0 or (parent.startswith("@") and parent.count("/") == 1)
    return False


def image_files(store, record) -> dict[str, bytes]:
    """Path -> content of every package-database file visible in the image's merged filesystem."""
    manifest = mf.parse_manifest(store.blobs.read(record.manifest_digest))
    files: dict[str, bytes] = {}
    for layer in manifest.layers:
        compression = mf.LAYER_COMPRESSION.get(layer.media_type)
        with layerlib.uncompressed(store.blobs.path(layer.digest), compression) as stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    path = posixpath.normpath(member.name.lstrip("/")).removeprefix("./")
                    base, directory = posixpath.basename(path), posixpath.dirname(path)
                    if base == ".wh..wh..opq":
                        for key in [k for k in files if k.startswith(directory + "/")]:
                            del files[key]
                    elif base.startswith(".wh."):
                        gone = posixpath.join(directory, base[4:])
                        for key in [k for k in files if k == gone or k.startswith(gone + "/")]:
                            del files[key]
                    elif member.isfile() and _interesting(path) and (
                            member.size <= MAX_FILE or (path.startswith(RPMDB) and member.size <= MAX_RPMDB)):
                        files[path] = tar.extractfile(member).read()
                    elif member.isfile() and member.mode & 0o111 and 64 < member.size <= MAX_EXECUTABLE:
                        info = go_buildinfo(tar.extractfile(member))
                        if info is not None:
                            files[path] = GO_MARK + info
                        else:
                            files.pop(path, None)
                    elif path in files and not member.isfile():
                        del files[path]
    return files


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def go_buildinfo(handle) -> bytes | None:
    """``go-version\nmodinfo`` of a Go 1.18+ ELF executable (the inline build info blob), else None."""
    if handle.read(4) != b"\x7fELF":
        return None
    data = handle.read()
    at = data.find(GO_MAGIC)
    if at < 0 or len(data) < at + 32 or not data[at + 15] & 0x2:   # older pointer-based layouts are not read
        return None
    try:
        length, pos = _uvarint(data, at + 32)
        version = data[pos:pos + length]
        length, pos = _uvarint(data, pos + length)
        modinfo = data[pos:pos + length]
    except IndexError:
        return None
    if len(modinfo) >= 33:
        modinfo = modinfo[16:-16]   # the sentinels the linker wraps it in
    return version + b"\n" + modinfo


def _go(path: str, data: bytes) -> list[Package]:
    version, _, modinfo = data[len(GO_MARK):].decode(errors="replace").partition("\n")
    found = []
    if version.startswith("go"):
        found.append(Package("stdlib", version[2:], "Go", f"pkg:golang/stdlib@{quote(version[2:])}", path))
    for line in modinfo.splitlines():
        fields = line.split("\t")
        if fields[0] in ("mod", "dep") and len(fields) >= 3 and fields[2] not in ("", "(devel)"):
            module, module_version = fields[1], fields[2]
            found.append(Package(module, module_version, "Go",
                                 f"pkg:golang/{quote(module)}@{quote(module_version)}", path))
    return found


def _os_release(files: dict[str, bytes]) -> dict[str, str]:
    text = (files.get("etc/os-release") or files.get("usr/lib/os-release") or b"").decode(errors="replace")
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def _paragraphs(text: str):
    block: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if block:
                yield block
            block, last = {}, None
        elif line[0] in " \t" and last:
            block[last] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            last = key.strip()
            block[last] = value.strip()
    if block:
        yield block


def _dpkg(path: str, data: bytes, distro: str, version_id: str) -> list[Package]:
    found = []
    for block in _paragraphs(data.decode(errors="replace")):
        name, version = block.get("Package"), block.get("Version")
        if not name or not version or ("Status" in block and not block["Status"].endswith(" installed")):
            continue
        source = (block.get("Source") or name).split(" ")[0]
        arch = block.get("Architecture")
        qualifiers = "&".join(filter(None, [f"arch={arch}" if arch else "",
                                            f"distro={distro}-{version_id}" if version_id else ""]))
        purl = f"pkg:deb/{distro}/{quote(name)}@{quote(version, safe='')}" + (f"?{qualifiers}" if qualifiers else "")
        found.append(Package(name, version, "Debian", purl, path, source, arch))
    return found


def _apk(path: str, data: bytes) -> list[Package]:
    found = []
    for block in _paragraphs(data.decode(errors="replace")):
        name, version = block.get("P"), block.get("V")
        if name and version:
            arch = block.get("A")
            purl = f"pkg:apk/alpine/{quote(name)}@{quote(version, safe='')}" + (f"?arch={arch}" if arch else "")
            found.append(Package(name, version, "Alpine", purl, path, block.get("o") or name, arch))
    return found


def _python(path: str, data: bytes) -> list[Package]:
    message = email.parser.BytesHeaderParser().parsebytes(data)
    name, version = message.get("Name"), message.get("Version")
    if not name or not version:
        return []
    normalized = re.sub(r"[-_.]+", "-", name).lower()
    return [Package(normalized, version, "PyPI", f"pkg:pypi/{normalized}@{quote(version, safe='')}", path)]


def _npm(path: str, data: bytes) -> list[Package]:
    try:
        doc = json.loads(data)
    except ValueError:
        return []
    name, version = (doc.get("name"), doc.get("version")) if isinstance(doc, dict) else (None, None)
    if not isinstance(name, str) or not isinstance(version, str):
        return []
    scope, _, bare = name.rpartition("/")
    purl_name = f"{quote(scope, safe='')}/{quote(bare)}" if scope else quote(name)
    return [Package(name, version, "npm", f"pkg:npm/{purl_name}@{quote(version, safe='')}", path)]


def _rpm_header(blob: bytes) -> dict[int, object]:
    """Tag -> value for the string and int32 tags of one rpm header blob (index count, data length, entries, data)."""
    import struct

    count, length = struct.unpack(">II", blob[:8])
    data = blob[8 + 16 * count:8 + 16 * count + length]
    values: dict[int, object] = {}
    for index in range(count):
        tag, kind, offset, items = struct.unpack(">IIII", blob[8 + 16 * index:24 + 16 * index])
        if kind == RPM_STRING:
            values[tag] = data[offset:data.index(b"\0", offset)].decode(errors="replace")
        elif kind == RPM_INT32 and items >= 1:
            values[tag] = struct.unpack(">i", data[offset:offset + 4])[0]
    return values


def _rpm(path: str, files: dict[str, bytes], distro: str) -> list[Package]:
    import sqlite3
    import struct
    import tempfile
    from pathlib import Path

    found = []
    with tempfile.TemporaryDirectory(prefix="pallet-rpmdb-") as work:
        copy = Path(work) / "rpmdb.sqlite"
        copy.write_bytes(files[path])
        if path + "-wal" in files:
            (Path(work) / "rpmdb.sqlite-wal").write_bytes(files[path + "-wal"])
        try:
            connection = sqlite3.connect(copy)
            rows = connection.execute("SELECT blob FROM Packages").fetchall()
            connection.close()
        except sqlite3.Error:
            return []
    for (blob,) in rows:
        try:
            header = _rpm_header(bytes(blob))
        except (struct.error, ValueError):
            continue
        name, version, release = header.get(RPM_NAME), header.get(RPM_VERSION), header.get(RPM_RELEASE)
        if not isinstance(name, str) or name == "gpg-pubkey" or not isinstance(version, str):
            continue
        epoch, arch = header.get(RPM_EPOCH), header.get(RPM_ARCH)
        full = f"{version}-{release}" if release else version
        qualifiers = "&".join(filter(None, [f"arch={arch}" if arch else "", f"epoch={epoch}" if epoch else ""]))
        purl = f"pkg:rpm/{distro}/{quote(name)}@{quote(full, safe='')}" + (f"?{qualifiers}" if qualifiers else "")
        source = header.get(RPM_SOURCERPM)
        found.append(Package(name, f"{epoch}:{full}" if epoch else full, RPM_ECOSYSTEM.get(distro, "rpm"), purl, path,
                             source.rsplit("-", 2)[0] if isinstance(source, str) else None,
                             arch if isinstance(arch, str) else None))
    return found


def packages(files: dict[str, bytes]) -> list[Package]:
    """Every package the database files name, sorted by ecosystem and name."""
    release = _os_release(files)
    distro, version_id = release.get("ID", "debian"), release.get("VERSION_ID", "")
    found: list[Package] = []
    for path, data in files.items():
        if data.startswith(GO_MARK):
            found += _go(path, data)
        elif path == "var/lib/dpkg/status" or path.startswith("var/lib/dpkg/status.d/"):
            found += _dpkg(path, data, distro, version_id)
        elif path == "lib/apk/db/installed":
            found += _apk(path, data)
        elif path in RPMDB:
            found += _rpm(path, files, release.get("ID", "redhat"))
        elif path.endswith("/package.json"):
            found += _npm(path, data)
        elif path in BUSYBOX:
            match = _BUSYBOX_VERSION.search(data)
            if match:
                version = match.group(1).decode()
                found.append(Package("busybox", version, "generic", f"pkg:generic/busybox@{version}", path))
        elif "-packages/" in path:
            found += _python(path, data)
    return sorted(set(found), key=lambda p: (p.ecosystem, p.name, p.version, p.location))
