"""Log drivers (plugins/logging): real listeners opened by the test receive the container's lines."""

from __future__ import annotations

import gzip
import json
import os
import socket
import struct
import time
from pathlib import Path

import msgpack
import pytest

from tests.containers.conftest import record
from tests.services.test_log_transports import _octet_counted

SCRIPT = "echo out-line; echo err-line >&2"


def _udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30)
    return sock


def _tcp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(30)
    return sock


def _read_all(listener) -> bytes:
    conn, _ = listener.accept()
    conn.settimeout(30)
    data = b""
    with conn:
        while chunk := conn.recv(65536):
            data += chunk
    return data


def _both_lines_in_logs(bb, name):
    logs = bb("logs", name, check=True)
    assert logs.stdout == "out-line\n" and logs.stderr == "err-line\n"


def test_syslog_udp_rfc5424_with_facility_and_tag_template(bb):
    listener = _udp()
    port = listener.getsockname()[1]
    before = time.time()
    with listener:
        bb("run", "--name", "lg-sys", "--log-driver", "syslog", "--log-opt", f"syslog-address=udp://127.0.0.1:{port}",
           "--log-opt", "syslog-facility=local3", "--log-opt", "tag={{.Name}}/{{.ID}}",
           "busybox", "sh", "-c", SCRIPT, check=True)
        got = sorted(listener.recv(65536).decode() for _ in range(2))
    cid = record(bb, "lg-sys")["Id"]
    by_message = {line.rsplit(" ", 1)[-1]: line for line in got}
    out, err = by_message["out-line"], by_message["err-line"]
    assert out.startswith(f"<{19 * 8 + 6}>1 ") and err.startswith(f"<{19 * 8 + 3}>1 ")
    _pri, stamp, _host, app, _pid, msgid, sd, _msg = out.split(" ", 7)
    assert app == f"lg-sys/{cid[:12]}" and msgid == cid[:12] and sd == "-"
    sent = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 1 <= sent <= time.time() + 1 and stamp.endswith("Z")
    _both_lines_in_logs(bb, "lg-sys")


def test_the_log_pump_opens_a_remote_driver_from_its_own_module_alone(bb):
    """The pump of a detached syslog container imports the syslog plugin, not the plugin manager and
    every logging plugin: gelf's gzip (zlib's extension module) is not mapped in it."""
    listener = _udp()
    port = listener.getsockname()[1]
    with listener:
        bb("run", "-d", "--name", "lg-lean", "--log-driver", "syslog", "--log-opt",
           f"syslog-address=udp://127.0.0.1:{port}", "busybox", "sh", "-c", "echo lean-line; exec sleep 1000",
           check=True)
        assert listener.recv(65536).decode().endswith(" lean-line")
    pid = record(bb, "lg-lean")["State"]["Pid"]
    pump = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert "logpump.py" in Path(f"/proc/{pump}/cmdline").read_text()
    maps = Path(f"/proc/{pump}/maps").read_text()
    assert "zlib" not in maps
    bb("rm", "-f", "lg-lean", check=True)


def test_syslog_tcp_is_octet_counted(bb):
    listener = _tcp()
    port = listener.getsockname()[1]
    with listener:
        bb("run", "--name", "lg-tcp", "--log-driver", "syslog", "--log-opt", f"syslog-address=tcp://127.0.0.1:{port}",
           "busybox", "sh", "-c", SCRIPT, check=True)
        data = _read_all(listener)
    messages = _octet_counted(data)
    assert sorted(m.rsplit(b" ", 1)[-1] for m in messages) == [b"err-line", b"out-line"]
    assert all(m.startswith(b"<30>1 ") or m.startswith(b"<27>1 ") for m in messages)  # daemon.info / daemon.err


def test_gelf_udp_chunks_a_long_line(bb):
    listener = _udp()
    port = listener.getsockname()[1]
    with listener:
        bb("run", "--name", "lg-gelf", "--log-driver", "gelf", "--log-opt", f"gelf-address=udp://127.0.0.1:{port}",
           "--log-opt", "gelf-compression-type=none", "busybox", "sh", "-c",
           "echo short-one; head -c 6000 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo", check=True)
        messages, pending = [], {}
        while len(messages) < 2:
            datagram = listener.recv(65536)
            if datagram[:2] == b"\x1e\x0f":
                ident, seq, count = datagram[2:10], datagram[10], datagram[11]
                parts = pending.setdefault(ident, {})
                parts[seq] = datagram[12:]
                assert len(datagram) <= 1420
                if len(parts) == count:
                    messages.append(json.loads(b"".join(parts[n] for n in range(count))))
            else:
                messages.append(json.loads(datagram))
    info = record(bb, "lg-gelf")
    short = next(m for m in messages if m["short_message"] == "short-one")
    long = next(m for m in messages if m["short_message"] != "short-one")
    assert len(long["short_message"]) == 12000 and pending  # it came in chunks
    assert short["version"] == "1.1" and short["level"] == 6
    assert short["_container_id"] == info["Id"] and short["_container_name"] == "lg-gelf"
    assert short["_tag"] == info["Id"][:12] and abs(short["timestamp"] - time.time()) < 120


