"""The API's log follower: it keeps what a container wrote when the log is rotated or removed under it."""

from __future__ import annotations

import json
import os

from pallet.kernel.api.containers import _LogReader


def _line(text: str, stream: str = "stdout") -> bytes:
    return json.dumps({"log": text, "stream": stream, "time": "2026-12-02T00:00:00Z"}).encode() + b"\n"


def test_a_removed_log_still_yields_what_was_written_before_the_removal(tmp_path):
    path = tmp_path / "json.log"
    path.write_bytes(_line("one\n"))
    reader = _LogReader(path)
    assert [entry[2] for entry in reader.read()] == ["one\n"]
    with open(path, "ab") as log:
        log.write(_line("two\n", "stderr"))
    os.unlink(path)  # docker-py's run(remove=True) removes before it reads the followed stream
    assert reader.read() == [("stderr", "2026-12-02T00:00:00Z", "two\n")]
    assert reader.read() == []
    reader.close()


def test_a_partial_line_waits_for_its_end_and_rotation_moves_on_to_the_new_file(tmp_path):
    path = tmp_path / "json.log"
    whole = _line("first\n")
    path.write_bytes(whole[:10])
    reader = _LogReader(path)
    assert reader.read() == []
    with open(path, "ab") as log:
        log.write(whole[10:] + _line("last before rotation\n"))
    os.rename(path, tmp_path / "json.log.1")
    path.write_bytes(_line("after rotation\n"))
    assert [entry[2] for entry in reader.read()] == ["first\n", "last before rotation\n"]
    assert [entry[2] for entry in reader.read()] == ["after rotation\n"]
    reader.close()


def test_a_log_that_does_not_exist_yet_is_read_once_it_appears(tmp_path):
    path = tmp_path / "json.log"
    reader = _LogReader(path)
    assert reader.read() == []
    path.write_bytes(_line("late\n"))
    assert [entry[2] for entry in reader.read()] == ["late\n"]
    reader.close()


def test_following_a_log_the_monitor_has_not_made_yet_holds_the_file_it_will_write(tmp_path):
    path = tmp_path / "json.log"
    reader = _LogReader(path)
    reader.open_now()
    # The monitor opens it as kernel/logpump.py's JsonLog does, writes, and the container is removed.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    os.write(fd, _line("quick\n"))
    os.close(fd)
    os.unlink(path)
    assert [entry[2] for entry in reader.read()] == ["quick\n"]
    reader.close()
    missing = _LogReader(tmp_path / "gone" / "json.log")
    missing.open_now()  # a removed container's directory: nothing to hold, no error
    assert missing.read() == []
