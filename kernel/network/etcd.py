"""A small etcd v3 client over its JSON gateway (httpx): put, range, delete, create-if-absent, leases, watch.

The gateway avoids the unmaintained gRPC ``etcd3`` package; keys and values are base64 in JSON.
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


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


class Etcd:
    def __init__(self, url: str, timeout: float = 10.0):
        parsed = urlparse(url)
        if parsed.scheme not in ("etcd", "http") or not parsed.hostname:
            raise UsageError(f'invalid cluster store "{url}": expected etcd://HOST:PORT')
        self.base = f"http://{parsed.hostname}:{parsed.port or 2379}"
        self.timeout = timeout
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(base_url=self.base, timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _call(self, path: str, body: dict) -> dict:
        import httpx

        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise PalletError(f"cluster store {self.base} is unreachable: {exc}") from None
        if response.status_code != 200:
            raise PalletError(f"cluster store {self.base} {path} failed: {response.status_code} {response.text.strip()}")
        return response.json()

    # --- key/value ----------------------------------------------------------------------
    def put(self, key: str, value, lease: str | None = None) -> None:
        body = {"key": _b64(key), "value": _b64(value if isinstance(value, str) else json.dumps(value))}
        if lease:
            body["lease"] = lease
        self._call("/v3/kv/put", body)

    def get(self, key: str):
        kvs = self._call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return _decode(_unb64(kvs[0].get("value", ""))) if kvs else None

    def range(self, prefix: str) -> tuple[dict, int]:
        """Every key under ``prefix`` with its decoded value, and the store revision of the read."""
        reply = self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        items = {_unb64(kv["key"]): _decode(_unb64(kv.get("value", ""))) for kv in reply.get("kvs", [])}
        return items, int(reply["header"]["revision"])

    def delete(self, key: str, prefix: bool = False) -> int:
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        return int(self._call("/v3/kv/deleterange", body).get("deleted", 0))

    def create(self, key: str, value, lease: str | None = None) -> bool:
        """Put ``key`` only if it does not exist (one transaction); True when this call created it."""
        put = {"key": _b64(key), "value": _b64(value if isinstance(value, str) else json.dumps(value))}
        if lease:
            put["lease"] = lease
        reply = self._call("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": put}],
        })
        return bool(reply.get("succeeded"))

    # --- leases and watches -------------------------------------------------------------
    def grant(self, ttl: int) -> str:
        return self._call("/v3/lease/grant", {"TTL": ttl})["ID"]

    def keepalive(self, lease: str) -> int:
        """Refresh ``lease``; its remaining TTL, 0 when it has already expired."""
        return int(self._call("/v3/lease/keepalive", {"ID": lease}).get("result", {}).get("TTL", 0))

    def watch(self, prefix: str, start_revision: int):
        """Yield ``(kind, key, value)`` for every change under ``prefix`` from ``start_revision`` on (blocks)."""
        import httpx

        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        with httpx.Client(base_url=self.base, timeout=httpx.Timeout(5.0, read=None)) as client:
            with client.stream("POST", "/v3/watch", json=body) as response:
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    for event in json.loads(line).get("result", {}).get("events", []):
                        kv = event["kv"]
                        value = _decode(_unb64(kv["value"])) if kv.get("value") else None
                        yield event.get("type", "PUT"), _unb64(kv["key"]), value


def _decode(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text
