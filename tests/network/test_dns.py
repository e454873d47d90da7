"""The embedded DNS responder: names and aliases of a user network at 127.0.0.11, gone with the network."""

from __future__ import annotations

from pathlib import Path

from pallet.kernel.network import attach as net
from pallet.kernel.network.store import NetworkStore
from pallet.kernel.network import dns
from tests.network.conftest import NET, run_in


def nslookup(sandbox: str, name: str) -> str:
    return run_in(sandbox, "busybox", "nslookup", name, "127.0.0.11").stdout


def test_names_and_aliases_resolve_on_the_network_only(engine, sandbox, container):
    store = NetworkStore(engine)
    record = store.create("svc", subnet=f"{NET}.20.0/24")
    store.create("other", subnet=f"{NET}.21.0/24")
    a, b, c = sandbox(), sandbox(), sandbox()
    web = container(name="web", network_mode="svc", host_config={"NetworkAliases": ["www"]})
    ra = net.connect(engine, web, a)
    net.connect(engine, container(name="client", network_mode="svc"), b)
    net.connect(engine, container(name="outsider", network_mode="other"), c)

    assert ra["resolv_conf"] == "nameserver 127.0.0.11\noptions ndots:0\n"
    assert f"{NET}.20.2" in nslookup(b, "web")
    assert f"{NET}.20.2" in nslookup(b, "www")
    assert f"{NET}.20.2" in nslookup(b, web.id[:12])
    assert f"{NET}.20.3" in nslookup(a, "client")
    assert f"{NET}.20.2" not in nslookup(c, "web"), "a name is only known on its own network"

    pidfile = dns._paths(store, record)[0]
    pid = int(pidfile.read_text())
    for endpoint in store.endpoints(record.id):
        store.disconnect(endpoint.container_id)
    store.remove("svc")
    assert not Path(f"/proc/{pid}").exists(), "the responder stops with its network"


def test_answer_format_for_unknown_type_is_empty_noerror():
    query = bytes.fromhex("abcd01000001000000000000") + b"\x03web\x00" + bytes.fromhex("001c0001")
    name, qtype, end = dns.parse_question(query)
    assert (name, qtype, end) == ("web", 28, len(query))
    reply = dns.build_answer(query, end, [])
    assert reply[:2] == b"\xab\xcd" and reply[3] & 0x0F == 0 and reply[6:8] == b"\x00\x00"
    reply = dns.build_answer(query, end, ["10.0.0.9"])
    assert reply[6:8] == b"\x00\x01" and reply.endswith(bytes([10, 0, 0, 9]))
