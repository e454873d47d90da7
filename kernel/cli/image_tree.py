"""``pallet images --tree``: docker 28's tree view — each image, its platform variants, their disk usage and content size.

pallet keeps one platform per image record; an image pulled from an index remembers that index, so its
other platforms are listed too (available when another record holds them, as after a second
``pull --platform``). An untagged record that is such a variant is shown under its index's image only.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field

import click

from pallet.kernel import humanize
from pallet.kernel.errors import PalletError

SPACING = 3
WARNING = "WARNING: This is an experimental feature. The output may change and shouldn't be depended on."
LEGEND = " Info ->  U In Use "


@dataclass
class Row:
    """One line's details: an image (the sum of its variants) or one platform variant."""

    id: str
    disk: int = 0
    content: int = 0
    in_use: bool = False
    available: bool = True
    platform: str = ""
    names: list[str] = field(default_factory=list)
    children: list[Row] = field(default_factory=list)
    created: str = ""


def _content_size(store, record) -> int:
    """Bytes of the blobs that make the image: manifest, config and (compressed) layers, as far as stored."""
    from pallet.kernel.images import manifest as mf

    manifest = mf.parse_manifest(store.blobs.read(record.manifest_digest))
    digests = {record.manifest_digest, manifest.config.digest, *(layer.digest for layer in manifest.layers)}
    return sum(store.blobs.size(d) for d in digests if store.blobs.has(d))


def _variant(store, record, used: dict[str, list[str]], platform: str, digest: str) -> Row:
    content = _content_size(store, record)
    return Row(id=digest, disk=content + record.size, content=content, in_use=bool(used.get(record.id)),
               platform=platform)


def _index_entries(store, record) -> list:
    from pallet.kernel.images import manifest as mf

    if not record.index_digest or not store.blobs.has(record.index_digest):
        return []
    with contextlib.suppress(PalletError):
        return [e for e in mf.parse_index(store.blobs.read(record.index_digest))
                if (e.platform or {}).get("os") not in (None, "unknown")]   # attestations are no platform
    return []


def build_rows(store, records, used: dict[str, list[str]], all_: bool) -> list[Row]:
    """The tree, newest image first; dangling ones (no tag, no digest) only with ``all_``, as Docker."""
    from pallet.kernel.images import manifest as mf

    by_manifest = {r.manifest_digest: r for r in store.all()}
    folded = set()
    tops = []
    for record in records:
        entries = _index_entries(store, record)
        if record.repo_tags:
            folded.update(e.digest for e in entries if e.digest != record.manifest_digest)
        tops.append((record, entries))
    rows = []
    for record, entries in tops:
        if not record.repo_tags and (record.manifest_digest in folded or not (all_ or record.repo_digests)):
            continue
        top = Row(id=record.id, names=list(record.repo_tags), created=record.created)
        if entries:
            for entry in entries:
                held = by_manifest.get(entry.digest)
                name = mf.platform_text(entry.platform or {})
                top.children.append(_variant(store, held, used, name, entry.digest) if held else
                                    Row(id=entry.digest, available=False, platform=name))
        else:
            top.children.append(_variant(store, record, used, mf.platform_text(mf.config_platform(record.config)),
                                         record.manifest_digest))
        top.disk = sum(c.disk for c in top.children)
        top.content = sum(c.content for c in top.children)
        top.in_use = any(c.in_use for c in top.children)
        rows.append(top)
    rows.sort(key=lambda row: row.created, reverse=True)
    return rows


def manifest_summaries(store, record, used: dict[str, list[str]]) -> list[dict]:
    """Docker's ``Manifests`` of ``GET /images/json?manifests=1`` (API 1.47) for one image: its platform
    variants as the tree shows them, each an ``ImageManifestSummary`` of kind ``image``."""
    from pallet.kernel.images import manifest as mf

    by_manifest = {r.manifest_digest: r for r in store.all()}
    entries = _index_entries(store, record)
    if not entries:
        platform = mf.config_platform(record.config)
        media_type = mf.parse_manifest(store.blobs.read(record.manifest_digest)).media_type \
            if store.blobs.has(record.manifest_digest) else ""
        entries = [mf.Descriptor(media_type=media_type, digest=record.manifest_digest,
                                 size=store.blobs.size(record.manifest_digest), platform=platform)]
    summaries = []
    for entry in entries:
        held = by_manifest.get(entry.digest)
        row = _variant(store, held, used, "", entry.digest) if held else Row(id=entry.digest, available=False)
        platform = dict(entry.platform or {})
        summaries.append({
            "ID": entry.digest,
            "Descriptor": {"mediaType": entry.media_type, "digest": entry.digest, "size": entry.size,
                           **({"platform": platform} if platform else {})},
            "Available": row.available, "Size": {"Total": row.disk, "Content": row.content}, "Kind": "image",
            "ImageData": {"Platform": platform, "Containers": list(used.get(held.id, [])) if held else [],
                          "Size": {"Unpacked": held.size if held else 0}},
            "AttestationData": None})
    return summaries


def _cell(text: str, width: int, align: str) -> str:
    if len(text) > width:
        return text[:max(width - 1, 0)] + "…"
    return text.rjust(width) if align == "right" else text.ljust(width)


def render(rows: list[Row], width: int) -> list[str]:
    """The lines docker 28 prints on a plain (non-colour) output ``width`` columns wide."""
    columns = [("ID", 12, "left"), ("DISK USAGE", 10, "right"), ("CONTENT SIZE", 12, "right"),
               ("EXTRA", 5, "left")]
    name_width = width
    kept = []
    for title, size, align in columns:   # the name column keeps at least 12; columns that do not fit go
        if name_width - size - SPACING < 12:
            break
        name_width -= size + SPACING
        kept.append((title, size, align))
    widest = max([len("IMAGE")] + [len(n) for row in rows for n in row.names]
                 + [len(c.platform) + 3 for row in rows for c in row.children])
    name_width = min(name_width, widest)

    def details(row: Row) -> str:
        values = {"ID": row.id.split(":", 1)[-1][:12], "DISK USAGE": humanize.size(row.disk),
                  "CONTENT SIZE": humanize.size(row.content), "EXTRA": "U" if row.in_use else " "}
        return "".join(" " * SPACING + _cell(values[title], size, align) for title, size, align in kept)

    lines = [WARNING, " " * max(width - len(LEGEND), 0) + LEGEND, ""]
    lines.append((_cell("IMAGE", name_width, "left") + "".join(" " * SPACING + _cell(t, s, a) for t, s, a in kept))
                 .rstrip())
    for row in rows:
        names = sorted(row.names, key=len, reverse=True) or ["<untagged>"]
        lines += names[:-1]
        lines.append((_cell(names[-1], name_width, "left") + details(row)).rstrip())
        for index, child in enumerate(row.children):
            branch = "└─ " if index == len(row.children) - 1 else "├─ "
            lines.append((_cell(branch + child.platform, name_width, "left") + details(child)).rstrip())
        lines.append("")
    return lines


def print_tree(store, records, used: dict[str, list[str]], all_: bool) -> None:
    width = shutil.get_terminal_size((80, 24)).columns if click.get_text_stream("stdout").isatty() else 80
    click.echo("\n".join(render(build_rows(store, records, used, all_), max(width, 20))))
