"""Where a container's output goes: choose and check its log driver, and make the monitor's sink.

``resolve`` runs at create time (``--log-driver``/``--log-opt``, else ``pallet.toml``'s
``[logging] driver``/``opts``, else json-file) and refuses an unknown driver, an unknown option or
a driver unavailable here, before anything starts. ``open_sink`` runs in the container's monitor:
json-file and local write their file directly (no plugin loaded: the bare log pump stays small);
any other driver is opened through the plugin manager and gets every line, while a bounded
json-file copy serves ``pallet logs`` (Docker's dual logging).
"""

from __future__ import annotations

from pathlib import Path

from pallet.kernel.drivers.logging import CONTAINER_KEYS, ERROR_FILE, LOCAL_COPY, LogMessage
from pallet.kernel.errors import PalletError

FILE_DRIVERS = ("json-file", "local")


def resolve(engine, log_config: dict | None) -> dict:
    """The container's ``LogConfig`` ``{"Type", "Config"}``, defaulted from the config file and checked."""
    log_config = dict(log_config or {})
    section = engine.config.section("logging")
    driver = log_config.get("Type") or section.get("driver") or "json-file"
    options = dict(log_config.get("Config") or {})
    if not log_config.get("Type") or log_config.get("Type") == section.get("driver"):
        options = {**{str(k): str(v) for k, v in (section.get("opts") or {}).items()}, **options}
    if driver in (*FILE_DRIVERS, "none") and not engine.plugins.declared("logging"):
        # An install whose metadata predates the pallet.logging group: the monitor writes these itself.
        if driver == "none" and options:
            from pallet.kernel.errors import UsageError
            raise UsageError(f"unknown log opt '{sorted(options)[0]}' for none log driver")
        json_log_check(driver, options)
        return {"Type": driver, "Config": options}
    record = engine.plugins.driver("logging", driver)
    record.cls.check_options(options)
    availability = record.availability(None, options)
    if not availability.available:
        raise PalletError(f'log driver "{driver}" is unavailable on this host: {availability.reason}')
    if driver in FILE_DRIVERS:
        json_log_check(driver, options)
    return {"Type": driver, "Config": options}


def json_log_check(driver: str, options: dict) -> None:
    """max-size, max-file and compress as Docker's json-file and local check them (tests/services/
    test_local_vs_docker.py holds the two side by side). Unlike Docker's json-file, ``max-size -1``
    is taken: rotation is on by default here, and that is the way to turn it off."""
    from pallet.kernel.errors import UsageError
    from pallet.kernel.runopts import parse_size

    size = options.get("max-size")
    if size is not None and not (size == "-1" and driver == "json-file"):
        if parse_size(size, "--log-opt max-size") <= 0 and driver == "json-file":
            raise UsageError("max-size must be a positive number")
    files = options.get("max-file")
    if files is not None and not (files.isascii() and files.isdigit()):
        raise UsageError(f'invalid value for max-file: "{files}"')
    if files is not None and int(files) < 1:
        raise UsageError("max-file cannot be less than 1")
    compress = options.get("compress", "true" if driver == "local" else "false").lower()
    if compress not in ("true", "false", "1", "0"):
        raise UsageError(f'invalid value for compress: "{options["compress"]}"')
    if compress in ("true", "1") and (files == "1" or size == "-1"):
        raise UsageError("compress cannot be true when max-file is less than 2 or max-size is not set"
                         if driver == "json-file" else "compression cannot be enabled when max file count is 1")


def container_options(record) -> dict:
    """The reserved ``pallet.*`` options a driver finds its container's identity in."""
    values = (record.id, record.name, record.image_ref, record.image_id, str(record.created))
    return dict(zip(CONTAINER_KEYS, values))


