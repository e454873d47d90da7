"""``pallet events``: the event journal (:mod:`pallet.kernel.events`) as Docker prints it."""

from __future__ import annotations

import json
import time

import click

from pallet.kernel.errors import UsageError


@click.command("events")
@click.option("--since", default=None, help="Show events since this time (Unix seconds, RFC 3339, or a duration like 10m).")
@click.option("--until", default=None, help="Stop at this time; without it, new events are streamed until interrupted.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="container=, image=, event=, type=, label=, network=, volume= (repeat to combine).")
@click.option("--format", "fmt", default=None, metavar="TEMPLATE", help="'json' or a Go-style template like '{{.Action}}'.")
@click.pass_obj
def events_(engine, since, until, filters, fmt):
    """Get real-time events: what commands and monitors did, from the on-disk journal."""
    from pallet.kernel import events
    from pallet.kernel.cli.output import render_template

    now = time.time()
    try:
        start = events.parse_time(since, now) if since else None
        end = events.parse_time(until, now) if until else None
        wanted = events.parse_filters(filters)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if start is not None and end is not None and end < start:
        raise UsageError("--until must not be before --since")
    stream = events.read(engine, start, end, wanted) if end is not None and end <= now \
        else events.follow(engine, start, end, wanted)
    try:
        for event in stream:
            if fmt in ("json", "{{json .}}"):
                line = json.dumps(event, separators=(",", ":"))
            elif fmt:
                line = render_template(fmt, event)
            else:
                line = events.format_line(event)
            click.echo(line)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
