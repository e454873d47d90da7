"""``pallet plugins check volume|network|ipam NAME`` over the built-ins, and pytest's options passed through."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest


@pytest.fixture
def scratch(tmp_path):
    """The kits' --home: empty afterwards, as the kits promise."""
    path = tmp_path / "homes"
    path.mkdir()
    return path


@pytest.mark.parametrize("kind,name", [("volume", "local"), ("network", "bridge"), ("ipam", "default")])
def test_builtin_drivers_pass_their_kit(pallet, scratch, kind, name):
    result = pallet("plugins", "check", kind, name, "--home", str(scratch), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Running the pallet {kind} conformance kit against {name}" in result.stdout
    assert " passed" in result.stdout and " failed" not in result.stdout
    assert f'{kind} driver "{name}" passed the conformance kit' in result.stdout
    assert list(scratch.iterdir()) == [], "the kit left files in --home"


def test_k_v_and_junitxml_reach_pytest(pallet, scratch, tmp_path):
    report = tmp_path / "kit.xml"
    result = pallet("plugins", "check", "ipam", "default", "--home", str(scratch), "-v",
                    "-k", "given_pool or documented_errors", "--junitxml", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_request_a_given_pool PASSED" in result.stdout and "test_documented_errors PASSED" in result.stdout
    assert "2 passed" in result.stdout
    cases = {case.get("name") for case in ET.parse(report).getroot().iter("testcase")}
    assert cases == {"test_request_a_given_pool", "test_documented_errors"}


def test_a_k_that_matches_nothing_is_a_usage_error(pallet, scratch):
    result = pallet("plugins", "check", "volume", "local", "--home", str(scratch), "-k", "nosuchtest")
    assert result.returncode == 2
    assert result.error_lines[-1] == 'Error: no test of the volume conformance kit matches -k "nosuchtest"'


def test_kinds_without_a_kit_are_refused(pallet):
    result = pallet("plugins", "check", "runtime", "pallet")
    assert result.returncode == 2
    assert "Invalid value for" in result.stderr and "runtime" in result.stderr
