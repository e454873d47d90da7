"""stats' BLOCK I/O and NET I/O per container, and attach's --sig-proxy and --no-stdin."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.containers.conftest import bb, record  # noqa: F401  (the fixture)
from tests.conftest import REPO

DOCKER_HEADER = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]


def _disk_of(path) -> str:
    """The whole disk under ``path`` (a partition's parent): throttle rules name whole disks only."""
    import os

    device = os.stat(path).st_dev
    sys_dir = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}").resolve()
    if (sys_dir / "partition").exists():
        sys_dir = sys_dir.parent
    return f"/dev/{sys_dir.name}"


def test_block_io_counts_the_containers_direct_reads_and_writes(bb):
    # On cgroup v1 the kernel counts a group's block I/O through BFQ, when the disk's scheduler is
    # bfq, or through blk-throttle, when the group has a rule for the disk; dockerd reads the same
    # files. This host's disk runs mq-deadline, so a rule far above any rate here turns counting on.
    disk = _disk_of(bb.root)
    bb("run", "-d", "--name", "disk", "--device-read-bps", f"{disk}:100gb", "--device-write-bps", f"{disk}:100gb",
       "busybox", "sleep", "120", check=True)
    before = bb("stats", "--no-stream", "--format", "{{.BlockIO}}", "disk", check=True).stdout.strip()
    bb("exec", "disk", "sh", "-c", "dd if=/dev/zero of=/blob bs=1M count=8 oflag=direct && "
       "dd if=/blob of=/dev/null bs=1M iflag=direct", check=True)
    table = bb("stats", "--no-stream", "disk", check=True).stdout.splitlines()
    header = [cell for cell in table[0].split("  ") if cell.strip()]
    assert [cell.strip() for cell in header] == DOCKER_HEADER
    after = bb("stats", "--no-stream", "--format", "{{.BlockIO}}", "disk", check=True).stdout.strip()
    # Before the dd the group has done (next to) nothing; not always nothing: on a disk busy with other work
    # the container's set-up (its mount points' mkdirs) may have to push part of the ext4 journal out itself.
    (read0, written0), (read, written) = (map(_decimal_bytes, text.split(" / ")) for text in (before, after))
    assert read0 < 1_000_000 and written0 < 1_000_000, before
    # 8 MiB each way, in Docker's decimal units (8.39MB), at least: the filesystem adds its own blocks
    assert read - read0 >= 8_380_000 and written - written0 >= 8_380_000, (before, after)
    assert after in table[1]


def _decimal_bytes(text: str) -> float:
    """``266kB``, ``8.39MB``: Docker's decimal sizes as ``stats`` prints them, in bytes."""
    for unit, factor in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise AssertionError(f"not a size: {text!r}")


def test_io_stat_of_cgroup_v2_and_blkio_of_v1_are_summed_over_devices():
    from pallet.kernel.blockio import parse_v1, parse_v2

    # the formats of the kernel's Documentation/admin-guide/cgroup-v{1,2}
    v2 = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n" \
         "8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n"
    assert parse_v2(v2) == (1459200 + 90430464, 314773504 + 299008000)
    v1 = "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n7:0 Read 1\n7:0 Write 2\nTotal 12291\n"
    assert parse_v1(v1) == (4097, 8194)


def test_stats_net_io_counts_the_containers_own_interfaces(bb):
    (bb.root.parent / "pallet.toml").write_text(bb.network_config)  # the real default network
    bb("run", "-d", "--name", "net", "busybox", "sleep", "120", check=True)
    bb("run", "-d", "--name", "quiet", "busybox", "sleep", "120", check=True)
    gateway = record(bb, "net")["NetworkSettings"]["Gateway"]
    bb("exec", "net", "ping", "-c", "3", "-s", "1000", "-W", "1", gateway, check=True)
    rows = dict(line.split(" ", 1) for line in bb("stats", "--no-stream", "--format", "{{.Name}} {{.NetIO}}",
                                                  check=True).stdout.splitlines())
    received, sent = rows["net"].split(" / ")
    assert received.endswith("kB") and sent.endswith("kB") and float(sent[:-2]) >= 3.0, rows
    quiet_received, quiet_sent = rows["quiet"].split(" / ")
    assert quiet_sent != sent  # counters are per network namespace, not the host's


def _attach(bb, *args, stdin=subprocess.DEVNULL):
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(bb.root), "--run-root", str(bb.run_root),
           "attach", *args]
    return subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bb.env,
                            cwd=str(REPO), text=True)


TICKER = 'trap "echo caught-usr1; exit 9" USR1; while :; do echo tick; sleep 0.2; done'


def test_attach_proxies_signals_and_no_sig_proxy_leaves_the_container_alone(bb):
    bb("run", "-d", "--name", "proxied", "busybox", "sh", "-c", TICKER, check=True)
    client = _attach(bb, "proxied")
    try:
        assert client.stdout.readline() == "tick\n"
        client.send_signal(signal.SIGUSR1)
        out, _err = client.communicate(timeout=30)
    finally:
        client.kill()
    assert "caught-usr1" in out and client.returncode == 9
    assert record(bb, "proxied")["State"]["ExitCode"] == 9

    bb("run", "-d", "--name", "unproxied", "busybox", "sh", "-c", TICKER, check=True)
    client = _attach(bb, "--sig-proxy=false", "unproxied")
    try:
        assert client.stdout.readline() == "tick\n"
        client.send_signal(signal.SIGUSR1)
        client.communicate(timeout=30)
    finally:
        client.kill()
    assert client.returncode == -signal.SIGUSR1
    assert record(bb, "unproxied")["State"]["Running"] is True


