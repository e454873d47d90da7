"""Log transports the audit found untested, against real listeners this test opens: syslog over ``unix://``
and ``tcp+tls://`` (a certificate made here), GELF over TCP; the ``local`` driver's compressed rotation;
and the bounded buffer of a network driver whose endpoint is down or stalled."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.containers.conftest import record
from tests.services.conftest import eventually

SCRIPT = "echo out-line; echo err-line >&2"


def _tcp_listener(port: int = 0, backlog: int = 4) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    sock.settimeout(60)
    return sock


def _read_until_eof(conn) -> bytes:
    conn.settimeout(60)
    data = b""
    with conn:
        while chunk := conn.recv(65536):
            data += chunk
    return data


def _octet_counted(data: bytes) -> list[bytes]:
    messages = []
    while data:
        length, _sp, rest = data.partition(b" ")
        messages.append(rest[:int(length)])
        data = rest[int(length):]
    return messages


def _check_rfc5424(messages: list[bytes], cid: str) -> None:
    by_line = {m.rsplit(b" ", 1)[-1]: m.decode() for m in messages}
    assert sorted(by_line) == [b"err-line", b"out-line"], messages
    out, err = by_line[b"out-line"], by_line[b"err-line"]
    assert out.startswith("<30>1 ") and err.startswith("<27>1 ")  # daemon.info, daemon.err
    _pri, stamp, _host, app, _pid, msgid, sd, _msg = out.split(" ", 7)
    assert app == cid[:12] and msgid == cid[:12] and sd == "-" and stamp.endswith("Z")


# --- syslog over unix:// ------------------------------------------------------------------

def test_syslog_over_a_unix_stream_socket_is_newline_framed(bb, tmp_path):
    path = tmp_path / "syslog.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(60)
    with listener:
        bb("run", "--name", "lt-unix", "--log-driver", "syslog", "--log-opt", f"syslog-address=unix://{path}",
           "busybox", "sh", "-c", SCRIPT, check=True)
        conn, _ = listener.accept()
        data = _read_until_eof(conn)
    assert data.endswith(b"\n")
    _check_rfc5424(data.splitlines(), record(bb, "lt-unix")["Id"])


def test_syslog_over_a_unix_datagram_socket_is_one_message_a_datagram(bb, tmp_path):
    # /dev/log is a datagram socket on most hosts: unix:// falls back to it, as Docker's driver does
    path = tmp_path / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(60)
    with listener:
        bb("run", "--name", "lt-dgram", "--log-driver", "syslog", "--log-opt", f"syslog-address=unix://{path}",
           "busybox", "sh", "-c", SCRIPT, check=True)
        datagrams = [listener.recv(65536) for _ in range(2)]
    assert not any(d.endswith(b"\n") for d in datagrams)
    _check_rfc5424(datagrams, record(bb, "lt-dgram")["Id"])


# --- syslog over tcp+tls:// ---------------------------------------------------------------

def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pallet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class _TlsServer:
    """Accepts TLS connections on 127.0.0.1 in a thread; keeps what each sent until EOF."""

    def __init__(self, cert: Path, key: Path):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.listener = _tcp_listener()
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.handshake_errors: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                tls = self.context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.handshake_errors.append(str(exc))
                conn.close()
                continue
            self.received.append(_read_until_eof(tls))

    def close(self):
        self.listener.close()
        self.thread.join(timeout=10)


@pytest.fixture
def tls_server(tmp_path):
    ca, cert, key = _certificates(tmp_path)
    server = _TlsServer(cert, key)
    server.ca = ca
    try:
        yield server
    finally:
        server.close()


def test_syslog_over_tcp_tls_verifies_the_server_and_is_octet_counted(bb, tls_server):
    bb("run", "--name", "lt-tls", "--log-driver", "syslog",
       "--log-opt", f"syslog-address=tcp+tls://127.0.0.1:{tls_server.port}",
       "--log-opt", f"syslog-tls-ca-cert={tls_server.ca}", "busybox", "sh", "-c", SCRIPT, check=True)
    assert eventually(lambda: tls_server.received, timeout=60), tls_server.handshake_errors
    _check_rfc5424(_octet_counted(b"".join(tls_server.received)), record(bb, "lt-tls")["Id"])
    assert bb("logs", "lt-tls", check=True).stderr == "err-line\n"  # no delivery warning


def test_syslog_over_tls_refuses_a_server_it_cannot_verify(bb, tls_server):
    # no syslog-tls-ca-cert: the system's roots do not know the test's CA, so nothing is delivered
    bb("run", "-d", "--name", "lt-untrusted", "--log-driver", "syslog",
       "--log-opt", f"syslog-address=tcp+tls://127.0.0.1:{tls_server.port}",
       "busybox", "sh", "-c", "echo secret-line; exec sleep 1000", check=True)
    logs = eventually(lambda: (got := bb("logs", "lt-untrusted", check=True)).stderr and got, timeout=60)
    assert logs.stdout == "secret-line\n"
    assert len(logs.error_lines) == 1 and "certificate verify failed" in logs.stderr, logs.stderr
    assert record(bb, "lt-untrusted")["State"]["Running"]
    assert tls_server.received == [] or b"secret-line" not in b"".join(tls_server.received)


def test_only_a_tls_address_pays_for_importing_ssl(bb):
    """``ssl`` takes ~9 ms to import: a container (and every build RUN step) with no TLS log address
    must not import it, although the network log drivers are loaded."""

    def imported(*args: str) -> set[str]:
        argv = [sys.executable, "-X", "importtime", *bb.command(*args, engine=False)[1:]]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO), env=bb.env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}

    plain = imported("run", "--rm", "busybox", "true")
    assert "pallet.plugins.logging.remote" in plain and "ssl" not in plain
    # (the TLS tests above show that a tcp+tls:// address still gets its context, in the log pump)


# --- GELF over TCP -------------------------------------------------------------------------

def test_gelf_over_tcp_is_null_byte_framed_json(bb):
    listener = _tcp_listener()
    port = listener.getsockname()[1]
    with listener:
        bb("run", "--name", "lt-gelf", "--log-driver", "gelf", "--log-opt", f"gelf-address=tcp://127.0.0.1:{port}",
           "--log-opt", "tag={{.Name}}", "busybox", "sh", "-c", SCRIPT + "; echo 'with\ttab and \"quotes\"'",
           check=True)
        conn, _ = listener.accept()
        data = _read_until_eof(conn)
    assert data.endswith(b"\0")
    frames = data[:-1].split(b"\0")
    messages = [json.loads(frame) for frame in frames]        # plain JSON: TCP GELF is never compressed
    assert len(messages) == 3
    info = record(bb, "lt-gelf")
    by_text = {m["short_message"]: m for m in messages}
    assert set(by_text) == {"out-line", "err-line", 'with\ttab and "quotes"'}
    assert (by_text["out-line"]["level"], by_text["err-line"]["level"]) == (6, 3)
    for message in messages:
        assert message["version"] == "1.1" and message["_container_id"] == info["Id"]
        assert message["_container_name"] == "lt-gelf" and message["_tag"] == "lt-gelf"


# --- local: compressed rotation ------------------------------------------------------------

LINES = 'i=0; while [ $i -lt 300 ]; do echo "line-$i"; i=$((i+1)); done'


def _log_files(bb, name):
    log = Path(record(bb, name)["LogPath"])
    return log, sorted((p for p in log.parent.iterdir() if p.name.startswith(log.name)), key=lambda p: p.name)


@pytest.mark.parametrize("compress", ["true", "false"])
def test_local_rotates_compressed_keeps_max_file_and_logs_reads_across(bb, compress):
    bb("run", "--name", "lt-local", "--log-driver", "local", "--log-opt", "max-size=2k", "--log-opt", "max-file=3",
       "--log-opt", f"compress={compress}", "busybox", "sh", "-c", LINES, check=True)
    log, files = _log_files(bb, "lt-local")
    suffix = ".gz" if compress == "true" else ""
    assert [p.name[len(log.name):] for p in files] == ["", f".1{suffix}", f".2{suffix}"]
    lines_by_file = {}
    for path in files:
        raw = path.read_bytes()
        assert raw[:2] == b"\x1f\x8b" if path.name.endswith(".gz") else raw[:1] == b"{"
        text = gzip.decompress(raw) if path.name.endswith(".gz") else raw
        assert len(text) <= 2048
        lines_by_file[path.name[len(log.name):]] = [json.loads(line)["log"] for line in text.splitlines()]
    on_disk = lines_by_file[f".2{suffix}"] + lines_by_file[f".1{suffix}"] + lines_by_file[""]
    # only the newest output is kept, in order, and `pallet logs` reads it across the three files
    assert on_disk[-1] == "line-299\n" and "line-0\n" not in on_disk
    first = int(on_disk[0].split("-")[1])
    assert on_disk == [f"line-{n}\n" for n in range(first, 300)]
    assert bb("logs", "lt-local", check=True).stdout == "".join(on_disk)
    assert len(lines_by_file[""]) < 40   # so --tail 40 needs the rotated files too
    tail = bb("logs", "--tail", "40", "lt-local", check=True).stdout
    assert tail == "".join(f"line-{n}\n" for n in range(260, 300))


def test_local_defaults_are_dockers_20m_by_5_compressed(bb):
    # 30 MiB of 64-byte lines is some 57 MiB of JSON lines: two or three rotations of 20 MiB
    bb("run", "--name", "lt-default", "--log-driver", "local", "busybox", "sh", "-c",
       "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 31457280; echo last",
       check=True, timeout=300)
    log, files = _log_files(bb, "lt-default")
    rotated = len(files) - 1
    assert 2 <= rotated <= 4, files
    assert [p.name[len(log.name):] for p in files] == ["", *(f".{n}.gz" for n in range(1, rotated + 1))]
    for path in files[1:]:
        assert path.stat().st_size < 2 * 1024 * 1024   # 20 MiB of one repeated line compresses well
        assert 20 * 1024 * 1024 - 256 < len(gzip.decompress(path.read_bytes())) <= 20 * 1024 * 1024
    assert bb("logs", "--tail", "1", "lt-default", check=True).stdout == "last\n"


# --- a network endpoint that is down or stalled --------------------------------------------

COUNTED = 'i=0; while [ $i -lt 500 ]; do echo "line-$i"; i=$((i+1)); done; touch /tmp/done; exec sleep 1000'


def _free_port() -> int:
    probe = _tcp_listener()
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_a_down_endpoint_keeps_only_the_newest_lines_up_to_max_buffer_size(bb):
    port = _free_port()   # nobody listens there until the test does
    bb("run", "-d", "--name", "lt-down", "--log-driver", "syslog", "--log-opt", f"syslog-address=tcp://127.0.0.1:{port}",
       "--log-opt", "max-buffer-size=4k", "busybox", "sh", "-c", COUNTED, check=True)
    # the container wrote everything while nothing was listening: nothing blocked it
    assert eventually(lambda: bb("exec", "lt-down", "test", "-e", "/tmp/done").returncode == 0, timeout=120)
    logs = eventually(lambda: (got := bb("logs", "lt-down", check=True)).stdout.count("\n") == 500 and got)
    assert logs.stdout.splitlines() == [f"line-{n}" for n in range(500)]   # the local copy has every line
    assert len(logs.error_lines) == 1 and "at most 4096 bytes" in logs.stderr, logs.stderr
    listener = _tcp_listener(port)
    with listener:
        conn, _ = listener.accept()   # the sender tries again, backing off to 5 s at most
        conn.settimeout(60)
        data = b""
        with conn:
            while not data.endswith(b"line-499"):
                chunk = conn.recv(65536)
                assert chunk, data[-200:]
                data += chunk
    delivered = [m.rsplit(b" ", 1)[-1].decode() for m in _octet_counted(data)]
    first = int(delivered[0].split("-")[1])
    assert delivered == [f"line-{n}" for n in range(first, 500)]   # the newest, in order, the oldest dropped
    per_line = len("line-499") + 64                                # what a line counts against the bound
    assert 1 <= len(delivered) <= 4096 // per_line + 1, len(delivered)
    assert record(bb, "lt-down")["State"]["Running"]


def test_a_stalled_endpoint_never_blocks_the_container(bb):
    # a listener that never accepts nor reads: the kernel's buffers fill, then every send would block
    listener = _tcp_listener(backlog=1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    port = listener.getsockname()[1]
    with listener:
        bb("run", "-d", "--name", "lt-stall", "--log-driver", "gelf", "--log-opt", f"gelf-address=tcp://127.0.0.1:{port}",
           "busybox", "sh", "-c",
           "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 8388608; "
           "echo last-line; touch /tmp/done; exec sleep 1000", check=True)
        assert eventually(lambda: bb("exec", "lt-stall", "test", "-e", "/tmp/done").returncode == 0, timeout=180)
        assert eventually(lambda: bb("logs", "--tail", "1", "lt-stall", check=True).stdout == "last-line\n")
        assert record(bb, "lt-stall")["State"]["Running"]
        bb("rm", "-f", "lt-stall", check=True, timeout=60)   # and stopping it does not hang on the endpoint


# --- mode=blocking | non-blocking ----------------------------------------------------------

MANY = 'i=0; while [ $i -lt 60000 ]; do echo "line-$i"; i=$((i+1)); done; touch /tmp/done; exec sleep 1000'


def test_log_modes_are_checked_as_docker_checks_them(bb):
    for opts, message in ((["mode=sometimes"], "Error: logger: logging mode not supported: sometimes"),
                          (["mode=blocking", "max-buffer-size=4k"],
                           "Error: logger: max-buffer-size option is only supported with 'mode=non-blocking'")):
        flags = [arg for opt in opts for arg in ("--log-opt", opt)]
        result = bb("run", "--log-driver", "syslog", "--log-opt", "syslog-address=udp://127.0.0.1:9", *flags,
                    "busybox", "true")
        assert (result.returncode, result.error_lines) == (125, [message]), result.stderr
    bb("run", "--name", "lt-nb", "--log-opt", "mode=non-blocking", "--log-opt", "max-buffer-size=4m",
       "busybox", "echo", "kept", check=True)
    assert bb("logs", "lt-nb", check=True).stdout == "kept\n"


def test_blocking_mode_holds_the_container_and_drops_nothing(bb):
    port = _free_port()
    bb("run", "-d", "--name", "lt-block", "--log-driver", "syslog", "--log-opt", f"syslog-address=tcp://127.0.0.1:{port}",
       "--log-opt", "mode=blocking", "busybox", "sh", "-c", MANY, check=True)
    logs = eventually(lambda: (got := bb("logs", "lt-block", check=True)).stderr and got, timeout=60)
    assert len(logs.error_lines) == 1 and "the container waits when it is full" in logs.stderr, logs.stderr
    # 60000 lines count some 4.4 MB against the 1 MiB buffer: the writer waits for the endpoint
    assert eventually(lambda: int(bb("logs", "lt-block", check=True).stdout.count("\n")) > 10000, timeout=60)
    assert bb("exec", "lt-block", "test", "-e", "/tmp/done").returncode == 1
    listener = _tcp_listener(port)
    with listener:
        conn, _ = listener.accept()
        conn.settimeout(60)
        data = b""
        with conn:
            while not data.endswith(b"line-59999"):
                chunk = conn.recv(1 << 20)
                assert chunk, data[-200:]
                data += chunk
    delivered = [m.rsplit(b" ", 1)[-1].decode() for m in _octet_counted(data)]
    assert delivered == [f"line-{n}" for n in range(60000)]        # every line, in order: none dropped
    assert eventually(lambda: bb("exec", "lt-block", "test", "-e", "/tmp/done").returncode == 0, timeout=60)


def test_a_container_held_by_a_blocking_driver_still_stops(bb):
    port = _free_port()   # nobody ever listens
    bb("run", "-d", "--name", "lt-held", "--log-driver", "gelf", "--log-opt", f"gelf-address=tcp://127.0.0.1:{port}",
       "--log-opt", "mode=blocking", "busybox", "sh", "-c", MANY, check=True)
    assert eventually(lambda: bb("logs", "lt-held", check=True).stderr, timeout=60)
    bb("stop", "-t", "1", "lt-held", check=True, timeout=60)
    final = record(bb, "lt-held")["State"]
    assert (final["Status"], final["ExitCode"]) == ("exited", 137), final
    assert bb("exec", "lt-held", "true").returncode != 0
