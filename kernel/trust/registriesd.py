"""registries.d: where GPG simple signatures of a registry's images live (the lookaside store) and how to reach it.

Every ``*.yaml`` in the directory may hold ``default-docker`` and ``docker: {SCOPE: {...}}``
with ``lookaside``/``lookaside-staging`` (older names ``sigstore``/``sigstore-staging``) and
``use-sigstore-attachments``. The most specific scope that sets a key wins, then
``default-docker``. A lookaside store keeps ``<base>/<repository path>@sha256=<hex>/signature-N``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write
from pallet.kernel.images import reference as refs
from pallet.kernel.trust import scopes

DEFAULT_DIRS = (Path("/etc/pallet/registries.d"), Path("/etc/containers/registries.d"))
KEYS = {"lookaside", "lookaside-staging", "sigstore", "sigstore-staging", "use-sigstore-attachments"}
MAX_SIGNATURES = 128


@dataclass
class Config:
    default: dict = field(default_factory=dict)
    docker: dict[str, dict] = field(default_factory=dict)
    where: str = ""

    def _setting(self, ref: refs.Reference, *names: str):
        for scope in scopes.docker(ref):
            entry = self.docker.get(scope) or {}
            for name in names:
                if entry.get(name) is not None:
                    return entry[name]
        for name in names:
            if self.default.get(name) is not None:
                return self.default[name]
        return None

    def lookaside(self, ref: refs.Reference, write: bool = False) -> str | None:
        names = ("lookaside-staging", "sigstore-staging", "lookaside", "sigstore") if write else ("lookaside", "sigstore")
        return self._setting(ref, *names)

    def use_attachments(self, ref: refs.Reference) -> bool:
        return bool(self._setting(ref, "use-sigstore-attachments"))


def _check_entry(entry, where: str) -> dict:
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise PalletError(f"invalid registries.d {where}: must be a mapping")
    for key, value in entry.items():
        if key not in KEYS:
            raise PalletError(f'invalid registries.d {where}: unknown key "{key}"')
        if key == "use-sigstore-attachments":
            if not isinstance(value, bool):
                raise PalletError(f"invalid registries.d {where}.{key}: must be true or false")
        elif not isinstance(value, str) or urlparse(value).scheme not in ("file", "http", "https"):
            raise PalletError(f"invalid registries.d {where}.{key}: must be a file://, http:// or https:// URL")
    return entry


def load(directory: str | Path | None = None) -> Config:
    """The merged configuration of ``directory`` (else the first default directory that exists)."""
    import yaml

    if directory:
        base = Path(directory)
        if not base.is_dir():
            raise PalletError(f"registries.d directory {base} does not exist")
    else:
        base = next((d for d in DEFAULT_DIRS if d.is_dir()), None)
        if base is None:
            return Config()
    config = Config(where=str(base))
    for path in sorted(base.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise PalletError(f"cannot read {path}: {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise PalletError(f"invalid registries.d file {path}{at}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(doc, dict) or not set(doc) <= {"default-docker", "docker"}:
            raise PalletError(f"invalid registries.d file {path}: only default-docker and docker are allowed")
        if "default-docker" in doc:
            if config.default:
                raise PalletError(f"registries.d: default-docker is set twice (again in {path})")
            config.default = _check_entry(doc["default-docker"], f"{path} default-docker")
        for scope, entry in (doc.get("docker") or {}).items():
            if scope in config.docker:
                raise PalletError(f'registries.d: scope "{scope}" is configured twice (again in {path})')
            config.docker[scope] = _check_entry(entry, f"{path} docker.{scope}")
    return config


def _url(base: str, ref: refs.Reference, digest: str, index: int) -> str:
    algorithm, hex_part = digest.split(":", 1)
    return f"{base.rstrip('/')}/{ref.path}@{algorithm}={hex_part}/signature-{index}"


def _local(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise PalletError(f"lookaside URL {url}: only local file:// URLs are supported")
    return Path(unquote(parsed.path))


def read(base: str, ref: refs.Reference, digest: str) -> list[bytes]:
    """Every signature ``signature-1``, ``-2``, … stored for ``digest`` until the first missing one."""
    found = []
    for index in range(1, MAX_SIGNATURES + 1):
        url = _url(base, ref, digest, index)
        if url.startswith("file:"):
            try:
                found.append(_local(url).read_bytes())
            except FileNotFoundError:
                break
            except OSError as exc:
                raise PalletError(f"cannot read signature {url}: {exc.strerror}") from None
            continue
        from pallet.kernel.images.registry import _httpx
        httpx = _httpx()
        try:
            response = httpx.get(url, timeout=30.0, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise PalletError(f"cannot read signature {url}: {exc}") from None
        if response.status_code == 404:
            break
        if response.status_code != 200:
            raise PalletError(f"cannot read signature {url}: HTTP {response.status_code}")
        found.append(response.content)
    return found


def write(base: str, ref: refs.Reference, digest: str, signature: bytes) -> str:
    """Store ``signature`` as the next free ``signature-N`` (file:// staging only); return its URL."""
    if not base.startswith("file:"):
        raise PalletError(f"cannot write signatures to {base}: only a file:// lookaside-staging is writable")
    for index in range(1, MAX_SIGNATURES + 1):
        url = _url(base, ref, digest, index)
        path = _local(url)
        if not path.exists():
            atomic_write(path, signature)
            return url
    raise PalletError(f"too many signatures for {digest} in {base}")