def test_attach_no_stdin_keeps_the_input_from_the_container(bb):
    script = 'if read -t 5 line; then echo "got:$line"; else echo "no input"; fi'
    bb("run", "-d", "-i", "--name", "deaf", "busybox", "sh", "-c", script, check=True)
    client = _attach(bb, "--no-stdin", "deaf", stdin=subprocess.PIPE)
    out, _err = client.communicate("hello\n", timeout=60)
    assert out == "no input\n" and client.returncode == 0
    bb("run", "-d", "-i", "--name", "hearing", "busybox", "sh", "-c", 'read line; echo "got:$line"', check=True)
    client = _attach(bb, "hearing", stdin=subprocess.PIPE)
    out, _err = client.communicate("hello\n", timeout=60)
    assert out == "got:hello\n" and client.returncode == 0


class _Frames:
    """The frames of a live table, read in a thread: each one is a header and the rows up to the next
    header, so a frame is complete when the next one begins (no guess at the pause between them)."""

    def __init__(self, stream):
        import queue
        import threading

        self.lines: queue.Queue = queue.Queue()
        self.pending: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self.lines.put(line.replace("\033[2J\033[H", "").rstrip("\n"))
        self.lines.put(None)

    def next(self, timeout=60.0) -> list[str]:
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None or (line.startswith("CONTAINER ID") and self.pending):
                frame, self.pending = self.pending, [] if line is None else [line]
                return frame
            self.pending.append(line)

    def fresh(self, timeout=60.0) -> list[str]:
        """The next frame begun after this call: the ones queued meanwhile are old news."""
        import queue

        with __import__("contextlib").suppress(queue.Empty):
            while True:
                if self.lines.get_nowait() is None:
                    self.lines.put(None)
                    break
        self.pending = []
        self.next(timeout)   # the rest of a frame begun before the call
        return self.next(timeout)


def _stats_stream(bb, name: str) -> subprocess.Popen:
    """``pallet stats NAME`` running in the background, its frames on a line-buffered text pipe."""
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(bb.root), "--run-root", str(bb.run_root),
           "stats", name]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bb.env, cwd=str(REPO),
                            text=True, bufsize=1)


def _interrupt(streamer: subprocess.Popen) -> str:
    """Ctrl-C to a running ``pallet stats``; its stderr once it ended."""
    streamer.send_signal(signal.SIGINT)
    streamer.wait(timeout=30)
    return streamer.stderr.read()


def test_stats_streams_frames_until_stopped(bb):
    bb("run", "-d", "--name", "live", "busybox", "sleep", "1000", check=True)
    streamer = _stats_stream(bb, "live")
    try:
        reader = _Frames(streamer.stdout)
        frames = [reader.next(), reader.next()]
        for frame in frames:
            assert [cell.strip() for cell in frame[0].split("  ") if cell.strip()] == DOCKER_HEADER
            assert len(frame) == 2 and " live " in frame[1], frame
        assert streamer.poll() is None   # still streaming
        # a change in the container shows in a later frame of the same stream
        bb("exec", "-d", "live", "sleep", "1000", check=True)
        for _ in range(40):
            if reader.next()[1].split()[-1] == "2":
                break
        else:
            raise AssertionError("the second process never showed in the PIDS column")
        err = _interrupt(streamer)
    finally:
        streamer.kill()
        streamer.wait()
    assert "Traceback" not in err and streamer.returncode in (0, 130, -signal.SIGINT), (streamer.returncode, err)


# Traffic on eth0 at every start (a ping to the bridge's gateway), then an exit the policy restarts.
PINGS_THEN_FAILS = "ping -c 2 -W 1 $(ip route | awk '/default/ {print $3}'); sleep 4; exit 1"


def _net_io_bytes(cell: str) -> int:
    """``1.2kB / 980B`` → the bytes received plus sent (Docker's decimal units)."""
    units = {"B": 1, "kB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3}
    total = 0
    for part in cell.split("/"):
        number = part.strip().rstrip("kMGB")
        total += int(float(number) * units[part.strip()[len(number):]])
    return total


def test_stats_streaming_follows_a_container_its_restart_policy_started_again(bb):
    from tests.services.conftest import eventually, state

    bb("run", "-d", "--name", "st-restart", "--network", "bridge", "--restart", "always", "busybox", "sh", "-c",
       PINGS_THEN_FAILS, check=True)
    first_pid = state(bb, "st-restart")["Pid"]
    streamer = _stats_stream(bb, "st-restart")
    try:
        reader = _Frames(streamer.stdout)
        column = DOCKER_HEADER.index("NET I/O")

        def net_io(frame) -> int:
            return _net_io_bytes([cell for cell in frame[1].split("  ") if cell.strip()][column]) if len(frame) == 2 else 0

        def traffic_shown(frame, timeout=120.0) -> bool:
            deadline = time.monotonic() + timeout
            while not net_io(frame):
                if time.monotonic() > deadline:
                    return False
                frame = reader.next()
            return True

        assert traffic_shown(reader.next()), "no traffic shown before the restart"
        assert eventually(lambda: (s := state(bb, "st-restart"))["RestartCount"] >= 1 and s["Running"]
                          and s["Pid"] != first_pid, timeout=60)
        # the same stream reads the new process: its traffic shows (the first pid's counters are gone)
        assert traffic_shown(reader.fresh()), "the stream kept the first pid"
        err = _interrupt(streamer)
    finally:
        streamer.kill()
        streamer.wait()
    assert "Traceback" not in err, err
