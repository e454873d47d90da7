"""The event journal: what happened to containers, images, networks and volumes, for ``pallet events``.

pallet has no daemon to hold an event bus in memory, so every command and every monitor appends
the events it causes to one file, ``<root>/events/journal.jsonl`` (one JSON object a line,
in Docker's ``/events`` message shape). A reader that starts later (``pallet events --since 1h``
after the command exited) finds them there; ``follow`` tails the file. The journal is bounded:
past :data:`MAX_BYTES` the file is renamed to ``journal.1.jsonl`` (the previous one dropped), so at
most twice that stays on disk, the oldest events going first, as Docker's ring of 1024 does.

The API (also what the Engine API's ``/events`` reads):

- :func:`emit` ``(where, type, action, actor_id, attributes)`` appends one event and returns it;
- :func:`read` ``(where, since, until, filters)`` yields the stored events in the order they were written;
- :func:`follow` is ``read`` that then waits for new events until ``until`` passes (forever if None);
- :func:`parse_filters` turns ``--filter k=v`` strings into the ``filters`` mapping, :func:`parse_time`
  a ``--since``/``--until`` value into Unix seconds, :func:`format_line` an event into Docker's text line.

``where`` is an engine (its ``config.root``) or a root path. Emitting never fails a command: an
event that cannot be written (read-only root, full disk) is dropped with no error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path

MAX_BYTES = 8 * 1024 * 1024
TYPES = ("container", "image", "network", "volume", "plugin", "daemon")
FILTER_KEYS = ("container", "image", "event", "type", "label", "network", "volume")
JOURNAL, PREVIOUS, LOCK = "journal.jsonl", "journal.1.jsonl", "journal.lock"


def _dir(where) -> Path:
    root = where.config.root if hasattr(where, "config") else where
    return Path(root) / "events"


def emit(where, type: str, action: str, actor_id: str, attributes: dict | None = None) -> dict | None:
    """Append one event (``type`` container|image|network|volume, Docker's action names) and return it.

    ``attributes`` are Docker's Actor.Attributes (name, image, exitCode, container, …); values become
    strings. The line is written with one ``write`` on an O_APPEND fd, so concurrent writers do not
    interleave, and an event survives the crash of any process once it is written. It is not synced: a
    run emits four events (create, start, die, destroy), and four flushes of the disk cost more than the
    rest of a short container's bookkeeping on a busy disk; a power loss may drop the last events (Docker
    keeps none across a daemon restart). Records, images and layers stay durable.
    """
    now = time.time_ns()
    attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
    event = {"status": action, "id": actor_id, "from": attrs.get("image", ""), "Type": type, "Action": action,
             "Actor": {"ID": actor_id, "Attributes": attrs}, "scope": "local",
             "time": now // 1_000_000_000, "timeNano": now}
    if type != "container":
        del event["status"], event["id"], event["from"]
    try:
        _append(_dir(where), (json.dumps(event, separators=(",", ":")) + "\n").encode())
    except OSError:
        return None
    return event


def _append(directory: Path, line: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / JOURNAL
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size + len(line) > MAX_BYTES:
            _rotate(directory)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _rotate(directory: Path) -> None:
    """Move the full journal aside (once, under a lock: another writer may have just done it)."""
    lock = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = directory / JOURNAL
        if path.exists() and path.stat().st_size > MAX_BYTES // 2:
            os.replace(path, directory / PREVIOUS)
    finally:
        os.close(lock)


# --- reading -------------------------------------------------------------------------------

def _lines(path: Path, offset: int = 0) -> tuple[list[bytes], int]:
    """The complete lines of ``path`` from ``offset``; the offset after the last complete one."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), offset + end


def _decode(lines):
    for line in lines:
        with contextlib.suppress(ValueError):
            yield json.loads(line)


def _in_window(event: dict, since: float | None, until: float | None) -> bool:
    seconds = event.get("timeNano", 0) / 1e9
    return (since is None or seconds >= since) and (until is None or seconds <= until)


def read(where, since: float | None = None, until: float | None = None, filters: dict | None = None):
    """The stored events, oldest first, inside [since, until] (Unix seconds) and matching ``filters``."""
    directory = _dir(where)
    for name in (PREVIOUS, JOURNAL):
        lines, _end = _lines(directory / name)
        for event in _decode(lines):
            if _in_window(event, since, until) and matches(event, filters or {}):
                yield event


def follow(where, since: float | None = None, until: float | None = None, filters: dict | None = None,
           poll: float = 0.1):
    """:func:`read`, then the events written afterwards as they come, until ``until`` passes (None: forever).

    Without ``since`` only new events are shown (``docker events``). The journal is polled every
    ``poll`` seconds; a rotation (the file replaced) is noticed by its inode and read from the start.
    """
    directory = _dir(where)
    path = directory / JOURNAL
    if since is not None:
        yield from read(where, since, until, filters)
    try:
        stat = path.stat()
        inode, offset = stat.st_ino, stat.st_size
    except FileNotFoundError:
        inode, offset = None, 0
    while until is None or time.time() <= until:
        try:
            current = path.stat().st_ino
        except FileNotFoundError:
            current = None
        if current != inode:
            if inode is not None:  # the rest of the rotated file first
                lines, _end = _lines(directory / PREVIOUS, offset)
                yield from (e for e in _decode(lines) if _in_window(e, since, until) and matches(e, filters or {}))
            inode, offset = current, 0
        lines, offset = _lines(path, offset)
        for event in _decode(lines):
            if _in_window(event, since, until) and matches(event, filters or {}):
                yield event
        if not lines:
            time.sleep(poll if until is None else max(0.0, min(poll, until - time.time())))


