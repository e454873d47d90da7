"""A client that connects to a container's monitor just as the container ends: the monitor closes its
listening socket with our connection still in its backlog, and the kernel resets it. That is the same
"the monitor is gone" as finding no socket, not a crash: CI caught the API's ``wait`` after ``kill``
cutting its chunked answer short (ECONNRESET escaped), under load."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import types

import pytest

from pallet.kernel.errors import PalletError
from pallet.kernel.monitor import ATTACH_SOCKET


def _backlogged_then_closed(run_dir):
    """A monitor that ends after our connect() but before its accept()."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(run_dir / ATTACH_SOCKET))
    listener.listen(8)
    real_connect = socket.socket.connect

    def connect_then_close(self, address):
        real_connect(self, address)
        listener.close()
    return listener, connect_then_close


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_reset_before_the_hello_is_the_monitor_gone_and_leaks_no_socket(tmp_path, monkeypatch):
    from pallet.kernel.attach import open_session

    listener, connect_then_close = _backlogged_then_closed(tmp_path)
    before = _open_fds()
    monkeypatch.setattr(socket.socket, "connect", connect_then_close)
    with pytest.raises(PalletError, match="monitor ended"):
        open_session(tmp_path, timeout=1)
    monkeypatch.undo()
    assert _open_fds() <= before | {str(listener.fileno())}


def test_the_api_wait_falls_back_to_the_record_when_the_monitor_resets(tmp_path, monkeypatch):
    from pallet.kernel.api.containers import _observe_exit

    run_dir = tmp_path / "containers" / "c1"
    run_dir.mkdir(parents=True)
    _listener, connect_then_close = _backlogged_then_closed(run_dir)
    monkeypatch.setattr(socket.socket, "connect", connect_then_close)
    engine = types.SimpleNamespace(root=str(tmp_path / "root"), run_root=str(tmp_path))
    assert _observe_exit(engine, "c1") is None   # ECONNRESET used to escape and cut the HTTP answer


def test_the_hello_and_the_exit_code_come_through_a_live_monitor_socket(tmp_path):
    """The same path when the monitor answers: the hello's tty flag and input fd, output, then ``x<code>``."""
    from pallet.kernel.api.containers import _observe_exit
    from pallet.kernel.attach import open_session

    run_dir = tmp_path / "containers" / "c2"
    run_dir.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(run_dir / ATTACH_SOCKET))
    listener.listen(8)
    read_end, write_end = os.pipe()

    def monitor():
        for _client in range(2):
            conn, _ = listener.accept()
            with conn, contextlib.suppress(ConnectionError):   # it closes with the exit message unread
                socket.send_fds(conn, [b"Ht"], [read_end])
                conn.send(b"1some output")
                conn.send(b"x137")
                conn.recv(1)   # until the client closes
    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    try:
        sock, stdin_fd, tty = open_session(run_dir)
        with sock:
            assert tty is True and stdin_fd is not None
            os.close(stdin_fd)
            assert sock.recv(100) == b"1some output"
        engine = types.SimpleNamespace(root=str(tmp_path / "root"), run_root=str(tmp_path))
        assert _observe_exit(engine, "c2") == 137
        thread.join(5)
        assert not thread.is_alive()
    finally:
        listener.close()
        os.close(read_end)
        os.close(write_end)
