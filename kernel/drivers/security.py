"""Security profile contract: each profile contributes its part to a container's OCI spec."""

from __future__ import annotations

from dataclasses import dataclass, field

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
