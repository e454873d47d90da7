"""Where the trust policy is enforced: before a pull or load stores anything, and before run/create use a stored image.

A pull that a signed requirement governs is verified first, then pinned to the verified
manifest digest (so a tag moved in between cannot slip in) and tagged once stored; the
signatures that were accepted are kept beside the image store so ``run`` and ``image verify``
can re-check them offline under the policy in force then.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write_json
from pallet.kernel.images import reference as refs
from pallet.kernel.trust import policy as policies
from pallet.kernel.trust import scopes
from pallet.kernel.trust.evaluate import Candidate, TrustRejected, Verdict, evaluate

__all__ = ["Admission", "TrustRejected", "admit", "admit_stored", "load_policy", "registries", "setting"]


def setting(engine, attribute: str, key: str) -> str | None:
    """A ``--signature-policy``/``--registries.d`` flag, else ``[trust]`` in the config file."""
    return getattr(engine, attribute, None) or engine.config.section("trust").get(key) or None


def load_policy(engine) -> policies.Policy:
    return policies.load(setting(engine, "signature_policy", "policy"))


def registries(engine):
    from pallet.kernel.trust import registriesd
    return registriesd.load(setting(engine, "registries_d", "registries_d"))


def signatures_path(engine, manifest_digest: str) -> Path:
    return Path(engine.root) / "images" / "signatures" / (manifest_digest.replace(":", "-") + ".json")


@dataclass
class Admission:
    """What a caller pulls (``location``, pinned when verified) and what to do once the image is stored."""

    location: str
    verdict: Verdict | None = None
    tag: refs.Reference | None = None
    manifest_digest: str | None = None

    def stored(self, engine, store, image_id: str) -> None:
        if self.verdict is None or not self.verdict.needs_signatures:
            return
        if self.tag is not None:
            store.tag(image_id, str(self.tag))
        atomic_write_json(signatures_path(engine, self.manifest_digest), {
            "rule": self.verdict.rule, "signers": self.verdict.signers,
            "gpg": [base64.b64encode(blob).decode() for blob in self.verdict.gpg],
            "sigstore": [{"payload": base64.b64encode(p).decode(), "signature": s} for p, s in self.verdict.sigstore]})


def _docker_candidate(engine, ref: refs.Reference, digest: str, tls_verify: bool) -> Candidate:
    from pallet.kernel.trust import attachments, registriesd

    config = registries(engine)

    def gpg_signatures():
        base = config.lookaside(ref)
        return registriesd.read(base, ref, digest) if base else []

    return Candidate("docker", str(ref), ref, digest, gpg_signatures,
                     lambda: attachments.read(engine, ref, digest, tls_verify))


def _dir_candidate(location: str) -> Candidate:
    from pallet.kernel.images.blobs import sha256_digest

    path = Path(location)
    try:
        digest = sha256_digest((path / "manifest.json").read_bytes())
    except OSError as exc:
        raise PalletError(f"cannot read {path / 'manifest.json'}: {exc.strerror}") from None

    def gpg_signatures():
        found, index = [], 1
        while (path / f"signature-{index}").is_file():
            found.append((path / f"signature-{index}").read_bytes())
            index += 1
        return found

    return Candidate("dir", location, None, digest, gpg_signatures)


def admit(engine, transport: str, location: str, driver=None) -> Admission:
    """Check ``transport:location`` against the policy before anything is stored; raise :class:`TrustRejected`."""
    policy = load_policy(engine)
    ref = refs.parse(location) if transport == "docker" else None
    rule, requirements = policies.select(policy, transport, scopes.for_image(transport, location))
    if not any(r.signed for r in requirements):
        if any(r.type == "reject" for r in requirements):
            evaluate(Candidate(transport, location, ref, ""), rule, requirements)
        return Admission(location)
    if transport == "docker":
        tls_verify = (driver.options.get("tls_verify", True) if driver is not None else True)
        digest = ref.digest or driver.resolve(location)
        verdict = evaluate(_docker_candidate(engine, ref, digest, tls_verify), rule, requirements)
        return Admission(str(ref.with_digest(digest)), verdict, ref if ref.tag else None, digest)
    if transport == "dir":
        candidate = _dir_candidate(location)
        return Admission(location, evaluate(candidate, rule, requirements), None, candidate.manifest_digest)
    return Admission(location, evaluate(Candidate(transport, location, None, ""), rule, requirements))


def stored_signatures(engine, manifest_digest: str) -> tuple[list[bytes], list[tuple[bytes, str]]]:
    try:
        doc = json.loads(signatures_path(engine, manifest_digest).read_text())
    except (FileNotFoundError, ValueError):
        return [], []
    return ([base64.b64decode(b) for b in doc.get("gpg", [])],
            [(base64.b64decode(s["payload"]), s["signature"]) for s in doc.get("sigstore", [])])


def admit_stored(engine, record, name: str | None) -> Verdict | None:
    """Before run/create use a stored image pulled from a registry: re-check its kept signatures under today's policy.

    The image is judged under the name it was asked for, or under each of its tags when asked
    for by id, but only for the repositories it was pulled from (its repo digests): images
    built, imported or loaded here were never pulled under a rule.
    """
    pulled = {}
    for entry in record.repo_digests:
        repository, _, digest = entry.partition("@")
        pulled[repository] = digest
    if not pulled:
        return None
    if name and not refs.looks_like_id(name):
        names = [refs.parse(name.removeprefix("docker://"))]
    else:
        names = [refs.parse(tag) for tag in record.repo_tags]
    names = [ref for ref in names if ref.name in pulled]
    if not names:
        return None
    policy = load_policy(engine)
    verdict = None
    for ref in names:
        rule, requirements = policies.select(policy, "docker", scopes.docker(ref))
        if any(r.type != "insecureAcceptAnything" for r in requirements):
            digest = pulled[ref.name]
            gpg, sigstore = stored_signatures(engine, digest)
            candidate = Candidate("docker", str(ref), ref, digest, lambda g=gpg: g, lambda s=sigstore: s)
            verdict = evaluate(candidate, rule, requirements)
    return verdict