def test_gelf_udp_gzip_by_default(bb):
    listener = _udp()
    port = listener.getsockname()[1]
    with listener:
        bb("run", "--log-driver", "gelf", "--log-opt", f"gelf-address=udp://127.0.0.1:{port}",
           "busybox", "sh", "-c", "echo zipped >&2", check=True)
        message = json.loads(gzip.decompress(listener.recv(65536)))
    assert message["short_message"] == "zipped" and message["level"] == 3


def test_fluentd_forward_protocol(bb):
    listener = _tcp()
    port = listener.getsockname()[1]
    before = time.time_ns()
    with listener:
        bb("run", "--name", "lg-fl", "--log-driver", "fluentd", "--log-opt", f"fluentd-address=127.0.0.1:{port}",
           "--log-opt", "tag=app.{{.Name}}", "--log-opt", "fluentd-sub-second-precision=true",
           "busybox", "sh", "-c", SCRIPT, check=True)
        data = _read_all(listener)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    entries = list(unpacker)
    assert len(entries) == 2
    cid = record(bb, "lg-fl")["Id"]
    for tag, when, body in entries:
        assert tag == "app.lg-fl"
        assert isinstance(when, msgpack.ExtType) and when.code == 0
        seconds, ns = struct.unpack(">II", when.data)
        assert before <= seconds * 10**9 + ns <= time.time_ns()
        assert body["container_id"] == cid and body["container_name"] == "/lg-fl"
    assert sorted((b["source"], b["log"]) for _t, _w, b in entries) == [("stderr", "err-line"), ("stdout", "out-line")]
    _both_lines_in_logs(bb, "lg-fl")


def test_journald_native_protocol_on_a_journal_socket(bb, tmp_path):
    path = tmp_path / "journal.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(30)
    with listener:
        bb("run", "--name", "lg-j", "--log-driver", "journald", "busybox", "sh", "-c", "echo journal-line",
           env={"PALLET_JOURNAL_SOCKET": str(path)}, check=True)
        fields = dict(line.split("=", 1) for line in listener.recv(65536).decode().splitlines())
    assert fields["MESSAGE"] == "journal-line" and fields["PRIORITY"] == "6"
    assert fields["CONTAINER_NAME"] == "lg-j" and fields["CONTAINER_ID_FULL"] == record(bb, "lg-j")["Id"]


def test_journald_without_a_journal_socket_is_unavailable(bb, tmp_path):
    result = bb("run", "--log-driver", "journald", "busybox", "true",
                env={"PALLET_JOURNAL_SOCKET": str(tmp_path / "absent.sock")})
    assert result.returncode == 125
    assert result.error_lines == [f'Error: log driver "journald" is unavailable on this host: no journal socket at '
                                  f'{tmp_path / "absent.sock"} (systemd-journald is not running here)']


