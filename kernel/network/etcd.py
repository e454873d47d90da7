"""A small etcd v3 client over its JSON gateway (httpx): keys, transactions, leases, watches, elections.

The gateway avoids the unmaintained gRPC ``etcd3`` package; keys and values are base64 in JSON.
A store URL may name several members (``etcd://h1:2379,h2:2379,h3:2379``): a call that cannot
reach one member is retried on the next, so a cluster that lost a member (but kept its quorum)
keeps serving.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlparse

from pallet.kernel.errors import PalletError, UsageError


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _encode(value) -> str:
    return _b64(value if isinstance(value, str) else json.dumps(value))


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


def parse_endpoints(url: str) -> list[str]:
    """``etcd://h1:p1,h2:p2`` (or ``http://…``, or a comma list of either) as ``http://host:port`` bases."""
    bases = []
    rest = url
    for scheme in ("etcd://", "http://"):
        if rest.startswith(scheme):
            rest = rest[len(scheme):]
            break
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        if "://" not in part:
            part = "etcd://" + part
        parsed = urlparse(part)
        if parsed.scheme not in ("etcd", "http") or not parsed.hostname:
            raise UsageError(f'invalid cluster store "{url}": expected etcd://HOST:PORT[,HOST:PORT…]')
        try:
            port = parsed.port or 2379
        except ValueError:
            raise UsageError(f'invalid cluster store "{url}": bad port') from None
        bases.append(f"http://{parsed.hostname}:{port}")
    if not bases:
        raise UsageError(f'invalid cluster store "{url}": expected etcd://HOST:PORT[,HOST:PORT…]')
    return bases


class TxnFailed(PalletError):
    """A transaction's compare did not hold (someone else wrote the key first)."""


