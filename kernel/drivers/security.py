"""Security profile contract: each profile contributes its part to a container's OCI spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.drivers.base import Driver


@dataclass
class SecurityContext:
    """What a profile may read while applying: the container's security-relevant settings."""

    options: dict[str, str] = field(default_factory=dict)   # --security-opt NAME=VALUE routed to this profile
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    user: str = ""                                           # "uid[:gid]" or a name, as given by -u
    read_only: bool = False
    container_id: str = ""
    userns: str = ""                                         # --userns: "" or "host"
    relabel: list[tuple[str, str]] = field(default_factory=list)  # (bind source, "z"|"Z"), filled by apply_profiles
    # The ``[security]`` section of pallet.toml: host defaults (seccomp_profile, userns_remap …).
    settings: dict = field(default_factory=dict)


class SecurityProfile(Driver):
    """A confinement mechanism (capabilities, seccomp, an LSM …).

    ``order`` sorts profiles (lower applies first), and a profile may read what lower ones
    wrote: the built-ins are userns (5: uid/gid mappings), capabilities (10), seccomp (20: its
    conditional rules look at the bounding set capabilities wrote), apparmor (30), selinux
    (40), landlock (45). ``default_enabled`` profiles apply to every container on hosts where
    ``probe`` says available; others only when the user names them with ``--security-opt
    NAME=…``. The context's ``home`` is ``<root>/<name>`` (apparmor keeps its generated
    profile there, selinux its MCS allocations); ``config`` is the engine's, ``pallet.toml``.
    """

    kind = "security"
    order = 50
    default_enabled = True

    @classmethod
    def opts_out(cls, options: dict[str, str]) -> bool:
        """True when ``options`` only turn this profile off (``apparmor=unconfined``, ``label=disable``).

        Such a request is honoured silently on hosts where the profile is unavailable.
        """
        return False

    def validate(self, options: dict[str, str]) -> None:
        """Reject bad ``--security-opt`` values with a ``pallet.kernel.errors.UsageError`` naming the option."""

    def apply(self, spec: dict, ctx: SecurityContext) -> None:
        """Write this profile's part into the OCI runtime-spec dict ``spec``, in place."""
        raise NotImplementedError

    # --- user-namespace remapping -------------------------------------------------------
    @classmethod
    def storage_mapping(cls, settings: dict) -> IdMapping | None:
        """The host-wide ID mapping this profile gives every container's root, or None (the default).

        Asked before the storage driver is opened, with the ``[security]`` section of
        pallet.toml (only when that section is not empty), on every available default-enabled
        profile; the first answer wins. With a mapping, the engine keeps layers ID-shifted
        in their own storage home ``<root>/<uid>.<gid>/<driver>/`` (as Docker's userns-remap
        does): drivers get ``id_shift``/``id_unshift`` from it, and fresh volumes belong to
        the mapped root. A profile that maps IDs must also write the same tables into the
        spec's ``linux.uidMappings``/``gidMappings`` in ``apply``.
        """
        return None

    def prepare_files(self, spec: dict, ctx: FilesContext) -> None:
        """Make host files ready for the container's process; called after ``apply`` and ``pallet_spec_amend``.

        Called on every profile that applied, with the final spec, just before
        ``config.json`` is written. A profile that runs the container's root as another
        host user makes its rootfs and bind sources reachable here. Raise
        ``pallet.kernel.errors.PalletError`` naming the path when it cannot. Default: nothing.
        """


@dataclass(frozen=True)
class FilesContext:
    """What ``SecurityProfile.prepare_files`` may touch: the engine's state directories and its storage mapping."""

    root: Path
    run_root: Path
    mapping: IdMapping | None = None


OVERFLOW_ID = 65534  # what the kernel shows for an ID the mapping does not cover


def host_id(value: int, table: list[dict]) -> int:
    """The host ID that container ID ``value`` maps to through ``table`` (OCI ``uidMappings`` entries)."""
    for entry in table:
        if entry["containerID"] <= value < entry["containerID"] + entry["size"]:
            return entry["hostID"] + value - entry["containerID"]
    return OVERFLOW_ID


def container_id(value: int, table: list[dict]) -> int:
    """The container ID that host ID ``value`` appears as through ``table`` (the inverse of ``host_id``)."""
    for entry in table:
        if entry["hostID"] <= value < entry["hostID"] + entry["size"]:
            return entry["containerID"] + value - entry["hostID"]
    return OVERFLOW_ID


@dataclass(frozen=True)
class IdMapping:
    """A user-namespace mapping as OCI writes it: ``uid_map``/``gid_map`` lists of ``{containerID, hostID, size}``."""

    uid_map: list
    gid_map: list

    @property
    def home_name(self) -> str:
        """``<uid>.<gid>``: the host IDs of the container's root, naming the ID-shifted storage home."""
        return f"{host_id(0, self.uid_map)}.{host_id(0, self.gid_map)}"

    def shift(self, uid: int, gid: int) -> tuple[int, int]:
        """Container IDs -> host IDs (how a layer's files are stored)."""
        return host_id(uid, self.uid_map), host_id(gid, self.gid_map)

    def unshift(self, uid: int, gid: int) -> tuple[int, int]:
        """Host IDs -> container IDs (how a layer's diff is written out)."""
        return container_id(uid, self.uid_map), container_id(gid, self.gid_map)
