"""The plugin API version: a plugin declaring a range this pallet's ``PLUGIN_API`` misses is broken, with the reason."""

import json

import pytest

from pallet.kernel import PLUGIN_API
from pallet.kernel.apiversion import admits


def test_plugin_api_is_semver():
    assert [part.isdigit() for part in PLUGIN_API.split(".")] == [True, True, True]


@pytest.mark.parametrize("declared, version, expected", [
    (">=1.0,<2", "1.0.0", True), (">=1.0,<2", "1.7.3", True), (">=1.0,<2", "2.0.0", False),
    (">=1.2", "1.1.9", False), ("==1", "1.0.0", True), ("!=1.0.0", "1.0.0", False), (" > 0.9 , <= 1 ", "1.0.0", True),
])
def test_ranges_are_comparisons_that_must_all_hold(declared, version, expected):
    assert admits(declared, version) is expected


@pytest.mark.parametrize("declared", ["", "1.0", "~=1.0", ">=1.0;<2", ">=one", None])
def test_a_malformed_range_is_refused(declared):
    with pytest.raises(ValueError, match="invalid PALLET_PLUGIN_API"):
        admits(declared, "1.0.0")


def test_a_mismatched_plugin_is_broken_with_a_one_line_reason(pallet, api_site):
    result = pallet("plugins", "ls", "--json", "--kind", "storage", env={"PYTHONPATH": str(api_site)})
    assert result.returncode == 0, result.stderr
    rows = {row["Name"]: row for row in json.loads(result.stdout)}
    assert rows["futurefs"]["Status"] == "broken"
    assert rows["futurefs"]["Reason"] == f"needs pallet plugin API >=2.0,<3, this pallet has {PLUGIN_API}"
    assert rows["garbledfs"]["Status"] == "broken"
    assert rows["garbledfs"]["Reason"].startswith("invalid PALLET_PLUGIN_API 'version one'")
    assert rows["currentfs"]["Status"] == "available"
    assert rows["currentfs"]["Distribution"] == "pallet-api-example"
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2 and all("pallet-api-example 0.2.0" in line for line in warnings)


def test_selecting_a_mismatched_driver_names_the_reason(pallet, api_site):
    result = pallet("--storage-driver", "futurefs", "storage", "status", env={"PYTHONPATH": str(api_site)})
    assert result.returncode == 1
    errors = [line for line in result.error_lines if line.startswith("Error:")]
    assert errors == [f'Error: storage driver "futurefs" cannot be used: plugin "futurefs" (pallet.storage, from '
                      f'pallet-api-example 0.2.0) is broken: needs pallet plugin API >=2.0,<3, this pallet has {PLUGIN_API}']
