"""``pallet image trust show|set|generate-key``, ``image sign``, ``image verify`` and the trust flags pull-like commands share."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pallet.kernel.cli.output import emit, json_option
from pallet.kernel.errors import PalletError, UsageError

PODMAN_TYPES = {"accept": "insecureAcceptAnything", "reject": "reject", "signedBy": "signedBy",
                "sigstoreSigned": "sigstoreSigned"}


def _remember(attribute: str):
    def callback(ctx, _param, value):
        if value:
            setattr(ctx.find_root().obj, attribute, value)
        return value
    return callback


def trust_options(func):
    """``--signature-policy FILE`` and ``--registries.d DIR`` (podman's and skopeo's names) on any command that verifies."""
    func = click.option("--registries.d", "registries_d", metavar="DIR", expose_value=False,
                        callback=_remember("registries_d"),
                        help="registries.d directory: where GPG signatures are looked up and staged.")(func)
    return click.option("--signature-policy", metavar="FILE", expose_value=False,
                        callback=_remember("signature_policy"),
                        help="Trust policy file [default: /etc/pallet/policy.json, else /etc/containers/policy.json].")(func)


NOTARY = ("Docker Content Trust (Notary) is not supported: pallet verifies images by its trust policy "
          "(pallet image trust show), and signs pushes with --sign-by or --sign-by-sigstore-private-key")
REFUSED_WHEN_FALSE = {"--disable-content-trust": NOTARY}


class GoBoolCommand(click.Command):
    """A command whose boolean flags also take Go's ``--flag=true|false`` (Docker's scripts write
    ``--disable-content-trust=true``, podman's ``--tls-verify=false``); ``--flag`` alone stays a flag, so it
    never eats the next argument. ``=false`` of a flag in ``REFUSED_WHEN_FALSE`` asks for what pallet has not:
    its error. A flag that is on by default and has no ``--no-`` twin (``--tls-verify``) is turned off by
    ``=false`` alone; the last occurrence wins."""

    def parse_args(self, ctx, args):
        flags = {name: param for param in self.get_params(ctx)
                 if isinstance(param, click.Option) and param.is_flag for name in param.opts if name.startswith("--")}
        rewritten, explicit = [], {}
        for index, arg in enumerate(args):
            if arg == "--":
                rewritten += args[index:]
                break
            name, eq, value = arg.partition("=")
            param = flags.get(name)
            if param is None:
                rewritten.append(arg)
                continue
            if not eq:
                value = "true"
            if value.lower() in ("1", "t", "true"):
                explicit[param.name] = True
                rewritten.append(name)
            elif value.lower() in ("0", "f", "false"):
                if name in REFUSED_WHEN_FALSE:
                    raise UsageError(REFUSED_WHEN_FALSE[name])
                explicit[param.name] = False
                rewritten += param.secondary_opts[:1]
            else:
                raise UsageError(f'invalid argument "{value}" for "{name}" flag: strconv.ParseBool: '
                                 f'parsing "{value}": invalid syntax')
        rest = super().parse_args(ctx, rewritten)
        for param in self.get_params(ctx):
            if param.name in explicit and param.expose_value and not param.secondary_opts:
                ctx.params[param.name] = explicit[param.name]
        return rest


def tls_verify_option(help_text: str = "Require HTTPS and verify certificates (--tls-verify=false allows "
                                       "plain HTTP)."):
    """podman's ``--tls-verify[=BOOL]`` (the command's class is :class:`GoBoolCommand`): a flag, on by default."""
    return click.option("--tls-verify", is_flag=True, default=True, help=help_text + " [default: true]")


def content_trust_option(what: str):
    """Docker's ``--disable-content-trust[=true]`` (the command's class is :class:`GoBoolCommand`): accepted, as
    it is Docker's default; ``=false`` asks for Notary, which pallet has not: its trust policy verifies, always."""
    return click.option("--disable-content-trust", is_flag=True, expose_value=False,
                        help=f"Accepted (Docker's default): no Notary here; {what}.")


def sign_options(func):
    for option in reversed([
        click.option("--sign-by", metavar="FINGERPRINT", default=None, help="Sign with this GPG key (simple signing)."),
        click.option("--sign-by-sigstore-private-key", "sigstore_key", metavar="KEY", default=None,
                     help="Sign with this cosign private key (a sha256-<digest>.sig attachment)."),
        click.option("--sign-passphrase-file", metavar="FILE", default=None, help="Passphrase of the signing key."),
    ]):
        func = option(func)
    return func