def sink_params(record, log_path: Path, plugins=None) -> dict:
    """What the monitor needs to open the sink (written into ``monitor.json``). With ``plugins``, a
    plugin driver's class is named too (``module:qualname``): the log pump then imports that module
    alone, not the plugin manager, stevedore and every logging plugin (1.2 MB RSS less per container)."""
    log = record.host_config.get("LogConfig") or {}
    params = {"driver": log.get("Type") or "json-file", "config": dict(log.get("Config") or {}),
              "container": container_options(record), "path": str(log_path)}
    if plugins is not None and params["driver"] not in (*FILE_DRIVERS, "none"):
        try:
            cls = plugins.driver("logging", params["driver"]).cls
        except PalletError:   # gone since create: the pump's own look-up reports it
            return params
        params["class"] = f"{cls.__module__}:{cls.__qualname__}"
    return params


def _driver_class(name: str):
    """The class ``module:qualname`` names, or None when it cannot be found so (then the plugin manager
    looks the driver up)."""
    import importlib

    module, _sep, qualname = name.partition(":")
    try:
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None


class DualLog:
    """A log driver plus the bounded local json-file copy: the pump's ``write``/``close`` for both.
    ``long_line_pieces`` cuts a line past 16 KiB (the pump's)."""

    def __init__(self, local, driver, long_line_pieces):
        self.local, self.driver, self.partial = local, driver, {}
        self.long_line_pieces = long_line_pieces

    def write(self, stream, data):
        long_line_pieces = self.long_line_pieces
        self.local.write(stream, data)
        lines = (self.partial.pop(stream, b"") + data).split(b"\n")
        pieces, self.partial[stream] = long_line_pieces(lines.pop())
        if lines or pieces:
            import time

            now = time.time_ns()
            for line in lines:
                head, line = long_line_pieces(line)   # a line past 16 KiB: in pieces, as Docker's partial messages
                for piece in head:
                    self.driver.log(LogMessage(stream, piece, now, partial=True))
                self.driver.log(LogMessage(stream, line, now))
            for piece in pieces:
                self.driver.log(LogMessage(stream, piece, now, partial=True))

    def release(self):
        """The container exited (called from the pump's watcher thread): see RemoteLogDriver.release."""
        release = getattr(self.driver, "release", None)
        if release is not None:
            release()

    def close(self):
        import time

        for stream, rest in self.partial.items():
            if rest:
                self.driver.log(LogMessage(stream, rest, time.time_ns(), partial=True))
        self.local.close()
        self.driver.close()


def open_sink(params: dict, json_log_for, long_line_pieces, plugins=None, run_root=None):
    """The object the monitor writes output to (``write(stream, bytes)``, ``close()``), or None for ``none``.

    ``json_log_for`` and ``long_line_pieces`` are :mod:`pallet.kernel.logpump`'s, passed in by the monitor:
    the log pump imports this module, so this one does not import it back.
    """
    driver, config, path = params["driver"], params["config"], params["path"]
    if driver == "none":
        return None
    if driver in FILE_DRIVERS:
        return json_log_for(path, driver, config)
    from pallet.kernel.drivers.base import DriverContext, open_driver

    home = Path(path).parent
    with _suppress_missing():
        (home / ERROR_FILE).unlink()
    context = DriverContext(home=home, options={**config, **params["container"]})
    cls = _driver_class(params["class"]) if plugins is None and params.get("class") else None
    if cls is not None:
        opened = open_driver(cls, "logging", driver, context)
    else:
        if plugins is None:
            from pallet.kernel.plugins import PluginManager

            plugins = PluginManager(cache_dir=run_root)
        opened = plugins.open("logging", driver, context)
    if opened.reads_locally:
        return DualLog(_Nothing(), opened, long_line_pieces)
    size, files = LOCAL_COPY
    return DualLog(json_log_for(path, "json-file", {"max-size": str(size), "max-file": str(files)}), opened,
                   long_line_pieces)


class _Nothing:
    """No local copy (the driver keeps its own readable file)."""

    def write(self, stream, data):
        pass

    def close(self):
        pass


def _suppress_missing():
    import contextlib

    return contextlib.suppress(FileNotFoundError)


def failure(log_path: Path) -> str:
    """The driver's reported failure for this container's last start, or ''."""
    try:
        return (Path(log_path).parent / ERROR_FILE).read_text().strip()
    except OSError:
        return ""
