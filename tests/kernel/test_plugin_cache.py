"""The entry-point cache under the run root: used while valid, rebuilt when sys.path or an installation changes."""

import json
import os

from pallet.kernel.entrypoints import CACHE_FILE, FORMAT
from tests.kernel.conftest import REPO, pip_install_target


def plugins_ls(pallet, env=None):
    result = pallet("plugins", "ls", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {(row["Kind"], row["Name"]): row for row in json.loads(result.stdout)}, result


def test_a_valid_cache_is_reused_and_gives_the_same_answer(pallet, broken_site):
    env = {"PYTHONPATH": str(broken_site)}
    first, first_result = plugins_ls(pallet, env)
    cache = pallet.run_root / CACHE_FILE
    written = cache.stat().st_mtime_ns
    second, second_result = plugins_ls(pallet, env)
    assert cache.stat().st_mtime_ns == written  # read, not rebuilt
    assert second == first
    # the broken plugins still give one warning each, naming the distribution, from the cache alone
    warnings = [line for line in second_result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 3
    assert all("pallet-broken-example 0.3.0" in line for line in warnings)
    assert second_result.stderr == first_result.stderr


def test_a_new_pythonpath_entry_is_noticed(pallet, broken_site):
    before, _ = plugins_ls(pallet)
    assert ("storage", "explodefs") not in before
    after, _ = plugins_ls(pallet, {"PYTHONPATH": str(broken_site)})
    assert after[("storage", "explodefs")]["Status"] == "broken"
    again, _ = plugins_ls(pallet)
    assert ("storage", "explodefs") not in again


def test_an_installation_into_a_known_directory_is_noticed(pallet, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    env = {"PYTHONPATH": str(site)}
    before, _ = plugins_ls(pallet, env)
    assert ("network", "macvlan") not in before
    pip_install_target(REPO / "contrib" / "pallet-vendor-example", site)
    after, _ = plugins_ls(pallet, env)
    assert after[("network", "macvlan")]["Distribution"] == "pallet-vendor-example"


def test_a_damaged_cache_is_rebuilt(pallet):
    expected, _ = plugins_ls(pallet)
    cache = pallet.run_root / CACHE_FILE
    cache.write_text("{not json")
    rows, _ = plugins_ls(pallet)
    assert rows == expected
    assert json.loads(cache.read_text())["format"] == FORMAT


def test_an_entry_point_added_in_place_is_noticed(pallet, tmp_path):
    site = tmp_path / "site"
    pip_install_target(REPO / "contrib" / "pallet-vendor-example", site)
    env = {"PYTHONPATH": str(site)}
    before, _ = plugins_ls(pallet, env)
    assert ("network", "ghostnet") not in before
    # as a reinstall that rewrites entry_points.txt in the same dist-info directory would
    (declared,) = site.glob("pallet_vendor_example-*.dist-info/entry_points.txt")
    with declared.open("a") as handle:
        handle.write("\n[pallet.network]\nghostnet = pallet_vendor_example.ghost\n")
    # stevedore, which rebuilds our listing, keys its own cache on mtimes packed as 32-bit floats
    # (~128 s apart at today's epoch): make the rewrite look like one from a later install.
    later = declared.stat().st_mtime + 1000
    os.utime(declared, (later, later))
    after, _ = plugins_ls(pallet, env)
    assert after[("network", "ghostnet")]["Status"] == "broken"
