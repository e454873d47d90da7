"""Mirror and registry-table rules (``kernel/images/mirrors.py``): which sources a pull tries, in which order."""

from __future__ import annotations

import pytest

from pallet.kernel.config import Config
from pallet.kernel.errors import PalletError, UsageError
from pallet.kernel.images import mirrors
from pallet.kernel.images import reference as refs


def _sources(text: str, registries: dict) -> list[tuple[str, bool, bool]]:
    config = Config(file={"registries": registries})
    return [(str(s.ref), s.insecure, s.mirror) for s in mirrors.sources(config, refs.parse(text))]


def test_docker_hub_mirrors_come_first_for_short_names_only():
    registries = {"mirrors": ["http://127.0.0.1:5000", "https://mirror.example.com"]}
    assert _sources("alpine:3.10", registries) == [
        ("127.0.0.1:5000/library/alpine:3.10", True, True),
        ("mirror.example.com/library/alpine:3.10", False, True),
        ("docker.io/library/alpine:3.10", False, False)]
    assert _sources("quay.io/x/y", registries) == [("quay.io/x/y:latest", False, False)]
    assert _sources("busybox@sha256:" + "a" * 64, registries)[0] == \
        ("127.0.0.1:5000/library/busybox@sha256:" + "a" * 64, True, True)


def test_registry_tables_longest_prefix_location_and_pull_from_mirror():
    registries = {"registry": [
        {"prefix": "example.com", "location": "internal.example.com:5000", "insecure": True},
        {"prefix": "example.com/team", "mirror": [
            {"location": "127.0.0.1:5001/team-mirror", "insecure": True},
            {"location": "m2.local/by-digest", "pull-from-mirror": "digest-only"}]},
        {"prefix": "*.wild.test", "mirror": [{"location": "wild-mirror.local"}]}]}
    assert _sources("example.com/team/app:1", registries) == [
        ("127.0.0.1:5001/team-mirror/app:1", True, True), ("example.com/team/app:1", False, False)]
    digest = "sha256:" + "b" * 64
    assert [s[0] for s in _sources(f"example.com/team/app@{digest}", registries)] == [
        f"127.0.0.1:5001/team-mirror/app@{digest}", f"m2.local/by-digest/app@{digest}",
        f"example.com/team/app@{digest}"]
    assert _sources("example.com/other/x:2", registries) == [("internal.example.com:5000/other/x:2", True, False)]
    assert _sources("example.com.evil/x:2", registries) == [("example.com.evil/x:2", False, False)]
    assert _sources("a.wild.test/r/s:3", registries) == [("wild-mirror.local/r/s:3", False, True),
                                                          ("a.wild.test/r/s:3", False, False)]


def test_blocked_registries_and_bad_settings_are_refused():
    with pytest.raises(PalletError, match="registry example.com is blocked"):
        _sources("example.com/x", {"registry": [{"prefix": "example.com", "blocked": True}]})
    with pytest.raises(UsageError, match="expected http:// or https://"):
        _sources("busybox", {"mirrors": ["127.0.0.1:5000"]})
    with pytest.raises(UsageError, match="no path"):
        _sources("busybox", {"mirrors": ["http://127.0.0.1:5000/v2"]})
    with pytest.raises(UsageError, match="pull-from-mirror"):
        _sources("example.com/x", {"registry": [{"prefix": "example.com", "mirror": [
            {"location": "m.local", "pull-from-mirror": "sometimes"}]}]})
    with pytest.raises(UsageError, match="must start with a registry host"):
        _sources("example.com/x", {"registry": [{"prefix": "example.com", "location": "just-a-path"}]})
