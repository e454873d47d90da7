"""GPG simple signing through the ``gpg`` binary: verify against a policy's keys only, sign with the user's keyring.

Verification imports the policy's keys into a throwaway GNUPGHOME, so a signature counts only
when one of exactly those keys made it (the user's own keyring plays no part), and reads gpg's
machine-readable ``--status-fd`` lines rather than its prose.
"""

from __future__ import annotations

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


@contextlib.contextmanager
def keyring(keys: list[bytes]):
    """A temporary GNUPGHOME holding exactly ``keys`` (armored or binary public keys); removed afterwards."""
    home = tempfile.mkdtemp(prefix="pallet-gpg-")
    try:
        os.chmod(home, 0o700)
        for index, key in enumerate(keys):
            proc = subprocess.run([*_base(home), "--status-fd", "1", "--import"], input=key, capture_output=True)
            if b"IMPORT_OK" not in proc.stdout:
                raise PalletError(f"cannot import GPG key #{index + 1}: {_last_line(proc.stderr)}")
        yield home
    finally:
        if any(Path(home).glob("S.gpg-agent*")):
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].removeprefix("gpg: ") if lines else "gpg said nothing"


def verify(home: str, signature: bytes) -> tuple[bytes, str]:
    """(signed payload, primary key fingerprint) of an opaque OpenPGP signature made by a key in ``home``."""
    with tempfile.TemporaryDirectory(prefix="pallet-gpgsig-") as work:
        source, output = Path(work) / "sig", Path(work) / "payload"
        source.write_bytes(signature)
        proc = subprocess.run([*_base(home), "--status-fd", "1", "--output", str(output), "--decrypt", str(source)],
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
