"""``pallet image sbom`` (SPDX / CycloneDX JSON from the image's package databases) and ``pallet image scan`` (offline OSV)."""

from __future__ import annotations

import json
import sys

import click

from pallet.kernel.cli.output import emit
from pallet.kernel.errors import PalletError, UsageError


def _inventory(ctx, name):
    from pallet.kernel.images import ImageStore
    from pallet.kernel.trust import inventory

    store = ImageStore(ctx.obj)
    record = store.resolve(name)
    return record, inventory.packages(inventory.image_files(store, record))


@click.command("sbom")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["spdx-json", "cyclonedx-json"]), default="spdx-json",
              show_default=True, help="SBOM document format.")
@click.option("-o", "--output", metavar="FILE", default=None, help="Write to FILE instead of stdout.")
@click.option("--attach", is_flag=True, help="Keep it next to the image as an OCI referrer; push sends it along.")
@click.pass_context
def sbom(ctx, name, fmt, output, attach):
    """Software bill of materials of a stored image, read from the package databases in its layers."""
    from pathlib import Path

    from pallet.kernel.fsutil import atomic_write
    from pallet.kernel.trust import sbom as documents

    if attach:
        record, text, digest = attach_sbom(ctx.obj, name, fmt)
        click.echo(f"Attached {fmt} SBOM {digest} to {record.manifest_digest}")
    else:
        record, packages = _inventory(ctx, name)
        text = json.dumps(documents.document(fmt, name, record.id, packages), indent=2) + "\n"
    if output:
        atomic_write(Path(output), text.encode())
    elif not attach:
        click.echo(text, nl=False)


def attach_sbom(engine, name: str, fmt: str):
    """Make the SBOM of stored image ``name`` and keep it as an OCI referrer (``image sbom --attach``,
    ``build --sbom``); returns (image record, document text, referrer digest)."""
    from pallet.kernel.images import ImageStore
    from pallet.kernel.trust import inventory, referrers
    from pallet.kernel.trust import sbom as documents

    store = ImageStore(engine)
    record = store.resolve(name)
    packages = inventory.packages(inventory.image_files(store, record))
    text = json.dumps(documents.document(fmt, name, record.id, packages), indent=2) + "\n"
    digest = referrers.attach(engine, record.manifest_digest, record.manifest_media_type,
                              store.blobs.size(record.manifest_digest), fmt, text.encode())
    return record, text, digest


def _sarif(findings) -> dict:
    from pallet.kernel import __version__

    levels = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "note", "UNKNOWN": "note"}
    rules = {f.id: {"id": f.id, "shortDescription": {"text": f.summary or f.id}} for f in findings}
    results = [{"ruleId": f.id, "level": levels[f.severity],
                "message": {"text": f"{f.package.name} {f.package.version} is affected by {f.id}"
                                    + (f" (fixed in {f.fixed})" if f.fixed else "")},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.package.location}}}]}
               for f in findings]
    return {"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "runs": [{"tool": {"driver": {"name": "pallet", "version": __version__, "rules": list(rules.values())}},
                      "results": results}]}


@click.command("scan")
@click.argument("name", required=False)
@click.option("--db", required=True, metavar="DIR", help="OSV advisory directory (offline).")
@click.option("--update-from", metavar="URL|FILE", default=None, help="First import an OSV zip into --db.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "sarif"]), default="table", show_default=True)
@click.option("--severity", type=click.Choice(["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"], case_sensitive=False),
              default="UNKNOWN", show_default=True, help="Report findings of at least this severity.")
@click.option("--exit-code", type=int, default=0, show_default=True,
              help="Exit with this code when anything is reported (for CI gates).")
@click.pass_context
def scan(ctx, name, db, update_from, fmt, severity, exit_code):
    """Match an image's packages against an offline OSV database (Debian, Alpine, PyPI, npm)."""
    from pallet.kernel.trust import osv

    if update_from:
        count = osv.import_zip(db, update_from)
        click.echo(f"Imported {count} advisories into {db}", err=bool(name))
    if not name:
        if not update_from:
            raise UsageError("name an image to scan (or give --update-from to only import)")
        return
    _record, packages = _inventory(ctx, name)
    index = osv.load(db)
    try:
        matched = osv.match(index, packages)
    finally:
        index.close()
    floor = osv.SEVERITIES.index(severity.upper())
    findings = [f for f in matched if osv.SEVERITIES.index(f.severity) >= floor]
    if fmt == "sarif":
        click.echo(json.dumps(_sarif(findings), indent=2))
    else:
        rows = [{"Package": f.package.name, "Installed": f.package.version, "Fixed": f.fixed or "",
                 "Vulnerability": f.id, "Severity": f.severity, "Ecosystem": f.package.ecosystem,
                 "Location": f.package.location} for f in findings]
        emit(rows, [("PACKAGE", "Package"), ("INSTALLED", "Installed"), ("FIXED", "Fixed"),
                    ("VULNERABILITY", "Vulnerability"), ("SEVERITY", "Severity"), ("ECOSYSTEM", "Ecosystem")],
             None, fmt == "json")
    if findings and exit_code:
        sys.stdout.flush()
        raise PalletError(f"{len(findings)} vulnerabilities found in {name}", exit_code=exit_code)