class Etcd:
    def __init__(self, url: str, timeout: float = 10.0):
        self.bases = parse_endpoints(url)
        self.url = "etcd://" + ",".join(b.removeprefix("http://") for b in self.bases)
        self.timeout = timeout
        self._current = 0
        self._clients: dict[str, object] = {}

    @property
    def base(self) -> str:
        """The member this client talks to now."""
        return self.bases[self._current]

    def _client_for(self, base: str):
        if base not in self._clients:
            import httpx

            self._clients[base] = httpx.Client(base_url=base, timeout=self.timeout)
        return self._clients[base]

    @property
    def client(self):
        return self._client_for(self.base)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _call(self, path: str, body: dict, timeout=None) -> dict:
        """POST ``body`` to ``path`` on the current member, moving on to the next one it cannot reach."""
        import httpx

        last = None
        for attempt in range(len(self.bases)):
            base = self.base
            try:
                extra = {} if timeout is None else {"timeout": timeout}
                response = self._client_for(base).post(path, json=body, **extra)
            except httpx.HTTPError as exc:
                last = f"cluster store {base} is unreachable: {exc}"
                self._current = (self._current + 1) % len(self.bases)
                continue
            if response.status_code == 503 or (response.status_code != 200 and _no_leader(response.text)):
                last = f"cluster store {base} {path} failed: {response.status_code} {response.text.strip()}"
                self._current = (self._current + 1) % len(self.bases)
                continue
            if response.status_code != 200:
                raise PalletError(f"cluster store {base} {path} failed: {response.status_code} {response.text.strip()}")
            return response.json()
        raise PalletError(last or "cluster store is unreachable")

    # --- key/value ----------------------------------------------------------------------
    def put(self, key: str, value, lease: str | None = None) -> None:
        body = {"key": _b64(key), "value": _encode(value)}
        if lease:
            body["lease"] = lease
        self._call("/v3/kv/put", body)

    def get(self, key: str):
        kvs = self._call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return _decode(_unb64(kvs[0].get("value", ""))) if kvs else None

    def get_kv(self, key: str) -> tuple[object, int]:
        """The decoded value of ``key`` and its ``mod_revision`` (``(None, 0)`` when absent)."""
        kvs = self._call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        if not kvs:
            return None, 0
        return _decode(_unb64(kvs[0].get("value", ""))), int(kvs[0].get("mod_revision", 0))

    def range(self, prefix: str) -> tuple[dict, int]:
        """Every key under ``prefix`` with its decoded value, and the store revision of the read."""
        items, revisions, revision = self.range_kv(prefix)
        return items, revision

    def range_kv(self, prefix: str) -> tuple[dict, dict, int]:
        """Every key under ``prefix``: values, ``mod_revision`` per key, and the store revision of the read."""
        reply = self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        items, revisions = {}, {}
        for kv in reply.get("kvs", []):
            key = _unb64(kv["key"])
            items[key] = _decode(_unb64(kv.get("value", "")))
            revisions[key] = int(kv.get("mod_revision", 0))
        return items, revisions, int(reply["header"]["revision"])

    def delete(self, key: str, prefix: bool = False) -> int:
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        return int(self._call("/v3/kv/deleterange", body).get("deleted", 0))

    def create(self, key: str, value, lease: str | None = None) -> bool:
        """Put ``key`` only if it does not exist (one transaction); True when this call created it."""
        return bool(self.txn({key: 0}, puts={key: value}, lease=lease))

    def txn(self, compare: dict[str, int], puts: dict | None = None, deletes: list[str] = (),
            lease: str | None = None) -> bool:
        """Apply ``puts`` and ``deletes`` together only if every key in ``compare`` still has the given
        ``mod_revision`` (0: the key must not exist); the new store revision (the put keys'
        ``mod_revision``) when they were applied, else 0."""
        compares = []
        for key, revision in compare.items():
            if revision:
                compares.append({"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)})
            else:
                compares.append({"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
        success = []
        for key, value in (puts or {}).items():
            put = {"key": _b64(key), "value": _encode(value)}
            if lease:
                put["lease"] = lease
            success.append({"request_put": put})
        success += [{"request_delete_range": {"key": _b64(key)}} for key in deletes]
        reply = self._call("/v3/kv/txn", {"compare": compares, "success": success})
        return int(reply["header"]["revision"]) if reply.get("succeeded") else 0

    # --- leases and watches -------------------------------------------------------------
    def grant(self, ttl: int) -> str:
        return self._call("/v3/lease/grant", {"TTL": ttl})["ID"]

    def keepalive(self, lease: str) -> int:
        """Refresh ``lease``; its remaining TTL, 0 when it has already expired."""
        return int(self._call("/v3/lease/keepalive", {"ID": lease}).get("result", {}).get("TTL", 0))

    def revoke(self, lease: str) -> None:
        """End ``lease`` now: every key put under it is deleted."""
        try:
            self._call("/v3/lease/revoke", {"ID": lease})
        except PalletError as exc:
            if "not found" not in str(exc):
                raise

    def watch(self, prefix: str, start_revision: int):
        """Yield ``(kind, key, value)`` for every change under ``prefix`` from ``start_revision`` on (blocks).

        It follows one member; when that member goes away the stream ends with an error, and the
        caller watches again from the revision it last saw (the next call starts on another member).
        """
        import httpx

        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        base = self.base
        try:
            with httpx.Client(base_url=base, timeout=httpx.Timeout(5.0, read=None)) as client:
                with client.stream("POST", "/v3/watch", json=body) as response:
                    for line in response.iter_lines():
                        if not line.strip():
                            continue
                        for event in json.loads(line).get("result", {}).get("events", []):
                            kv = event["kv"]
                            value = _decode(_unb64(kv["value"])) if kv.get("value") else None
                            yield event.get("type", "PUT"), _unb64(kv["key"]), value
        except httpx.HTTPError as exc:
            if self.base == base:
                self._current = (self._current + 1) % len(self.bases)
            raise PalletError(f"cluster store {base} watch ended: {exc}") from None

    # --- elections (etcd's v3election service) -------------------------------------------
    def campaign(self, name: str, lease: str, value: str, timeout: float | None = None) -> dict:
        """Block until this lease's candidate leads election ``name``; the leader key (name, key, rev, lease).

        Campaigning again with the same lease finds the candidate key it made and keeps its place.
        """
        import httpx

        reply = self._call("/v3/election/campaign", {"name": _b64(name), "lease": lease, "value": _b64(value)},
                           timeout=httpx.Timeout(5.0, read=timeout))
        return reply["leader"]

    def leader(self, name: str) -> str | None:
        """The value the current leader of election ``name`` proclaimed, None without a leader."""
        try:
            reply = self._call("/v3/election/leader", {"name": _b64(name)})
        except PalletError as exc:
            if "no leader" in str(exc):
                return None
            raise
        kv = reply.get("kv") or {}
        return _unb64(kv["value"]) if kv.get("value") else None

    def proclaim(self, leader: dict, value: str) -> None:
        self._call("/v3/election/proclaim", {"leader": leader, "value": _b64(value)})

    def resign(self, leader: dict) -> None:
        self._call("/v3/election/resign", {"leader": leader})

    def observe(self, name: str):
        """Yield the value of each new leader of election ``name`` (blocks)."""
        import httpx

        with httpx.Client(base_url=self.base, timeout=httpx.Timeout(5.0, read=None)) as client:
            with client.stream("POST", "/v3/election/observe", json={"name": _b64(name)}) as response:
                for line in response.iter_lines():
                    if line.strip():
                        kv = json.loads(line).get("result", {}).get("kv") or {}
                        yield _unb64(kv["value"]) if kv.get("value") else None


def _no_leader(text: str) -> bool:
    """A member that answers but cannot serve now (no raft leader): another member may."""
    return any(s in text for s in ("etcdserver: no leader", "etcdserver: request timed out",
                                   "etcdserver: leader changed", "etcdserver: too many requests"))


def _decode(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text
