"""syslog: RFC 5424 messages to ``unix://``, ``udp://``, ``tcp://`` or ``tcp+tls://`` (Docker's syslog driver).

Over a stream (tcp, tls) messages are octet-counted (RFC 5425/6587 framing, as Docker frames
rfc5424); over udp and unix one message is one datagram. stdout lines have severity info,
stderr lines err; the facility is ``syslog-facility`` (default daemon), APP-NAME the ``tag``.
"""

from __future__ import annotations

import os
import time

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, RemoteLogDriver
from pallet.kernel.errors import UsageError
from pallet.plugins.logging.remote import open_socket, parse_address, tls_context

FACILITIES = {name: code for code, name in enumerate(
    "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp".split())}
FACILITIES.update({f"local{n}": 16 + n for n in range(8)})
SCHEMES = ("unix", "unixgram", "udp", "tcp", "tcp+tls", "tls")


class SyslogLog(RemoteLogDriver):
    name = "syslog"
    description = "RFC 5424 over unix, udp, tcp or tcp+tls"
    options_known = frozenset({"syslog-address", "syslog-facility", "syslog-format", "syslog-tls-ca-cert",
                               "syslog-tls-cert", "syslog-tls-key", "syslog-tls-skip-verify"})

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    @classmethod
    def check_options(cls, options):
        super().check_options(options)
        parse_address(options.get("syslog-address", "unix:///dev/log"), SCHEMES, 514, "syslog-address")
        if options.get("syslog-facility", "daemon") not in FACILITIES:
            raise UsageError(f'invalid syslog facility "{options["syslog-facility"]}" '
                             f'(one of {", ".join(FACILITIES)})')
        if options.get("syslog-format", "rfc5424") not in ("rfc5424", "rfc5424micro"):
            raise UsageError(f'unsupported syslog format "{options["syslog-format"]}" (rfc5424, rfc5424micro)')

    def __init__(self, context):
        super().__init__(context)
        self.check_options(self.options)
        self.scheme, self.address, self.where = parse_address(
            self.options.get("syslog-address", "unix:///dev/log"), SCHEMES, 514, "syslog-address")
        self.facility = FACILITIES[self.options.get("syslog-facility", "daemon")]
        self.app = self.tag()[:48] or "-"
        self.host = os.uname().nodename or "-"
        self.micro = self.options.get("syslog-format") == "rfc5424micro"
        self.sock = None

    def endpoint(self):
        return self.address

    def connect(self):
        tls = tls_context(self.options, "syslog") if self.scheme in ("tcp+tls", "tls") else None
        scheme = "tcp" if tls else self.scheme
        self.sock = open_socket(scheme, self.where, tls=tls)

    def format(self, message) -> bytes:
        seconds, ns = divmod(message.time_ns, 1_000_000_000)
        frac = ".%06d" % (ns // 1000) if self.micro else ".%03d" % (ns // 1_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + frac + "Z"
        severity = 3 if message.stream == "stderr" else 6
        head = f"<{self.facility * 8 + severity}>1 {stamp} {self.host} {self.app} {os.getpid()} {self.container.get('id', '-')[:12] or '-'} - "
        return head.encode() + message.line

    def send(self, message):
        import socket

        data = self.format(message)
        if self.sock.type == socket.SOCK_STREAM and self.scheme not in ("unix",):
            self.sock.sendall(b"%d " % len(data) + data)
        elif self.sock.type == socket.SOCK_STREAM:
            self.sock.sendall(data + b"\n")
        else:
            self.sock.send(data)


@hookimpl
def pallet_register_log_drivers(register):
    register("syslog", SyslogLog)
