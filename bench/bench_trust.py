"""Image trust costs: the time signature verification adds to a pull, and SBOM + scan of a 500-package image.

Pull: an image of ``--mb`` MB pushed and GPG-signed by skopeo to a local docker-registry, pulled
into an empty store with the default (accept) policy and with a ``signedBy`` policy, alternating;
prints medians and the added share (goal < 5 %). A pull of 100 MB varies by more than 5 % from one
run to the next on a shared machine (the disk's write-back of the previous round), so the
verification step is also timed on its own, in this process (``trust.enforce.admit``: the
digest's resolution, the lookaside read, gpg's import and check; the first call, which imports
what only verification needs, and the median of the next ones), as a share of the accept-policy
pull. Scan: an image whose dpkg status lists 500
packages, an OSV directory of ``--advisories`` advisories; times ``image sbom`` and ``image scan``
with a cold index (first scan builds it) and a warm one (goal < 1 s).

    python3 bench/bench_trust.py [--mb 50] [--rounds 5] [--advisories 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.registry.conftest import layer_tar, start_registry, stop_registry, umoci_image  # noqa: E402


def pallet(root: Path, *args: str, env=None) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pallet.kernel.cli", "--root", str(root), *args], cwd=REPO,
                          capture_output=True, env={**os.environ, "PALLET_STORAGE_DRIVER": "vfs", **(env or {})})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"pallet {' '.join(args)} failed: {proc.stderr.decode()}")
    return elapsed


def gpg_key(home: Path) -> tuple[str, Path]:
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "bench <bench@pallet.test>", "ed25519",
                    "sign", "never"], env=env, check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], env=env, check=True,
                             capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    public = home / "bench.gpg"
    public.write_bytes(subprocess.run(["gpg", "--batch", "--export", fingerprint], env=env, check=True,
                                      capture_output=True).stdout)
    return fingerprint, public


def bench_pull(work: Path, megabytes: int, rounds: int) -> None:
    work.mkdir()
    home = Path(tempfile.mkdtemp(prefix="pb-gpg-"))
    proc, handle, registry = start_registry(work / "registry")
    try:
        fingerprint, public = gpg_key(home)
        source = umoci_image(work, [layer_tar({"data/blob": os.urandom(megabytes * 1_000_000)})], tag="big")
        store = work / "lookaside"
        registries_d = work / "registries.d"
        registries_d.mkdir()
        (registries_d / "bench.yaml").write_text(f"docker:\n  {registry.host}:\n    lookaside: {store.as_uri()}\n")
        subprocess.run(["skopeo", "--insecure-policy", "--registries.d", str(registries_d), "copy",
                        "--dest-tls-verify=false", "--sign-by", fingerprint, source,
                        f"docker://{registry.host}/big:1"], env={**os.environ, "GNUPGHOME": str(home)},
                       check=True, capture_output=True)
        policy = work / "policy.json"
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {
            registry.host: [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(public)}]}}}))
        plain, verified = [], []
        signed_flags = ["--signature-policy", str(policy), "--registries.d", str(registries_d)]
        for index in range(rounds):
            order = [(plain, []), (verified, signed_flags)]
            for samples, flags in (order if index % 2 else order[::-1]):   # neither always goes first
                root = work / f"root-{index}-{len(flags)}"
                samples.append(pallet(root, "pull", *flags, f"{registry.host}/big:1"))
                shutil.rmtree(root)
        a, b = statistics.median(plain), statistics.median(verified)
        print(f"pull {megabytes} MB: accept policy {a * 1000:.0f} ms, signedBy policy {b * 1000:.0f} ms, "
              f"added {b - a:+.3f} s ({(b - a) / a * 100:+.1f} %)")
        first, check = admission_time(work / "root-admit", policy, registries_d, f"{registry.host}/big:1", rounds)
        print(f"verification alone (admit): first call with its imports {first * 1000:.0f} ms = "
              f"{first / a * 100:.1f} %, then median of {rounds} {check * 1000:.0f} ms = {check / a * 100:.1f} % "
              f"of the accept-policy pull")
    finally:
        stop_registry(proc, handle)
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)}, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def admission_time(root: Path, policy: Path, registries_d: Path, name: str, rounds: int) -> tuple[float, float]:
    """Seconds of the trust check a ``signedBy`` pull makes before it downloads anything: the first
    call (which imports what only verification needs), and the median of ``rounds`` more."""
    os.environ["PALLET_STORAGE_DRIVER"] = "vfs"
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from pallet.kernel.images import transfer
    from pallet.kernel.trust.enforce import admit

    samples = []
    warm = Engine(Config.load(root=str(root)))   # what any pull imports (the HTTP client) is not verification's
    transfer.transport(warm, "docker", {"platform": None, "tls_verify": True, "credentials": None}).resolve(name)
    for _ in range(rounds + 1):
        engine = Engine(Config.load(root=str(root)))
        engine.signature_policy, engine.registries_d = str(policy), str(registries_d)
        kind, location = transfer.split(engine, name)
        driver = transfer.transport(engine, kind, {"platform": None, "tls_verify": True, "credentials": None})
        start = time.perf_counter()
        admission = admit(engine, kind, location, driver)
        samples.append(time.perf_counter() - start)
        assert admission.verdict is not None and admission.verdict.signers, "the signedBy rule was applied"
    return samples[0], statistics.median(samples[1:])


def bench_scan(work: Path, advisories: int) -> None:
    work.mkdir()
    status = "".join(f"Package: pkg{i}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.{i % 60}-1\n\n"
                     for i in range(500)).encode()
    source = umoci_image(work, [layer_tar({"var/lib/dpkg/status": status})], tag="pkgs")
    root = work / "root-scan"
    pallet(root, "pull", source)
    db = work / "osv"
    db.mkdir()
    for i in range(advisories):
        (db / f"BENCH-{i}.json").write_text(json.dumps({"id": f"BENCH-{i}", "affected": [{
            "package": {"ecosystem": "Debian:12", "name": f"pkg{i % 5000}"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"1.{i % 50}-1"}]}]}]}))
    image = subprocess.run([sys.executable, "-m", "pallet.kernel.cli", "--root", str(root), "images", "-q"],
                           cwd=REPO, capture_output=True, text=True, env={**os.environ, "PALLET_STORAGE_DRIVER": "vfs"}
                           ).stdout.split()[0]
    sbom = statistics.median(pallet(root, "image", "sbom", image) for _ in range(3))
    cold = pallet(root, "image", "scan", "--db", str(db), "--format", "json", image)
    warm = statistics.median(pallet(root, "image", "scan", "--db", str(db), "--format", "json", image)
                             for _ in range(3))
    print(f"sbom of 500 packages: {sbom * 1000:.0f} ms; scan against {advisories} advisories: "
          f"cold index {cold:.2f} s, warm {warm * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--advisories", type=int, default=50000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-trust-"))
    try:
        bench_pull(work / "pull", args.mb, args.rounds)
        bench_scan(work / "scan", args.advisories)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