def prepare_signing(engine, ref, sign_by, sigstore_key, passphrase_file, directory=None):
    """Check what signing needs (a staging place, a key that decrypts) before anything is pushed; return the sigstore key."""
    from pallet.kernel.trust import signing

    if sign_by:
        signing.staging(engine, ref, directory)
    return signing.sigstore_key(sigstore_key, passphrase_file) if sigstore_key else None


def sign_pushed(engine, ref, digest: str, sign_by, key, passphrase_file, tls_verify=True, directory=None) -> list[str]:
    """Sign ``digest`` under ``ref`` with whichever keys were given; return where each signature went."""
    from pallet.kernel.trust import signing

    written = []
    if sign_by:
        written.append(signing.sign_gpg(engine, ref, digest, sign_by, passphrase_file, directory))
    if key is not None:
        written.append(signing.sign_sigstore(engine, ref, digest, key, tls_verify))
    return written


@click.group("trust")
def trust():
    """Show and change the image trust policy (containers-policy.json)."""


def _policy_target(engine) -> Path:
    from pallet.kernel.trust.enforce import setting
    return Path(setting(engine, "signature_policy", "policy") or "/etc/pallet/policy.json")


def _rows(policy, registries) -> list[dict]:
    from pallet.kernel.images import reference as refs

    rows = []
    entries = [("", "default", policy.default)]
    for transport, scopes in policy.transports.items():
        entries += [(transport, scope or f"(all {transport})", reqs) for scope, reqs in scopes.items()]
    for transport, scope, requirements in entries:
        for requirement in requirements:
            lookaside = ""
            if transport == "docker" and requirement.type == "signedBy" and not scope.startswith(("(", "*")):
                try:
                    lookaside = registries.lookaside(refs.parse(scope, default_tag=False)) or ""
                except PalletError:
                    lookaside = ""
            keys = ", ".join(requirement.key_paths) or ("keyData" if requirement.key_data else "")
            rows.append({"Transport": transport or "all", "Scope": scope, "Type": requirement.type,
                         "Keys": keys, "Identity": requirement.identity.type if requirement.signed else "",
                         "Lookaside": lookaside})
    return rows


@trust.command("show")
@click.option("--raw", is_flag=True, help="Print the policy file as it is.")
@json_option
@click.option("--signature-policy", metavar="FILE", expose_value=False, callback=_remember("signature_policy"),
              help="Trust policy file to show.")
@click.option("--registries.d", "registries_d", metavar="DIR", expose_value=False, callback=_remember("registries_d"),
              help="registries.d directory.")
@click.pass_context
def show(ctx, raw, as_json):
    """Show the trust policy: one row per rule and requirement."""
    from pallet.kernel.trust.enforce import load_policy, registries

    policy = load_policy(ctx.obj)
    if raw:
        click.echo(json.dumps(policy.document, indent=4))
        return
    columns = [("TRANSPORT", "Transport"), ("SCOPE", "Scope"), ("TYPE", "Type"), ("KEYS", "Keys"),
               ("IDENTITY", "Identity"), ("LOOKASIDE", "Lookaside")]
    emit(_rows(policy, registries(ctx.obj)), columns, None, as_json)


@trust.command("set")
@click.argument("scope")
@click.option("-t", "--type", "kind", type=click.Choice(sorted(PODMAN_TYPES)), required=True,
              help="accept, reject, signedBy (GPG) or sigstoreSigned.")
@click.option("-f", "--pubkeysfile", multiple=True, metavar="FILE", help="Public key file (repeatable for signedBy).")
@click.option("--transport", default="docker", show_default=True, help="Transport the scope belongs to.")
@click.option("--signature-policy", metavar="FILE", expose_value=False, callback=_remember("signature_policy"),
              help="Trust policy file to change [default: /etc/pallet/policy.json].")
