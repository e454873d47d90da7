"""Registry credentials in Docker's ``config.json`` shape: pallet's own file (0600), then ``~/.docker/config.json``."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write, locked

DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


def auth_file() -> Path:
    explicit = os.environ.get("PALLET_AUTH_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pallet" / "auth.json"


def docker_config_file() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def normalise_server(server: str) -> str:
    """``https://localhost:5000/`` -> ``localhost:5000``; every Docker Hub alias -> ``docker.io``."""
    text = server.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    if not text:
        raise PalletError(f'invalid registry address "{server}"')
    return "docker.io" if text in DOCKER_HUB_KEYS or server in DOCKER_HUB_KEYS else text


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise PalletError(f"cannot read credentials file {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _decode(entry: dict) -> tuple[str, str] | None:
    if entry.get("username") and entry.get("password"):
        return entry["username"], entry["password"]
    encoded = entry.get("auth")
    if not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def lookup(server: str) -> tuple[str, str] | None:
    """(username, password) for ``server`` from pallet's file, else Docker's; None when not logged in."""
    wanted = normalise_server(server)
    for path in (auth_file(), docker_config_file()):
        for key, entry in (_read(path).get("auths") or {}).items():
            if isinstance(entry, dict) and normalise_server(key) == wanted:
                found = _decode(entry)
                if found:
                    return found
    return None


def store_credentials(server: str, username: str, password: str) -> Path:
    path = auth_file()
    with locked(path.with_name(path.name + ".lock")):
        data = _read(path)
        auths = data.setdefault("auths", {})
        auths[normalise_server(server)] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)
    return path


def remove_credentials(server: str) -> bool:
    path = auth_file()
    with locked(path.with_name(path.name + ".lock")):
        data = _read(path)
        auths = data.get("auths") or {}
        keys = [k for k in auths if normalise_server(k) == normalise_server(server)]
        for key in keys:
            del auths[key]
        if keys:
            atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)
        return bool(keys)
