"""``pallet serve`` (alias ``pallet system service``): the Docker Engine API on a socket, for the docker CLI,
docker-py and docker-compose. Daemonless stays the default; this server keeps no state of its own."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("-H", "--host", "hosts", multiple=True, metavar="URL",
              help="unix:///PATH or tcp://ADDR:PORT (repeatable) [default: unix://RUN_ROOT/pallet.sock].")
@click.option("--tlsverify", is_flag=True, help="Require TLS client certificates signed by --tlscacert (tcp).")
@click.option("--tlscacert", default="", metavar="FILE", help="CA that signs client certificates.")
@click.option("--tlscert", default="", metavar="FILE", help="Server certificate.")
@click.option("--tlskey", default="", metavar="FILE", help="Server key.")
@click.option("--insecure-tcp", is_flag=True, help="Allow tcp:// without TLS (anyone who connects controls the host).")
@click.option("--timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS",
              help="Exit after this many idle seconds (0: never), for socket activation.")
@click.option("--engine/--no-engine", "with_engine", default=True, show_default=True,
              help="Run the resident engine (pallet engine) beside the server, unless one runs: it records "
                   "detached containers' exits and runs this root's CLI commands fast.")
@click.pass_obj
def serve(engine, hosts, tlsverify, tlscacert, tlscert, tlskey, insecure_tcp, timeout, with_engine):
    """Serve the Docker Engine API (1.24 to 1.44) over this pallet's root."""
    from pathlib import Path

    from pallet.kernel.api.server import ServeOptions, check_hosts, serve as run_server
    from pallet.kernel.cli.container_flags import API_SOCKET

    hosts = list(hosts) or [f"unix://{Path(engine.run_root) / API_SOCKET}"]
    options = ServeOptions(hosts, tlsverify, tlscacert, tlscert, tlskey, insecure_tcp, timeout)
    check_hosts(options)  # before any plugin loads: a refused flag is one line, exit 2
    from pallet.kernel.boot import boot

    boot(engine)   # as dockerd does at start: the always/unless-stopped containers a reboot stopped
    from pallet.kernel.cluster.store import membership

    if membership(engine) is not None:  # a root that joined a cluster: its agent runs with the server
        from pallet.kernel.cluster.agent import Agent

        engine.plugins.load("storage", "security", "runtime")
        Agent(engine).start_thread()
    from pallet.kernel.cli.resident import start_beside, stop_beside

    beside = start_beside(Path(engine.run_root), engine.root) if with_engine else None
    try:
        run_server(engine, options)
    finally:
        stop_beside(beside)
