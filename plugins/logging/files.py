"""json-file and local: the container's log as a rotated file in its directory, read by ``pallet logs``.

The monitor writes these files itself (:func:`pallet.kernel.logpump.json_log_for`, stdlib only, so
the bare log pump needs no plugin); the classes here register the names, check the options and
write the same file when another program opens them as drivers.
"""

from __future__ import annotations

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, LogDriver
from pallet.kernel.logpump import json_log_for


class JsonFileLog(LogDriver):
    name = "json-file"
    description = "Docker's json-file format, rotated (default 10m x 3)"
    reads_locally = True
    options_known = frozenset({"max-size", "max-file", "compress"})

    def __init__(self, context):
        super().__init__(context)
        self.file = json_log_for(self.home / f"{self.container.get('id', 'container')}-json.log", self.name,
                                 self.options)

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    def log(self, message):
        self.file.write(message.stream, message.line + (b"" if message.partial else b"\n"))

    def close(self):
        self.file.close()


class LocalLog(JsonFileLog):
    name = "local"
    description = "json-file lines, rotated 20m x 5 and compressed (Docker's local defaults)"

    @classmethod
    def check_options(cls, options):
        from pallet.kernel.errors import UsageError

        for key in options:   # Docker's local words it so, unlike its json-file
            if key not in cls.options_known and key not in ("mode", "max-buffer-size"):
                raise UsageError(f"unknown log opt '{key}' for log driver local")
        super().check_options(options)


class NoLog(LogDriver):
    name = "none"
    description = "output is discarded; pallet logs has nothing to show"

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    @classmethod
    def check_options(cls, options):
        from pallet.kernel.errors import UsageError

        if options:
            raise UsageError(f"unknown log opt '{sorted(options)[0]}' for none log driver")

    def log(self, message):
        pass


@hookimpl
def pallet_register_log_drivers(register):
    register("json-file", JsonFileLog)
    register("local", LocalLog)
    register("none", NoLog)
