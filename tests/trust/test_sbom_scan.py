"""SBOM from the package databases inside an image's layers (dpkg, apk, rpm, Python, npm, busybox), validated by SPDX and CycloneDX libraries; offline OSV scans."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.registry.conftest import layer_tar, umoci_image
from tests.trust.conftest import skopeo

DPKG = b"""Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u1

Package: tzdata
Status: install ok installed
Architecture: all
Version: 1:2024a-0+deb12u1

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
"""
APK = b"""P:musl
V:1.2.4-r9
A:x86_64
o:musl

P:busybox-binsh
V:1.36.1-r2
A:x86_64
o:busybox
"""


def _metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nlong description\n".encode()


RPM_SPEC = """Name: hello-pallet
Version: 1.2.3
Release: 4.el9
Epoch: 2
Summary: an rpm database entry for the SBOM test
License: MIT
BuildArch: noarch
%description
test
%files
"""


def _rpmdb(work: Path) -> dict[str, bytes]:
    """A real rpm sqlite database (rpmbuild + rpm --justdb) holding one package, as layer files."""
    (work / "hello.spec").write_text(RPM_SPEC)
    subprocess.run(["rpmbuild", "--define", f"_topdir {work / 'top'}", "-bb", str(work / "hello.spec")],
                   check=True, capture_output=True)
    root = work / "rpmroot"
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "--initdb"], check=True, capture_output=True)
    [package] = (work / "top" / "RPMS" / "noarch").glob("*.rpm")
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--justdb",
                    str(package)], check=True, capture_output=True)
    return {f"var/lib/rpm/{p.name}": p.read_bytes() for p in (root / "var/lib/rpm").glob("rpmdb.sqlite*")
            if not p.name.endswith("-shm")}


def _executable_layer(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


GO_BINARY = Path("/usr/bin/umoci")   # a real Go executable Debian ships (built with go1.19.8 here)


@pytest.fixture
def scanned_image(tmp_path, tpallet):
    """Two layers: package databases of four ecosystems and a real busybox; the top layer whites out one package."""
    site = "usr/lib/python3/dist-packages"
    lower = layer_tar({
        "var/lib/dpkg/status": DPKG,
        "etc/os-release": b'ID=debian\nVERSION_ID="12"\n',
        "lib/apk/db/installed": APK,
        f"{site}/requests-2.31.0rc1.dist-info/METADATA": _metadata("Requests", "2.31.0rc1"),
        f"{site}/urllib3-2.0.7.dist-info/METADATA": _metadata("urllib3", "2.0.7"),
        f"{site}/gone-1.0.dist-info/METADATA": _metadata("gone", "1.0"),
        "app/node_modules/lodash/package.json": json.dumps({"name": "lodash", "version": "4.17.21-rc.1"}).encode(),
        "app/node_modules/@scope/left-pad/package.json": json.dumps({"name": "@scope/left-pad",
                                                                      "version": "1.3.0"}).encode(),
        "app/node_modules/lodash/node_modules/nested/data/package.json": b'{"name": "not-a-package"}',
        "bin/busybox": Path("/bin/busybox").read_bytes(),
    })
    upper = layer_tar({f"{site}/.wh.gone-1.0.dist-info": b""})
    work = tmp_path / "sbom-build"
    work.mkdir()
    rpm_layer = layer_tar(_rpmdb(work))
    go_layer = _executable_layer("usr/local/bin/tool", GO_BINARY.read_bytes())
    source = umoci_image(work, [lower, rpm_layer, go_layer, upper], tag="inv")
    assert tpallet("pull", source).returncode == 0
    return tpallet("images", "-q", "--no-trunc").stdout.split()[0]


def test_sbom_lists_what_the_layers_install(tpallet, scanned_image):
    result = tpallet("image", "sbom", "--format", "cyclonedx-json", scanned_image)
    assert result.returncode == 0, result.stderr
    purls = {c["purl"] for c in json.loads(result.stdout)["components"]}
    assert "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12" in purls
    assert "pkg:deb/debian/tzdata@1%3A2024a-0%2Bdeb12u1?arch=all&distro=debian-12" in purls
    assert "pkg:apk/alpine/musl@1.2.4-r9?arch=x86_64" in purls
    assert {"pkg:pypi/requests@2.31.0rc1", "pkg:pypi/urllib3@2.0.7", "pkg:npm/lodash@4.17.21-rc.1",
            "pkg:npm/%40scope/left-pad@1.3.0"} <= purls
    assert any(p.startswith("pkg:generic/busybox@1.") for p in purls)
    assert "pkg:rpm/debian/hello-pallet@1.2.3-4.el9?arch=noarch&epoch=2" in purls
    assert any(p.startswith("pkg:golang/stdlib@1.") for p in purls)   # the Go toolchain the binary was built with
    assert not any("removed-one" in p or "gone" in p or "not-a-package" in p for p in purls)


def test_cyclonedx_output_validates_against_the_1_5_schema(tpallet, scanned_image):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = tpallet("image", "sbom", "--format", "cyclonedx-json", scanned_image).stdout
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None


def test_spdx_output_is_a_valid_spdx_2_3_document(tmp_path, tpallet, scanned_image):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    output = tmp_path / "sbom.spdx.json"
    assert tpallet("image", "sbom", "--format", "spdx-json", "-o", str(output), scanned_image).returncode == 0
    document = parse_file(str(output))
    assert validate_full_spdx_document(document) == []
    assert {p.name for p in document.packages} >= {"libssl3", "musl", "requests", "lodash", "busybox"}


def _advisory(ident, ecosystem, name, fixed, severity="HIGH", introduced="0"):
    return {"id": ident, "summary": f"{name} problem", "database_specific": {"severity": severity},
            "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                          "ranges": [{"type": "SEMVER" if ecosystem == "npm" else "ECOSYSTEM",
                                      "events": [{"introduced": introduced}, {"fixed": fixed}]}]}]}


ADVISORIES = [
    _advisory("DSA-0001", "Debian:12", "openssl", "3.0.11-1~deb12u2"),        # ~ sorts before: flagged
    _advisory("DSA-0002", "Debian:12", "tzdata", "2024b-0"),                  # installed has epoch 1: fixed
    _advisory("ALPINE-0001", "Alpine:v3.18", "musl", "1.2.4-r10", "CRITICAL"),  # r9 < r10 numerically: flagged
    _advisory("ALPINE-0002", "Alpine:v3.18", "busybox", "1.36.1-r2"),         # fixed equals installed: fixed
    _advisory("PYSEC-0001", "PyPI", "requests", "2.31.0", "MEDIUM"),          # rc1 is before 2.31.0: flagged
    _advisory("PYSEC-0002", "PyPI", "urllib3", "2.0.7"),                      # fixed
    _advisory("GHSA-0001", "npm", "lodash", "4.17.21", "LOW"),                # pre-release before release: flagged
    _advisory("GHSA-0002", "npm", "@scope/left-pad", "1.3.0", introduced="1.0.0"),   # fixed
    _advisory("GO-0001", "Go", "example.com/mod", "1.0.0"),                   # a module the image does not have
    _advisory("GO-0002", "Go", "stdlib", "1.99.0", "MEDIUM"),                  # the binary's toolchain: flagged
    _advisory("GO-0003", "Go", "stdlib", "1.0.0", introduced="0.9.0"),         # long fixed
    _advisory("MAVEN-0001", "Maven", "org.example:lib", "1.0"),               # known ecosystem, never matched
]


@pytest.fixture
def osv_db(tmp_path):
    db = tmp_path / "osv"
    db.mkdir()
    for advisory in ADVISORIES:
        (db / f"{advisory['id']}.json").write_text(json.dumps(advisory))
    return db


def _scan(tpallet, image, db, *args):
    return tpallet("image", "scan", "--db", str(db), *args, image)


def test_scan_flags_affected_versions_and_respects_version_edges(tpallet, scanned_image, osv_db):
    result = _scan(tpallet, scanned_image, osv_db, "--format", "json")
    assert result.returncode == 0, result.stderr
    found = {(row["Vulnerability"], row["Package"]) for row in json.loads(result.stdout)}
    assert found == {("DSA-0001", "libssl3"), ("ALPINE-0001", "musl"), ("PYSEC-0001", "requests"),
                     ("GHSA-0001", "lodash"), ("GO-0002", "stdlib")}
    assert (osv_db / ".pallet-index" / "index.sqlite").is_file()
    again = _scan(tpallet, scanned_image, osv_db, "--format", "json")
    assert {(row["Vulnerability"], row["Package"]) for row in json.loads(again.stdout)} == found


def test_severity_floor_exit_code_and_sarif(tpallet, scanned_image, osv_db):
    gated = _scan(tpallet, scanned_image, osv_db, "--severity", "high", "--exit-code", "3")
    assert gated.returncode == 3
    assert "ALPINE-0001" in gated.stdout and "DSA-0001" in gated.stdout and "PYSEC-0001" not in gated.stdout
    sarif = json.loads(_scan(tpallet, scanned_image, osv_db, "--format", "sarif", "--severity", "critical").stdout)
    assert sarif["version"] == "2.1.0"
    assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["ALPINE-0001"]


def test_unknown_ecosystem_is_one_line(tpallet, scanned_image, osv_db):
    (osv_db / "BAD-1.json").write_text(json.dumps(_advisory("BAD-1", "Frobnicator", "x", "1")))
    result = _scan(tpallet, scanned_image, osv_db)
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert 'unknown ecosystem "Frobnicator"' in result.stderr and "BAD-1.json" in result.stderr


def test_update_from_imports_a_zip_and_refuses_a_bad_one_whole(tmp_path, tpallet, scanned_image):
    good, bad, db = tmp_path / "good.zip", tmp_path / "bad.zip", tmp_path / "imported"
    with zipfile.ZipFile(good, "w") as archive:
        for advisory in ADVISORIES[:3]:
            archive.writestr(f"{advisory['id']}.json", json.dumps(advisory))
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("OK-1.json", json.dumps(ADVISORIES[4]))
        archive.writestr("BAD-1.json", json.dumps(_advisory("BAD-1", "Nope", "x", "1")))
    refused = tpallet("image", "scan", "--db", str(db), "--update-from", str(bad))
    assert refused.returncode == 1 and 'unknown ecosystem "Nope"' in refused.stderr
    assert not db.exists()
    imported = tpallet("image", "scan", "--db", str(db), "--update-from", str(good))
    assert imported.returncode == 0 and imported.stdout.strip() == f"Imported 3 advisories into {db}"
    # the import built the index: the first scan reuses that index file instead of building one
    index = db / ".pallet-index" / "index.sqlite"
    built = index.stat().st_ino
    result = _scan(tpallet, scanned_image, db, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert {row["Vulnerability"] for row in json.loads(result.stdout)} == {"DSA-0001", "ALPINE-0001"}
    assert index.stat().st_ino == built


def test_rpm_packages_match_their_distribution_s_advisories(tmp_path, tpallet):
    work = tmp_path / "rpm-build"
    work.mkdir()
    files = {**_rpmdb(work), "etc/os-release": b'ID="rocky"\nVERSION_ID="9.3"\n'}
    assert tpallet("pull", umoci_image(work, [layer_tar(files)], tag="rocky")).returncode == 0
    image = tpallet("images", "-q", "--no-trunc").stdout.split()[0]
    db = tmp_path / "osv-rpm"
    db.mkdir()
    for advisory in (_advisory("RLSA-1", "Rocky Linux:9", "hello-pallet", "2:1.2.3-5.el9"),   # release 4 < 5
                     _advisory("RLSA-2", "Rocky Linux:9", "hello-pallet", "1.2.4-1")):        # epoch 2 is newer
        (db / f"{advisory['id']}.json").write_text(json.dumps(advisory))
    result = _scan(tpallet, image, db, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [(row["Vulnerability"], row["Installed"]) for row in json.loads(result.stdout)] == [
        ("RLSA-1", "2:1.2.3-4.el9")]


def _inspect(registry, name: str, *args: str) -> str:
    return skopeo("inspect", "--tls-verify=false", *args, f"docker://{registry.host}/{name}").stdout


def test_attached_sbom_is_pushed_as_an_oci_referrer(tpallet, registry, scanned_image):
    import urllib.request

    attached = tpallet("image", "sbom", "--attach", "--format", "spdx-json", scanned_image)
    assert attached.returncode == 0 and attached.stdout.startswith("Attached spdx-json SBOM sha256:"), attached.stderr
    assert tpallet("push", scanned_image, f"docker://{registry.host}/app:1").returncode == 0
    digest = _inspect(registry, "app:1", "--format", "{{.Digest}}").strip()
    index = json.loads(_inspect(registry, f"app:{digest.replace(':', '-')}", "--raw"))
    [entry] = index["manifests"]
    assert entry["artifactType"] == "application/spdx+json"
    referrer = json.loads(_inspect(registry, f"app@{entry['digest']}", "--raw"))
    assert referrer["subject"]["digest"] == digest
    blob = urllib.request.urlopen(f"http://{registry.host}/v2/app/blobs/{referrer['layers'][0]['digest']}").read()
    assert json.loads(blob)["spdxVersion"] == "SPDX-2.3"
