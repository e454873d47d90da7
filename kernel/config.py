"""Engine settings: global flags and environment over ``/etc/pallet/pallet.toml`` over defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.errors import UsageError

# Imported below only when a config file exists; the resident engine imports it up front, or each of its
# workers would (~5-7 ms: tomllib compiles its regular expressions on import).
PALLET_PRELOAD = ("tomllib",)

DEFAULT_CONFIG = Path("/etc/pallet/pallet.toml")
DEFAULT_ROOT = Path("/var/lib/pallet")
DEFAULT_RUN_ROOT = Path("/run/pallet")


def parse_key_values(pairs, what: str) -> dict[str, str]:
    """Turn ``["k=v", …]`` into a dict; a pair without ``=`` is a usage error naming ``what``."""
    result = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f'invalid {what} "{pair}": expected KEY=VALUE')
        result[key.strip()] = value.strip()
    return result


@dataclass
class Config:
    """Everything the engine reads at start-up. Flags already hold their environment fallback."""

    root: Path = DEFAULT_ROOT
    run_root: Path = DEFAULT_RUN_ROOT
    config_path: Path = DEFAULT_CONFIG
    storage_driver_flag: str | None = None          # --storage-driver / PALLET_STORAGE_DRIVER
    storage_opt_flags: dict[str, str] = field(default_factory=dict)
    file: dict = field(default_factory=dict)

    @classmethod
    def load(cls, root=None, run_root=None, config_path=None, storage_driver=None, storage_opts=()):
        explicit_path = config_path or os.environ.get("PALLET_CONFIG")
        path = Path(explicit_path) if explicit_path else DEFAULT_CONFIG
        data = read_toml(path, required=bool(explicit_path))
        engine = data.get("engine", {})
        return cls(
            root=Path(root or engine.get("root") or DEFAULT_ROOT),
            # With only --root given, runtime state lives inside it, so a root is self-contained.
            run_root=Path(run_root or engine.get("run_root") or (Path(root) / "run" if root else DEFAULT_RUN_ROOT)),
            config_path=path,
            storage_driver_flag=storage_driver or None,
            storage_opt_flags=parse_key_values(storage_opts, "--storage-opt"),
            file=data,
        )

    def section(self, name: str) -> dict:
        value = self.file.get(name, {})
        return value if isinstance(value, dict) else {}

    @property
    def storage_driver_configured(self) -> str | None:
        return self.section("storage").get("driver") or None

    def storage_options(self, driver: str) -> dict[str, str]:
        """``[storage.options.DRIVER]`` from the file, overridden by ``--storage-opt`` flags."""
        from_file = self.section("storage").get("options", {}).get(driver, {})
        merged = {str(k): str(v) for k, v in from_file.items()}
        merged.update(self.storage_opt_flags)
        return merged


def read_toml(path: Path, required: bool) -> dict:
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode()
    except FileNotFoundError:
        if required:
            raise UsageError(f"config file {path} does not exist") from None
        return {}
    if not text.strip():  # an empty file (or only blank lines) is an empty table: no parser needed
        return {}
    import tomllib  # only when there is a file: most hosts have none, and every command reads the config

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