# --- filters, times, format ---------------------------------------------------------------

def parse_filters(values) -> dict[str, list[str]]:
    """``["container=web", "event=die"]`` -> ``{"container": ["web"], "event": ["die"]}``; ValueError on bad input.

    Values of one key are alternatives (OR); different keys must all match (AND), as in Docker.
    """
    filters: dict[str, list[str]] = {}
    for value in values or ():
        key, sep, wanted = value.partition("=")
        if not sep or not wanted:
            raise ValueError(f'bad format of filter (expected name=value): "{value}"')
        if key not in FILTER_KEYS:
            raise ValueError(f'invalid filter "{key}" (known: {", ".join(FILTER_KEYS)})')
        filters.setdefault(key, []).append(wanted)
    return filters


def _actor_is(event: dict, wanted: str) -> bool:
    actor = event.get("Actor", {})
    ident = actor.get("ID", "")
    return ident == wanted or (len(wanted) >= 3 and ident.startswith(wanted)) \
        or actor.get("Attributes", {}).get("name") == wanted


def _label(attrs: dict, wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in attrs and (not sep or attrs[key] == value)


_ID = re.compile(r"(?:sha256:)?[a-f0-9]{64}")


def _strip_tag(name: str) -> str:
    """``docker.io/library/busybox:1`` -> ``busybox``: the familiar repository name (Docker's stripTag)."""
    from pallet.kernel.errors import UsageError
    from pallet.kernel.images import reference

    if _ID.fullmatch(name):
        return name   # an id, not a name: "sha256" is no repository
    try:
        return reference.parse(name, default_tag=False).familiar_name
    except (UsageError, ValueError):
        return name


def _image_is(event: dict, wanted: str) -> bool:
    """Docker's ``image=`` filter: the actor's id or image name (an image event's ``name``, another's
    ``image``), as given or without its tag, so ``image=busybox`` matches ``busybox:latest``."""
    actor = event.get("Actor", {})
    ident = actor.get("ID", "")
    name = actor.get("Attributes", {}).get("name" if event.get("Type") == "image" else "image", "")
    if wanted in (ident, name):
        return True
    if event.get("Type") == "image" and len(wanted) >= 3 and _ID.fullmatch(ident) \
            and wanted.removeprefix("sha256:") == ident.removeprefix("sha256:")[:len(wanted.removeprefix("sha256:"))]:
        return True   # an image id prefix, as pallet's other id arguments take
    return bool(name) and wanted in (_strip_tag(name), _strip_tag(ident))


def matches(event: dict, filters: dict) -> bool:
    """Whether ``event`` passes every filter key (one of each key's values)."""
    attrs = event.get("Actor", {}).get("Attributes", {})
    kind = event.get("Type")
    tests = {
        "type": lambda w: kind == w,
        "event": lambda w: event.get("Action") == w or event.get("Action", "").split(":")[0] == w,
        "container": lambda w: (kind == "container" and _actor_is(event, w)) or attrs.get("container") == w
        or (len(w) >= 3 and attrs.get("container", "").startswith(w)),
        "image": lambda w: _image_is(event, w),
        "label": lambda w: _label(attrs, w),
        "network": lambda w: kind == "network" and _actor_is(event, w),
        "volume": lambda w: kind == "volume" and _actor_is(event, w),
    }
    return all(any(tests[key](w) for w in wanted) for key, wanted in filters.items())


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_time(text: str, now: float | None = None) -> float:
    """``--since``/``--until``: Unix seconds (``1700000000.5``), RFC 3339 or a date, or a Go duration ago (``10m``)."""
    now = time.time() if now is None else now
    text = text.strip()
    with contextlib.suppress(ValueError):
        return float(text)
    found = _DURATION.match(text)
    if found:
        return now - float(found.group(1)) * _UNITS[found.group(2)]
    from datetime import datetime, timezone

    stamp = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        raise ValueError(f'invalid time "{text}": use Unix seconds, RFC 3339 or a duration such as 10m') from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def format_line(event: dict) -> str:
    """Docker's text line: ``<time, local, nanoseconds> <type> <action> <id> (k=v, …)``, attributes sorted."""
    ns = event.get("timeNano", 0)
    seconds, frac = divmod(ns, 1_000_000_000)
    local = time.localtime(seconds)
    offset = time.strftime("%z", local)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local) + ".%09d" % frac + offset[:3] + ":" + offset[3:]
    actor = event.get("Actor", {})
    attrs = actor.get("Attributes", {})
    tail = " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")" if attrs else ""
    return f"{stamp} {event.get('Type')} {event.get('Action')} {actor.get('ID', '')}{tail}"


def container_attributes(record, **extra) -> dict:
    """Docker's attributes of a container event: its labels, ``image`` and ``name``, plus ``extra``."""
    config = getattr(record, "config", None) or {}
    attrs = dict(config.get("Labels") or {})
    attrs["image"] = getattr(record, "image_ref", "") or config.get("Image") or ""
    attrs["name"] = getattr(record, "name", "") or ""
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


def container(where, record, action: str, **extra) -> dict | None:
    """Emit a container event for ``record`` (a :class:`pallet.kernel.containers.ContainerRecord`)."""
    return emit(where, "container", action, record.id, container_attributes(record, **extra))
