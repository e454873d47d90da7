"""Make signatures for an image manifest: GPG into the lookaside staging store (or a directory), sigstore as a registry attachment."""

from __future__ import annotations

from pathlib import Path

from pallet.kernel.errors import PalletError, UsageError
from pallet.kernel.images import reference as refs
from pallet.kernel.trust import payload as payloads


def _passphrase(path: str | None) -> bytes:
    if path is None:
        return b""
    try:
        return Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise PalletError(f"cannot read passphrase file {path}: {exc.strerror}") from None


def staging(engine, ref: refs.Reference, directory: str | None = None) -> str:
    """Where a GPG signature of ``ref`` is written: ``directory``, else registries.d's lookaside-staging."""
    from pallet.kernel.trust.enforce import registries

    if directory:
        return Path(directory).resolve().as_uri()
    base = registries(engine).lookaside(ref, write=True)
    if not base:
        raise UsageError(f"no lookaside-staging (or lookaside) is configured for {ref.name} in registries.d; "
                         "configure one or pass --directory")
    return base


def sigstore_key(key_file: str, passphrase_file: str | None):
    """The decrypted cosign private key (read before anything is pushed, so a wrong passphrase pushes nothing)."""
    from pallet.kernel.trust import sigstore

    try:
        data = Path(key_file).read_bytes()
    except OSError as exc:
        raise PalletError(f"cannot read private key {key_file}: {exc.strerror}") from None
    return sigstore.load_private(data, _passphrase(passphrase_file), key_file)


def sign_gpg(engine, ref: refs.Reference, digest: str, fingerprint: str, passphrase_file: str | None = None,
             directory: str | None = None) -> str:
    """Sign ``digest`` as ``ref`` with a key of the user's keyring; store it in the lookaside staging (or ``directory``)."""
    from pallet.kernel.trust import gpg, registriesd

    base = staging(engine, ref, directory)
    signature = gpg.sign(payloads.make(str(ref), digest, payloads.GPG_TYPE), fingerprint, passphrase_file)
    return registriesd.write(base, ref, digest, signature)


def sign_sigstore(engine, ref: refs.Reference, digest: str, key, tls_verify: bool = True) -> str:
    """Sign ``digest`` as ``ref`` with a loaded cosign key; attach it as ``sha256-<hex>.sig`` in ``ref``'s repository."""
    from pallet.kernel.trust import attachments, sigstore

    signed = payloads.make(str(ref), digest, payloads.SIGSTORE_TYPE)
    return attachments.write(engine, ref, digest, signed, sigstore.sign(key, signed), tls_verify)


def generate_key(prefix: str, passphrase_file: str | None) -> tuple[Path, Path]:
    from pallet.kernel.trust import sigstore
    return sigstore.generate(prefix, _passphrase(passphrase_file))
