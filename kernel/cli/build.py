"""``pallet build`` (also ``pallet image build``) and ``pallet builder prune``: Docker's flags over
:func:`pallet.kernel.build.build`, with BuildKit-style progress (plain numbered lines, or a live view on a TTY)."""

from __future__ import annotations

import os
import sys
import time

import click

from pallet.kernel.cli.trust import trust_options
from pallet.kernel.errors import PalletError, UsageError


class PlainProgress:
    """BuildKit's ``--progress=plain``: ``#N [stage i/n] STEP``, output lines with times, ``#N DONE 0.1s``."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.started: dict[int, float] = {}

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        number = event["id"]
        kind = event["type"]
        if kind == "step":
            self.started[number] = time.monotonic()
            self._write(f"#{number} {event['name']}")
        elif kind == "log":
            offset = time.monotonic() - self.started.get(number, time.monotonic())
            self._write(f"#{number} {offset:.3f} {event['text']}")
        elif kind == "cached":
            self._write(f"#{number} CACHED")
        elif kind == "done":
            self._write(f"#{number} DONE {event['seconds']:.1f}s")
        elif kind == "error":
            self._write(f"#{number} ERROR: {event['text']}")

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class LiveProgress:
    """A rich live view on a TTY: one line per step with its state and time, the last output line under it."""

    def __init__(self):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.rows: dict[int, list] = {}
        self.live = Live(console=self.console, refresh_per_second=8, transient=False)
        self.live.start()

    def __call__(self, event: dict) -> None:
        number, kind = event["id"], event["type"]
        if number not in self.rows and kind != "step":  # a note outside any step (e.g. about --cache-from)
            self.console.print(event.get("text", ""))
            return
        if kind == "step":
            self.rows[number] = [event["name"], time.monotonic(), "", None]
        elif kind == "log":
            self.rows[number][2] = event["text"][-100:]
        elif kind in ("done", "cached"):
            self.rows[number][3] = "CACHED" if kind == "cached" else f"{event['seconds']:.1f}s"
        elif kind == "error":  # the failed step; what else was running was cancelled with it
            for row in self.rows.values():
                if row[3] is None:
                    row[3] = "CANCELED"
            self.rows[number][3] = "ERROR"
        self.live.update(self._render())

    def _render(self):
        from rich.text import Text

        lines = []
        for number, (name, started, last, state) in self.rows.items():
            shown = state or f"{time.monotonic() - started:.1f}s"
            line = Text(f"=> #{number} {name}", style="red" if state == "ERROR" else "blue" if state else "bold")
            line.append(f"  {shown}", style="red" if state == "ERROR" else "green" if state else "yellow")
            lines.append(line)
            if last and state in (None, "ERROR"):
                lines.append(Text(f"   {last}", style="dim"))
        return Text("\n").join(lines)

    def close(self) -> None:
        if self.live.is_started:
            self.live.stop()


def _parse_pairs(values, flag: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f'invalid argument "{item}" for "{flag}" flag')
        if not sep:
            if flag == "--build-arg":
                if key in os.environ:
                    result[key] = os.environ[key]
                continue
            value = ""
        result[key] = value
    return result


def _parse_secret(spec: str) -> tuple[str, tuple[str, str]]:
    fields = dict(item.partition("=")[::2] for item in spec.split(","))
    secret_id = fields.get("id")
    if not secret_id:
        raise UsageError(f'invalid --secret "{spec}": id= is required')
    if fields.get("env"):
        return secret_id, ("env", fields["env"])
    source = fields.get("src") or fields.get("source")
    if not source:
        if secret_id in os.environ:
            return secret_id, ("env", secret_id)
        raise UsageError(f'invalid --secret "{spec}": give src=FILE or env=NAME')
    if not os.path.isfile(source):
        raise UsageError(f'invalid --secret "{spec}": {source} is not a file')
    return secret_id, ("file", source)


@click.command("build", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("context")
@click.option("-f", "--file", "dockerfile", default="", metavar="PATH",
              help='Name of the Dockerfile (default: "PATH/Dockerfile"; "-" reads it from stdin).')
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]", help="Name and optionally tag the image.")
@click.option("--build-arg", multiple=True, metavar="KEY=VALUE", help="Set build-time variables.")
@click.option("--target", default="", help="Set the target build stage to build.")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Set metadata for an image.")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image.")
@click.option("--no-cache-filter", multiple=True, metavar="STAGE", help="Do not cache specified stages.")
@click.option("--cache-from", multiple=True, metavar="IMAGE", help="Images to consider as cache sources.")
@click.option("--pull", is_flag=True, help="Always attempt to pull a newer version of the base images.")
@click.option("--secret", multiple=True, metavar="id=ID,src=FILE|env=VAR", help="Secret to expose to the build.")
@click.option("--network", default="host", show_default=True, type=click.Choice(["default", "host", "none"]),
              help="Networking mode for the RUN instructions during build.")
@click.option("--add-host", "add_hosts", multiple=True, metavar="HOST:IP",
              help="Add a custom host-to-IP mapping to the /etc/hosts of RUN steps.")
@click.option("--source-date-epoch", type=int, default=None, envvar="SOURCE_DATE_EPOCH",
              help="Timestamp for reproducible output (env SOURCE_DATE_EPOCH).")
@click.option("-o", "--output", "outputs", multiple=True, metavar="type=oci|docker|tar|local,dest=PATH",
              help="Export the result as well (the image is stored too, untagged without -t).")
@click.option("--iidfile", default="", metavar="FILE", help="Write the image ID to the file.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success.")
@click.option("--progress", "progress_mode", default="auto", type=click.Choice(["auto", "tty", "plain", "quiet"]),
              show_default=True, help="Type of progress output.")
@click.option("--platform", default="", help="Target platform (only the host's can be built).")
@click.option("--format", "media", default="oci", show_default=True, type=click.Choice(["oci", "docker"]),
              help="Media types of the image's manifest, config and layers.")
@click.option("--runtime", default="pallet", show_default=True, help="Runtime for RUN steps (pallet, runc, crun).")
@click.option("--sbom", "sbom_format", is_flag=False, flag_value="spdx-json", default=None,
              type=click.Choice(["spdx-json", "cyclonedx-json"]), metavar="[spdx-json|cyclonedx-json]",
              help="Keep an SBOM of the built image as an OCI referrer (push sends it) [default format: spdx-json].")
@click.option("--shm-size", default=None, metavar="BYTES", help="Size of /dev/shm in RUN steps (default 64m).")
@click.option("-m", "--memory", default=None, metavar="BYTES", help="Memory limit of RUN steps.")
@click.option("--memory-swap", default=None, metavar="BYTES", help="Memory plus swap of RUN steps; -1: unlimited swap.")
@click.option("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight) of RUN steps.")
@click.option("--cpuset-cpus", default=None, metavar="CPUS", help="CPUs RUN steps may use (0-3, 0,1).")
@click.option("--cpu-period", type=int, default=None, help="CFS period of RUN steps (microseconds).")
@click.option("--cpu-quota", type=int, default=None, help="CFS quota of RUN steps (microseconds).")
@click.option("--rm/--no-rm", "remove_intermediate", default=True, hidden=True,
              help="Accepted for Docker: RUN steps' containers are always removed.")
@click.option("--force-rm", is_flag=True, hidden=True,
              help="Accepted for Docker: RUN steps' containers are always removed.")
@trust_options
@click.pass_obj
def build(engine, context, dockerfile, tags, build_arg, target, label, no_cache, no_cache_filter, cache_from, pull,
          secret, network, add_hosts, source_date_epoch, outputs, iidfile, quiet, progress_mode, platform, media, runtime,
          sbom_format, shm_size, memory, memory_swap, cpu_shares, cpuset_cpus, cpu_period, cpu_quota,
          remove_intermediate, force_rm):
    """Build an image from a Dockerfile (CONTEXT: a directory, a tarball, or - for stdin)."""
    from pallet.kernel.build import BuildRequest, build_result, run_resources
    from pallet.kernel.build.output import parse_output
    from pallet.kernel.build.parser import DockerfileError
    from pallet.kernel.build.solver import StepFailed
    from pallet.kernel.images import manifest as mf
    from pallet.kernel import hostopts
    from pallet.kernel.images import reference as refs

    extra_hosts = [hostopts.parse_extra_host(h) for h in add_hosts]
    for tag in tags:
        refs.parse(tag)
    if platform and mf.parse_platform(platform) != mf.host_platform():
        raise UsageError(f'--platform {platform}: only the host\'s platform can be built here')
    if context == "-" and dockerfile == "-":
        raise UsageError("invalid argument: can't use stdin for both build context and dockerfile")
    request = BuildRequest(
        context=context, dockerfile=dockerfile, tags=list(tags), build_args=_parse_pairs(build_arg, "--build-arg"),
        target=target, labels=_parse_pairs(label, "--label"), no_cache=no_cache,
        no_cache_filter=[s.lower() for s in no_cache_filter], cache_from=list(cache_from), pull=pull,
        secrets=dict(_parse_secret(s) for s in secret), network="host" if network == "default" else network,
        extra_hosts=extra_hosts, source_date_epoch=source_date_epoch, outputs=[parse_output(o) for o in outputs],
        runtime=runtime, format=media,
        resources=run_resources(shm_size=shm_size, memory=memory, memory_swap=memory_swap, cpu_shares=cpu_shares,
                                cpuset_cpus=cpuset_cpus, cpu_period=cpu_period, cpu_quota=cpu_quota))
    if sum(o.get("dest") == "-" for o in request.outputs) > 1:
        raise UsageError("only one output can be written to stdout")
    if quiet:
        progress_mode = "quiet"
    live = progress_mode == "tty" or (progress_mode == "auto" and sys.stderr.isatty())
    progress = LiveProgress() if live else PlainProgress(quiet=progress_mode == "quiet")
    try:
        result = build_result(engine, request, progress)
    except StepFailed as exc:
        if exc.step:
            progress({"type": "error", "id": exc.step, "text": f"exit code: {exc.code}"})
        if live:
            progress.close()  # the view ends before the output lines are printed under it
        if not quiet:
            for line in exc.tail:
                click.echo(f"  > {line}", err=True)
        raise PalletError(str(exc)) from None
    finally:
        if live:
            progress.close()
    if sbom_format:
        from pallet.kernel.cli.scan import attach_sbom

        _record, _text, digest = attach_sbom(engine, result.image_id, sbom_format)
        if not quiet:
            click.echo(f"Attached {sbom_format} SBOM {digest}", err=True)
    from pallet.kernel import events

    events.emit(engine, "image", "build", result.image_id, {"name": ",".join(tags) if tags else result.image_id})
    if iidfile:
        from pathlib import Path

        from pallet.kernel.fsutil import atomic_write

        atomic_write(Path(iidfile), result.image_id.encode())
    to_stdout = any(o.get("dest") == "-" for o in request.outputs)  # stdout holds the export alone
    if not quiet:
        short = result.image_id.split(":", 1)[1][:12]
        click.echo(f"Successfully built {short}", err=True)
        for tag in tags:
            click.echo(f"Successfully tagged {refs.parse(tag).familiar()}", err=True)
    if not to_stdout:
        click.echo(result.image_id)


@click.group("builder")
def builder():
    """Manage the build cache."""


@builder.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all build cache, also what images still use.")
@click.option("--filter", "filters", multiple=True, metavar="until=DURATION",
              help="Provide filter values (until=24h: unused for longer than that).")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_obj
def prune(engine, all_, filters, force):
    """Remove build cache."""
    from pallet.kernel.build import executor
    from pallet.kernel.build.cache import BuildCache
    from pallet.kernel.build.instructions import parse_duration
    from pallet.kernel.images import ImageStore

    older_than = None
    for item in filters:
        key, _, value = item.partition("=")
        if key not in ("until", "unused-for"):  # unused-for: Docker's deprecated synonym
            raise UsageError(f'invalid filter "{item}" (only until=DURATION is supported)')
        if older_than is not None:
            raise UsageError(f'filters expect only one value for "{key}"')
        seconds = parse_duration(value, "filter until", lambda m: UsageError(m)) / 1e9
        older_than = time.time() - seconds
    if not force:
        what = "all build cache" if all_ else "all dangling build cache"
        if not click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?"):
            return
    engine.plugins.load("storage", "runtime")
    executor.clean_stale(engine)
    store = ImageStore(engine)
    removed, freed = BuildCache(engine, store).prune(keep_used_by_images=not all_, older_than=older_than)
    from pallet.kernel.humanize import size as human_size

    if removed:
        click.echo(deleted_cache_text(removed))
    click.echo(f"Total reclaimed space: {human_size(freed)}")


def deleted_cache_text(removed: list[str]) -> str:
    """Docker's block for pruned build cache (``builder prune`` and ``system prune``): a title, the ids
    (BuildKit's are 25 characters), and a blank line before what follows."""
    return "\n".join(["Deleted build cache objects:", *(key.split(":", 1)[1][:25] for key in removed)]) + "\n"