@click.pass_context
def set_(ctx, scope, kind, pubkeysfile, transport):
    """Set the requirement for SCOPE (a registry, namespace or repository; "default" for everything else)."""
    from pallet.kernel.fsutil import atomic_write
    from pallet.kernel.trust import policy as policies

    target = _policy_target(ctx.obj)
    if target.exists():
        document = policies.load(target).document
    else:
        document = {"default": [{"type": "insecureAcceptAnything"}]}
    requirement = {"type": PODMAN_TYPES[kind]}
    if kind in ("signedBy", "sigstoreSigned"):
        if not pubkeysfile:
            raise UsageError(f"--type {kind} needs at least one --pubkeysfile")
        for name in pubkeysfile:
            if not Path(name).is_file():
                raise UsageError(f"public key file {name} does not exist")
        if kind == "signedBy":
            requirement.update(keyType="GPGKeys", **({"keyPath": str(Path(pubkeysfile[0]).resolve())}
                                                     if len(pubkeysfile) == 1 else
                                                     {"keyPaths": [str(Path(n).resolve()) for n in pubkeysfile]}))
        elif len(pubkeysfile) == 1:
            requirement["keyPath"] = str(Path(pubkeysfile[0]).resolve())
        else:
            raise UsageError("--type sigstoreSigned takes exactly one --pubkeysfile")
    elif pubkeysfile:
        raise UsageError(f"--pubkeysfile makes no sense with --type {kind}")
    if scope == "default":
        document["default"] = [requirement]
    else:
        document.setdefault("transports", {}).setdefault(transport, {})[scope] = [requirement]
    text = json.dumps(document, indent=4) + "\n"
    policies.parse(text, str(target))   # never write a policy that would not load
    atomic_write(target, text.encode())


@trust.command("generate-key")
@click.option("--output-prefix", default="cosign", show_default=True, help="Write PREFIX.key and PREFIX.pub.")
@click.option("--passphrase-file", metavar="FILE", default=None, help="Passphrase for the private key.")
def generate_key(output_prefix, passphrase_file):
    """Generate a sigstore (cosign) key pair: PREFIX.key (encrypted) and PREFIX.pub."""
    from pallet.kernel.trust import signing

    private, public = signing.generate_key(output_prefix, passphrase_file)
    click.echo(f"Private key written to {private}\nPublic key written to {public}")


def _stored_digest(ctx, name):
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import reference as refs

    record = ImageStore(ctx.obj).resolve(name)
    wanted = refs.parse(name, default_tag=False)
    for entry in record.repo_digests:
        repo, _, digest = entry.partition("@")
        if repo == wanted.name:
            return digest
    return record.index_digest or record.manifest_digest


@click.command("sign", cls=GoBoolCommand)
@click.argument("name")
@sign_options
@click.option("--sign-identity", metavar="REFERENCE", default=None, help="Identity to sign (default: NAME).")
@click.option("-d", "--directory", metavar="DIR", default=None, help="Write GPG signatures under DIR (a lookaside layout).")
@tls_verify_option("Require HTTPS for the registry holding sigstore attachments.")
@trust_options
@click.pass_context
def sign(ctx, name, sign_by, sigstore_key, sign_passphrase_file, sign_identity, directory, tls_verify):
    """Sign a stored image's manifest as NAME (push it first for sigstore attachments)."""
    from pallet.kernel.images import reference as refs

    if not sign_by and not sigstore_key:
        raise UsageError("give --sign-by FINGERPRINT or --sign-by-sigstore-private-key KEY")
    digest = _stored_digest(ctx, name)
    identity = refs.parse(sign_identity or name.removeprefix("docker://"))
    key = prepare_signing(ctx.obj, identity, sign_by, sigstore_key, sign_passphrase_file, directory)
    for where in sign_pushed(ctx.obj, identity, digest, sign_by, key, sign_passphrase_file, tls_verify, directory):
        click.echo(f"Signed {identity}@{digest}: {where}")


@click.command("verify", cls=GoBoolCommand)
@click.argument("name")
@tls_verify_option("Require HTTPS and verify certificates.")
@trust_options
@click.pass_context
def verify(ctx, name, tls_verify):
    """Check NAME (a stored image, or any transport reference) against the trust policy; print who signed what."""
    from pallet.kernel.errors import NotFound
    from pallet.kernel.images import ImageStore, transfer
    from pallet.kernel.trust.enforce import admit, admit_stored

    engine = ctx.obj
    try:
        record = ImageStore(engine).resolve(name) if "://" not in name and ":/" not in name else None
    except NotFound:
        record = None
    if record is not None:
        verdict = admit_stored(engine, record, name)
    else:
        engine.plugins.load("registry")
        kind, location = transfer.split(engine, name)
        verdict = admit(engine, kind, location, transfer.transport(engine, kind, {"tls_verify": tls_verify})).verdict
    if verdict is None or not verdict.signers:
        rule = verdict.rule if verdict else "the policy"
        click.echo(f"{name}: accepted by {rule} (no signature required)")
        return
    click.echo(f"{name}: accepted by {verdict.rule}")
    for signer in verdict.signers:
        click.echo(f"  {signer}")
