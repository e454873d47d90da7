"""Shared output for commands: tables, ``--json`` and Docker-style ``--format`` templates.

``--format`` understands the subset of Go templates scripts use with the docker CLI:
``{{.Field}}``, ``{{json .}}``, ``{{json .Field}}``, ``table`` as a prefix, and ``json``
alone (JSON lines, as Docker 23+). Written by hand because a full Go-template engine would be a large dependency for
these four forms.
"""

from __future__ import annotations

import json
import re

import click

_FIELD = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def _lookup(row: dict, dotted: str):
    value = row
    for part in filter(None, dotted.split(".")):
        if not isinstance(value, dict) or part not in value:
            raise click.UsageError(f'template: field "{part}" does not exist (have: {", ".join(sorted(row))})')
        value = value[part]
    return value


def render_template(template: str, row: dict) -> str:
    def substitute(match):
        value = _lookup(row, match.group(2))
        if match.group(1) or isinstance(value, (dict, list)):
            return json.dumps(value)
        if isinstance(value, bool):
            return "true" if value else "false"  # Go prints booleans in lower case
        return "" if value is None else str(value)

    return _FIELD.sub(substitute, template.replace("\\t", "\t").replace("\\n", "\n"))


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
    if fmt:
        if fmt.startswith("table"):
            template = fmt[len("table"):].strip()
            header = _FIELD.sub(lambda m: m.group(2).upper(), template.replace("\\t", "\t"))
            lines = [header] + [render_template(template, row) for row in rows]
            click.echo(_align(lines))
        else:
            for row in rows:
                click.echo(render_template(fmt, row))
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


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)
