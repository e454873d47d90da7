"""``pallet plugins check storage NAME``: runs the conformance kit, exit 0/1, reasons for unavailable drivers."""

from __future__ import annotations


def test_check_passes_for_overlay2(pallet, scratch):
    result = pallet("plugins", "check", "storage", "overlay2", "--home", str(scratch), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and " failed" not in result.stdout
    assert 'storage driver "overlay2" passed the conformance kit' in result.stdout
    assert list(scratch.iterdir()) == [], "the kit left files in --home"


def test_check_of_unavailable_driver_prints_the_reason(pallet):
    result = pallet("plugins", "check", "storage", "devicemapper")
    assert result.returncode == 1
    assert len(result.error_lines) == 1
    assert result.error_lines[0].startswith('Error: storage driver "devicemapper" is unavailable on this host: ')
    assert "device-mapper" in result.error_lines[0]


def test_check_of_unknown_driver_is_a_usage_error(pallet):
    result = pallet("plugins", "check", "storage", "nosuchdriver")
    assert result.returncode == 2
    assert 'unknown storage driver "nosuchdriver"' in result.stderr

