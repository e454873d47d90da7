"""Evaluate a policy's requirements for one image: every requirement must accept; a rejection names the rule and why."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pallet.kernel.errors import PalletError
from pallet.kernel.images import reference as refs
from pallet.kernel.trust import payload as payloads
from pallet.kernel.trust.policy import PolicyError, Requirement


class TrustRejected(PalletError):
    """The trust policy does not admit the image."""


@dataclass
class Candidate:
    """What the policy is asked about: how the image was named, its manifest digest, and its signatures (lazily)."""

    transport: str
    location: str
    reference: refs.Reference | None
    manifest_digest: str
    gpg_signatures: Callable[[], list[bytes]] = lambda: []
    sigstore_signatures: Callable[[], list[tuple[bytes, str]]] = lambda: []


@dataclass
class Verdict:
    rule: str
    requirements: list[Requirement]
    signers: list[str] = field(default_factory=list)
    gpg: list[bytes] = field(default_factory=list)
    sigstore: list[tuple[bytes, str]] = field(default_factory=list)

    @property
    def needs_signatures(self) -> bool:
        return any(r.signed for r in self.requirements)


def key_material(requirement: Requirement, rule: str) -> list[bytes]:
    """The key files (or inline keyData) of a signed requirement; an unreadable one is a policy error."""
    if requirement.key_data is not None:
        return [requirement.key_data]
    keys = []
    for name in requirement.key_paths:
        try:
            keys.append(Path(name).read_bytes())
        except OSError as exc:
            raise PolicyError(f"cannot read key {name} named by trust policy rule {rule}: {exc.strerror}") from None
    return keys


def _check(candidate: Candidate, requirement: Requirement, signed: bytes, kind: str) -> payloads.Payload:
    from pallet.kernel.trust import identity

    parsed = payloads.parse(signed, kind)
    if parsed.manifest_digest != candidate.manifest_digest:
        raise payloads.InvalidSignature(f"signature is for manifest {parsed.manifest_digest}, the image's is "
                                        f"{candidate.manifest_digest}")
    ok, reason = identity.matches(requirement.identity, candidate.reference, parsed.docker_reference)
    if not ok:
        raise payloads.InvalidSignature(reason)
    return parsed


def _gpg(candidate: Candidate, requirement: Requirement, rule: str, verdict: Verdict) -> str | None:
    from pallet.kernel.trust import gpg

    signatures = candidate.gpg_signatures()
    if not signatures:
        return "no GPG signature exists for the image"
    problems = []
    with gpg.keyring(key_material(requirement, rule)) as checker:
        for index, blob in enumerate(signatures, 1):
            try:
                signed, fingerprint = checker.check(blob)
                parsed = _check(candidate, requirement, signed, payloads.GPG_TYPE)
            except gpg.KeyImportFailed:
                raise
            except PalletError as exc:
                problems.append(f"signature {index}: {exc}")
                continue
            verdict.signers.append(f"GPG {fingerprint} signed {parsed.docker_reference}")
            verdict.gpg.append(blob)
            return None
    return "no signature verified (" + "; ".join(problems) + ")"


def _sigstore(candidate: Candidate, requirement: Requirement, rule: str, verdict: Verdict) -> str | None:
    from pallet.kernel.trust import sigstore

    signatures = candidate.sigstore_signatures()
    if not signatures:
        return "no sigstore signature exists for the image"
    keys = []
    for index, data in enumerate(key_material(requirement, rule)):
        try:
            keys.append(sigstore.load_public(data, requirement.key_paths[index] if requirement.key_paths else "keyData"))
        except PalletError as exc:
            raise PolicyError(f"trust policy rule {rule}: {exc}") from None
    problems = []
    for index, (signed, signature) in enumerate(signatures, 1):
        try:
            for key in keys:
                with contextlib.suppress(payloads.InvalidSignature):
                    sigstore.verify(key, signed, signature)
                    break
            else:
                raise payloads.InvalidSignature("the signature does not verify with the policy's public key")
            parsed = _check(candidate, requirement, signed, payloads.SIGSTORE_TYPE)
        except PalletError as exc:
            problems.append(f"signature {index}: {exc}")
            continue
        verdict.signers.append(f"sigstore key {sigstore.fingerprint(key)[:16]} signed {parsed.docker_reference}")
        verdict.sigstore.append((signed, signature))
        return None
    return "no signature verified (" + "; ".join(problems) + ")"


def evaluate(candidate: Candidate, rule: str, requirements: list[Requirement]) -> Verdict:
    """A :class:`Verdict` when every requirement accepts; else :class:`TrustRejected` naming ``rule``."""
    verdict = Verdict(rule, requirements)
    name = str(candidate.reference) if candidate.reference else f"{candidate.transport}:{candidate.location}"
    for requirement in requirements:
        if requirement.type == "insecureAcceptAnything":
            continue
        if requirement.type == "reject":
            problem = "the rule rejects every image"
        elif requirement.type == "signedBy":
            problem = _gpg(candidate, requirement, rule, verdict)
        else:
            problem = _sigstore(candidate, requirement, rule, verdict)
        if problem:
            raise TrustRejected(f"{name} rejected by trust policy rule {rule} ({requirement.describe()}): {problem}")
    return verdict
