"""ContainerStore: lookup by id, prefix and name; name uniqueness; atomic records."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from pallet.kernel.containers import ContainerRecord, ContainerStore, new_container_id
from pallet.kernel.errors import Conflict, NotFound, UsageError


@pytest.fixture
def store(tmp_path):
    return ContainerStore(SimpleNamespace(root=tmp_path / "root", run_root=tmp_path / "run"))


def test_get_by_full_id_prefix_and_name(store):
    record = store.add(ContainerRecord(id=new_container_id(), name="web"))
    assert store.get(record.id).name == "web"
    assert store.get(record.id[:5]).id == record.id
    assert store.get("web").id == record.id
    assert store.get("/web").id == record.id


def test_unknown_container_uses_dockers_message(store):
    with pytest.raises(NotFound, match="No such container: nope"):
        store.get("nope")


def test_ambiguous_prefix_is_refused(store):
    a = store.add(ContainerRecord(id="ab" + new_container_id()[2:], name="a"))
    store.add(ContainerRecord(id="ab" + new_container_id()[2:], name="b"))
    with pytest.raises(Conflict, match="multiple containers"):
        store.get("ab")
    assert store.get(a.id[:20]).id == a.id


def test_duplicate_names_are_refused_under_concurrency(store):
    errors, made = [], []

    def create():
        try:
            made.append(store.add(ContainerRecord(id=new_container_id(), name="same")))
        except Conflict as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(errors) == 7
    assert "already in use" in str(errors[0])


def test_random_names_are_unique_and_invalid_names_rejected(store):
    names = {store.add(ContainerRecord(id=new_container_id(), name="")).name for _ in range(30)}
    assert len(names) == 30
    with pytest.raises(UsageError):
        store.add(ContainerRecord(id=new_container_id(), name="bad name!"))


def test_record_round_trips_and_remove(store):
    record = store.add(ContainerRecord(id=new_container_id(), name="x", labels={"a": "b"},
                                       port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}))
    assert store.load(record.id) == record
    store.update(record.id, status="exited", exit_code=3)
    assert store.get("x").exit_code == 3
    store.remove(record.id)
    assert store.all() == []
    store.remove(record.id)
