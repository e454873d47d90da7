"""Every flag of docker 28's ``run`` and ``create`` (the docker CLI on this machine kind) is one of pallet's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import click
import pytest

from pallet.kernel.cli.container import create, run

FLAG = re.compile(r"^\s+(?:-(\w), )?--([a-z0-9-]+)")


def docker_flags(command: str) -> set[str]:
    docker = shutil.which("docker")
    assert docker, "the docker CLI 28 ships with this machine kind; the parity check needs it"
    text = subprocess.run([docker, command, "--help"], capture_output=True, text=True, check=True).stdout
    flags = set()
    for line in text.splitlines():
        match = FLAG.match(line)
        if match:
            short, long = match.groups()
            flags.add(f"--{long}")
            if short:
                flags.add(f"-{short}")
    return flags


def pallet_flags(command: click.Command) -> set[str]:
    return {name for param in command.params if isinstance(param, click.Option)
            for name in param.opts + param.secondary_opts} | {"--help"}


@pytest.mark.parametrize("name,command", [("run", run), ("create", create)])
def test_every_docker_flag_is_a_pallet_flag(name, command):
    wanted = docker_flags(name)
    assert len(wanted) > 100  # the parser still reads docker's help
    assert sorted(wanted - pallet_flags(command)) == []


def test_docs_cli_md_is_the_scripts_output_and_every_gap_says_why():
    from tests.conftest import REPO

    generated = subprocess.run([sys.executable, str(REPO / "scripts" / "cli_parity.py")], capture_output=True,
                               text=True, check=True, cwd=REPO).stdout
    assert generated == (REPO / "docs" / "cli.md").read_text(), \
        "docs/cli.md is stale: run python3 scripts/cli_parity.py > docs/cli.md"
    rows = [line for line in generated.splitlines() if line.startswith("| `")]
    assert len(rows) > 300 and "## `network create`" in generated and "## `system events`" in generated
    unexplained = [row for row in rows if "not supported" in row and "not supported: " not in row]
    assert unexplained == []
    lone = [line for line in generated.splitlines() if line.startswith("not supported") and ": " not in line]
    assert lone == []