def test_endpoint_down_container_runs_failure_reported_once(bb):
    closed = _tcp()
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there now
    bb("run", "-d", "--name", "lg-down", "--log-driver", "syslog", "--log-opt", f"syslog-address=tcp://127.0.0.1:{port}",
       "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done; sleep 30", check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = bb("logs", "lg-down", check=True)
        if logs.stdout.count("\n") == 5 and "warning" in logs.stderr:
            break
        time.sleep(0.2)
    assert record(bb, "lg-down")["State"]["Running"]
    assert logs.stdout.splitlines() == [f"line-{i}" for i in range(1, 6)]
    warnings = logs.error_lines
    assert len(warnings) == 1 and f"tcp://127.0.0.1:{port}" in warnings[0] and "buffered" in warnings[0]
    bb("rm", "-f", "lg-down", check=True)


def test_rotation_bounds_a_50mb_burst_by_default(bb):
    bb("run", "--name", "lg-burst", "busybox", "sh", "-c",
       "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 52428800; echo last-line",
       check=True, timeout=300)
    log = Path(record(bb, "lg-burst")["LogPath"])
    files = [p for p in log.parent.iterdir() if p.name.startswith(log.name)]
    assert sorted(p.name[len(log.name):] for p in files) == ["", ".1", ".2"]
    total = sum(p.stat().st_size for p in files)
    assert total <= 3 * 10 * 1024 * 1024
    assert all(p.stat().st_size <= 10 * 1024 * 1024 for p in files)
    assert bb("logs", "--tail", "1", "lg-burst", check=True).stdout == "last-line\n"


def test_a_line_past_16_kib_is_logged_in_partial_pieces_and_read_back_whole(bb):
    """Docker's json-file: pieces of 16 KiB without a newline in "log", the last one with it. A program
    printing with no newline at all (a progress bar) is logged piece by piece too, never held whole."""
    bb("run", "--name", "lg-long", "busybox", "sh", "-c",
       "head -c 40000 /dev/zero | tr '\\0' a; echo; head -c 20000 /dev/zero | tr '\\0' b", check=True)
    entries = [json.loads(line) for line in Path(record(bb, "lg-long")["LogPath"]).read_text().splitlines()]
    assert [len(e["log"]) for e in entries] == [16384, 16384, 40000 - 2 * 16384 + 1, 16384, 20000 - 16384]
    assert [e["log"].endswith("\n") for e in entries] == [False, False, True, False, False]
    assert bb("logs", "lg-long", check=True).stdout == "a" * 40000 + "\n" + "b" * 20000


def test_a_remote_driver_gets_a_long_line_in_16_kib_messages(bb):
    listener = _tcp()
    port = listener.getsockname()[1]
    with listener:
        bb("run", "--name", "lg-tcp-long", "--log-driver", "syslog",
           "--log-opt", f"syslog-address=tcp://127.0.0.1:{port}", "busybox",
           "sh", "-c", "head -c 20000 /dev/zero | tr '\\0' a; echo", check=True)
        data = _read_all(listener)
    messages = _octet_counted(data)
    assert [len(m.rsplit(b" ", 1)[-1]) for m in messages] == [16384, 20000 - 16384]


def test_a_long_line_is_cut_at_a_character_boundary(tmp_path):
    from pallet.kernel.logpump import LINE_MAX, JsonLog

    log = JsonLog(tmp_path / "json.log")
    text = ("x" * (LINE_MAX - 1) + "\u00e9\u20ac" * 6000).encode()   # the first cut falls inside the "é"
    for start in range(0, len(text), 1000):
        log.write("stdout", text[start:start + 1000])
    assert len(log.partial["stdout"]) <= LINE_MAX   # held back: at most one piece
    log.close()
    pieces = [json.loads(line)["log"] for line in (tmp_path / "json.log").read_text().splitlines()]
    assert "".join(pieces) == text.decode() and "\ufffd" not in "".join(pieces)
    assert [len(piece.encode()) for piece in pieces][:1] == [LINE_MAX - 1]
    assert all(len(piece.encode()) <= LINE_MAX for piece in pieces) and len(pieces) == 3


def test_a_read_of_exactly_16_kib_is_held_and_a_line_of_exactly_16_kib_is_one_entry(tmp_path):
    """The engine pass of CI once read exactly LINE_MAX bytes of a long line: the cut looked one byte past."""
    from pallet.kernel.logpump import LINE_MAX, JsonLog

    log = JsonLog(tmp_path / "json.log")
    log.write("stdout", b"a" * LINE_MAX)
    log.write("stdout", b"a" * 10 + b"\n" + b"b" * LINE_MAX + b"\n")
    log.close()
    entries = [json.loads(line)["log"] for line in (tmp_path / "json.log").read_text().splitlines()]
    assert entries == ["a" * LINE_MAX, "a" * 10 + "\n", "b" * LINE_MAX + "\n"]


def test_config_default_driver_and_bad_options(bb):
    listener = _udp()
    port = listener.getsockname()[1]
    config = Path(bb.env["PALLET_CONFIG"])
    config.write_text(config.read_text() + f'[logging]\ndriver = "syslog"\nopts = {{ "syslog-address" = '
                                           f'"udp://127.0.0.1:{port}" }}\n')
    with listener:
        bb("run", "--name", "lg-cfg", "busybox", "echo", "from-config", check=True)
        assert listener.recv(65536).endswith(b" from-config")
    assert record(bb, "lg-cfg")["HostConfig"]["LogConfig"]["Type"] == "syslog"
    for args, message in ((["--log-driver", "carrier-pigeon"], 'unknown logging driver "carrier-pigeon"'),
                          (["--log-driver", "json-file", "--log-opt", "max-size=big"], "invalid size"),
                          (["--log-driver", "gelf"], "gelf-address is a required parameter"),
                          (["--log-driver", "syslog", "--log-opt", "syslog-address=ftp://x"], "unsupported scheme"),
                          (["--log-driver", "none", "--log-opt", "tag=x"], "unknown log opt 'tag' for none")):
        result = bb("run", *args, "busybox", "true")
        assert result.returncode in (1, 2, 125), result.stderr
        assert len(result.error_lines) == 1 and message in result.stderr, result.stderr


@pytest.fixture(autouse=True)
def _no_journal_override():
    os.environ.pop("PALLET_JOURNAL_SOCKET", None)
