"""``ContainerStore.all(shared=True)``: the Engine API's list keeps records between requests and reads a
record again only when its file was replaced."""

from __future__ import annotations

import json

from pallet.kernel.config import Config
from pallet.kernel.containers import ContainerRecord, ContainerStore
from pallet.kernel.engine import Engine


def _store(tmp_path) -> ContainerStore:
    return ContainerStore(Engine(Config.load(str(tmp_path / "root"), str(tmp_path / "run"))))


def _ids(records) -> set[str]:
    return {r.id for r in records}


def test_kept_records_are_reused_until_their_file_is_replaced(tmp_path):
    store = _store(tmp_path)
    store.home.mkdir(parents=True)
    first = store.add(ContainerRecord(id="a" * 64, name="one"))
    store.add(ContainerRecord(id="b" * 64, name="two"))
    listed = {r.id: r for r in store.all(shared=True)}
    assert _ids(listed.values()) == {first.id, "b" * 64}
    again = {r.id: r for r in store.all(shared=True)}
    assert all(again[cid] is listed[cid] for cid in listed)          # not parsed again

    store.update(first.id, status="exited", exit_code=7)
    changed = {r.id: r for r in store.all(shared=True)}
    assert (changed[first.id].status, changed[first.id].exit_code) == ("exited", 7)
    assert changed["b" * 64] is listed["b" * 64]


def test_same_size_rewrite_and_removal_and_new_records_are_seen(tmp_path):
    store = _store(tmp_path)
    store.home.mkdir(parents=True)
    record = store.add(ContainerRecord(id="c" * 64, name="aaaa"))
    store.all(shared=True)
    store.rename(record, "bbbb")          # same length: the size alone would not tell
    assert [r.name for r in store.all(shared=True)] == ["bbbb"]
    store.remove(record.id)
    assert store.all(shared=True) == []
    store.add(ContainerRecord(id="d" * 64, name="new"))
    (store.home / ("e" * 64)).mkdir()     # a directory without a record yet (being created)
    assert [r.name for r in store.all(shared=True)] == ["new"]


def test_a_record_replaced_by_hand_is_read_again(tmp_path):
    store = _store(tmp_path)
    store.home.mkdir(parents=True)
    record = store.add(ContainerRecord(id="f" * 64, name="ok"))
    assert [r.name for r in store.all(shared=True)] == ["ok"]
    path = store.dir(record.id) / "container.json"
    data = json.loads(path.read_text())
    data["name"] = "edited"
    tmp = path.with_name("x.tmp")
    tmp.write_text(json.dumps(data))
    tmp.rename(path)
    assert [r.name for r in store.all(shared=True)] == ["edited"]
