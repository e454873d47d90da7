"""Shared output for commands: tables, ``--json``, JSON lines and Go-template ``--format``.

``--format`` is Go's text/template (:mod:`pallet.kernel.cli.gotemplate`) with Docker's functions,
``table`` as a prefix (a header row, aligned columns) and ``json`` alone (one object a line).
"""

from __future__ import annotations

import json
import re

import click

_FIELD = re.compile(r"\{\{-?\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*-?\}\}")


def render_template(template: str, row, strict: bool = False) -> str:
    """``strict``: a missing field is an error (list rows), else Go's ``<no value>`` (inspect documents)."""
    from pallet.kernel.cli.gotemplate import render  # only --format needs the template engine

    return render(template.replace("\\t", "\t").replace("\\n", "\n"), row, strict=strict)


def emit(rows: list[dict], columns: list[tuple[str, str]], fmt: str | None = None, as_json: bool = False,
         quiet_field: str | None = None, quiet: bool = False) -> None:
    """Print ``rows`` as a table (``columns`` = [(header, key)]), JSON, a template, or one field per line."""
    if quiet and quiet_field:
        for row in rows:
            click.echo(row[quiet_field])
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if fmt == "json":  # Docker 23+: one object a line, so scripts can read a stream line by line
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    if fmt == "table":
        fmt = None  # Docker: "table" alone is the default table
    if fmt:
        template = fmt[len("table"):].strip() if fmt.startswith("table") else fmt
        from pallet.kernel.cli.gotemplate import parse

        parse(template)  # a malformed template fails even when there are no rows
        if fmt.startswith("table"):
            headers = {key: header for header, key in columns}  # Docker's headers: .ID is "CONTAINER ID"
            header = _FIELD.sub(lambda m: headers.get(m.group(2), m.group(2).upper()), template.replace("\\t", "\t"))
            lines = [header] + [render_template(template, row, strict=True) for row in rows]
            click.echo(_align(lines))
        else:
            for row in rows:
                click.echo(render_template(fmt, row, strict=True))
        return
    lines = ["\t".join(header for header, _ in columns)]
    lines += ["\t".join(_cell(row.get(key)) for _, key in columns) for row in rows]
    click.echo(_align(lines))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _align(lines: list[str]) -> str:
    """Docker-style columns: each column padded to its widest cell plus three spaces."""
    table = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in table:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    return "\n".join(
        "".join(cell.ljust(widths[i] + 3) if i < len(cells) - 1 else cell for i, cell in enumerate(cells)).rstrip()
        for cells in table
    )


def format_option(func):
    return click.option("--format", "fmt", metavar="TEMPLATE",
                        help="Format output: 'json', 'table …' or a Go-style template like '{{.Name}}'.")(func)


def inspect_format_option(func):
    """``inspect`` commands take ``-f`` too, as Docker's do (list commands keep ``-f`` for --filter)."""
    return click.option("-f", "--format", "fmt", metavar="TEMPLATE",
                        help="Format output: 'json' or a Go template like '{{.Id}}'.")(func)


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def filter_map(pairs) -> dict[str, list[str]]:
    """``--filter KEY=VALUE`` options as {key: [values]}, Docker's error for a pair without ``=``."""
    from pallet.kernel.errors import UsageError

    filters: dict[str, list[str]] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f'bad format of filter (expected name=value): "{pair}"')
        filters.setdefault(key, []).append(value)
    return filters


def print_inspected(ctx, names, lookup, fmt) -> None:
    """``X inspect NAME…`` as Docker prints it: the objects ``lookup(name)`` gives, as one JSON array or
    ``FORMAT`` per object; a name it refuses (a ``PalletError``) is one ``Error:`` line, and the command
    exits 1 after printing the others."""
    from pallet.kernel.errors import PalletError

    found, failed = [], False
    for name in names:
        try:
            found.append(lookup(name))
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if fmt and fmt != "json":
        for item in found:
            click.echo(render_template(fmt, item))
    else:
        click.echo(json.dumps(found, indent=4))
    if failed:
        ctx.exit(1)
