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
    # Added by the security room; all optional so older callers keep working. The containers
    # room passes ``engine`` (host defaults come from its ``[security]`` config section, state
    # such as MCS allocations lives under its root), the container id and ``--userns``.
    engine: object = None
    container_id: str = ""
    userns: str = ""                                         # --userns: "" or "host"
    relabel: list[tuple[str, str]] = field(default_factory=list)  # (bind source, "z"|"Z"), filled by apply_profiles

    @property
    def settings(self) -> dict:
        """The ``[security]`` section of pallet.toml (host defaults: seccomp_profile, userns_remap …)."""
        return self.engine.config.section("security") if self.engine is not None else {}


class SecurityProfile(Driver):
    """A confinement mechanism (capabilities, seccomp, an LSM …).

    ``order`` sorts profiles (lower applies first). ``default_enabled`` profiles apply to
    every container on hosts where ``probe`` says available; others only when the user
    names them with ``--security-opt NAME=…``.
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
