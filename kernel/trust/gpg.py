"""GPG simple signing through the ``gpg`` binary: verify against a policy's keys only, sign with the user's keyring.

A signature counts only when one of exactly the policy's keys made it (the user's own keyring
plays no part), read from gpg's machine-readable ``--status-fd`` lines rather than its prose.
The quick way is one ``gpgv`` over a keyring file of those keys (armor removed), which trusts
every key in it and nothing else; any other outcome is judged the slow way, the keys imported
into a throwaway GNUPGHOME and ``gpg --decrypt``, which also gives the precise reason (a key
that does not import, an expired or revoked key). Both read the same status lines the same way.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.trust.payload import InvalidSignature

GPG = "gpg"
BAD_STATUS = {"BADSIG": "a bad signature", "ERRSIG": "a signature by a key the rule does not trust (or that gpg cannot check)",
              "EXPSIG": "an expired signature", "EXPKEYSIG": "a signature by an expired key",
              "REVKEYSIG": "a signature by a revoked key"}


def _gpg() -> str:
    found = shutil.which(GPG)
    if found is None:
        raise PalletError("GPG signatures need the gpg command (Debian package gnupg)")
    return found


def _base(home: str | None) -> list[str]:
    """gpg's fixed flags; in a throwaway ``home`` (verification) no gpg-agent is started at all: public keys need none."""
    args = [_gpg(), "--batch", "--no-tty", "--no-auto-key-locate", "--no-auto-key-retrieve"]
    return args + (["--homedir", home, "--no-autostart"] if home else [])


class KeyImportFailed(PalletError):
    """A key of the policy that gpg does not take: the rule's fault, not the signature's."""


def _import(home: str, keys: list[bytes]) -> None:
    os.mkdir(home, 0o700)
    for index, key in enumerate(keys):
        proc = subprocess.run([*_base(home), "--status-fd", "1", "--import"], input=key, capture_output=True)
        if b"IMPORT_OK" not in proc.stdout:
            raise KeyImportFailed(f"cannot import GPG key #{index + 1}: {_last_line(proc.stderr)}")


def _unarmored(key: bytes) -> bytes | None:
    """A key's binary packets (ASCII armor removed); None when it is neither binary nor plainly armored."""
    if not key.lstrip().startswith(b"-----BEGIN PGP"):
        return key if key and key[0] & 0x80 else None   # an OpenPGP packet starts with its tag's high bit
    lines = key.decode("ascii", errors="replace").strip().splitlines()
    try:
        body = lines[lines.index("") + 1:] if "" in lines else lines[1:]
        data = "".join(line for line in body if not line.startswith(("=", "-----")))
        return base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error):
        return None


class Checker:
    """Checks signatures by exactly ``keys`` (``check(signature) -> (payload, fingerprint)``)."""

    def __init__(self, work: str, keys: list[bytes]):
        self.work, self.keys, self.home = work, keys, None
        binary = [_unarmored(key) for key in keys]
        self.ring = None
        if shutil.which("gpgv") and all(binary):
            self.ring = Path(work) / "keys.gpg"
            self.ring.write_bytes(b"".join(binary))

    def check(self, signature: bytes) -> tuple[bytes, str]:
        if self.ring is not None:
            with contextlib.suppress(PalletError):
                return _run_verify([shutil.which("gpgv"), "--homedir", self.work, "--keyring", str(self.ring)],
                                   signature)
        if self.home is None:
            home = os.path.join(self.work, "home")
            _import(home, self.keys)
            self.home = home
        return verify(self.home, signature)


@contextlib.contextmanager
def keyring(keys: list[bytes]):
    """A :class:`Checker` for exactly ``keys`` (armored or binary public keys); its files removed afterwards."""
    work = tempfile.mkdtemp(prefix="pallet-gpg-")
    try:
        os.chmod(work, 0o700)
        yield Checker(work, keys)
    finally:
        home = Path(work) / "home"
        if any(home.glob("S.gpg-agent*")):
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].removeprefix("gpg: ") if lines else "gpg said nothing"


def verify(home: str, signature: bytes) -> tuple[bytes, str]:
    """(signed payload, primary key fingerprint) of an opaque OpenPGP signature made by a key in ``home``."""
    return _run_verify([*_base(home), "--decrypt"], signature)


def _run_verify(command: list[str], signature: bytes) -> tuple[bytes, str]:
    """Run ``command`` (gpg --decrypt or gpgv) over ``signature``; the payload and the signer's fingerprint."""
    with tempfile.TemporaryDirectory(prefix="pallet-gpgsig-") as work:
        source, output = Path(work) / "sig", Path(work) / "payload"
        source.write_bytes(signature)
        proc = subprocess.run([command[0], "--status-fd", "1", "--output", str(output), *command[1:], str(source)],
                              capture_output=True)
        status = [line.split()[1:] for line in proc.stdout.decode(errors="replace").splitlines()
                  if line.startswith("[GNUPG:] ") and len(line.split()) > 1]
        for words in status:
            if words[0] in BAD_STATUS:
                raise InvalidSignature(f"GPG reports {BAD_STATUS[words[0]]}")
        valid = [words for words in status if words[0] == "VALIDSIG"]
        if proc.returncode != 0 or len(valid) != 1 or sum(w[0] == "NEWSIG" for w in status) > 1:
            detail = _last_line(proc.stderr) if proc.returncode else "not exactly one valid signature"
            raise InvalidSignature(f"not a valid GPG signature by a trusted key ({detail})")
        words = valid[0]
        fingerprint = words[10] if len(words) > 10 else words[1]
        return output.read_bytes(), fingerprint


def sign(payload: bytes, fingerprint: str, passphrase_file: str | None = None) -> bytes:
    """An opaque (non-armored) OpenPGP signature of ``payload`` by ``fingerprint`` from the user's keyring."""
    args = [*_base(None), "--local-user", fingerprint]
    if passphrase_file:
        args += ["--pinentry-mode", "loopback", "--passphrase-file", passphrase_file]
    proc = subprocess.run([*args, "--sign", "--output", "-"], input=payload, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        raise PalletError(f"cannot sign with GPG key {fingerprint}: {_last_line(proc.stderr)}")
    return proc.stdout
