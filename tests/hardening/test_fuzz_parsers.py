"""Fuzzing the parsers users feed (issue 11, defect 8's sweep): whatever the input, the only exception
is pallet's own error class (one clear line, never "internal error"); formatted values parse back."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings, strategies as st

from pallet.kernel import humanize, runopts
from pallet.kernel.build import instructions, parser, plan
from pallet.kernel.cli.container_list import parse_filters
from pallet.kernel.errors import PalletError
from pallet.kernel.images import reference as refs

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like the options users write: their punctuation, digits, letters, a bit of anything.
SPEC_ALPHABET = string.ascii_letters + string.digits + ":/=,.-_@ " + "\x00\n\\\"'"
specs = st.one_of(st.text(SPEC_ALPHABET, max_size=60), st.text(max_size=30))


def _only_pallet_errors(call, *args) -> None:
    try:
        call(*args)
    except PalletError:
        pass


@FUZZ
@given(specs)
def test_volume_mount_tmpfs_ulimit_and_signal_specs_raise_only_pallet_errors(spec):
    for call in (runopts.parse_volume, runopts.parse_mount, runopts.parse_tmpfs, runopts.parse_ulimit,
                 runopts.parse_signal, runopts.parse_ipv4, runopts.parse_mac, runopts.parse_cpuset,
                 runopts.parse_memory, runopts.parse_cpus):
        _only_pallet_errors(call, spec)


@FUZZ
@given(st.lists(specs, max_size=3))
def test_port_specs_raise_only_pallet_errors(ports):
    _only_pallet_errors(runopts.parse_ports, ports, False, {})


@FUZZ
@given(st.lists(specs, max_size=3))
def test_filters_raise_only_pallet_errors(filters):
    _only_pallet_errors(parse_filters, filters)


REF_ALPHABET = string.ascii_lowercase + string.digits + "./:-_@" + "A"
ref_texts = st.one_of(st.text(REF_ALPHABET, max_size=80), st.text(max_size=20))
COMPONENT = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
good_refs = st.builds(
    lambda domain, path, tag: f"{domain}{'/'.join(path)}{tag}",
    st.sampled_from(["", "localhost:5000/", "registry.example.com/", "docker.io/"]),
    st.lists(COMPONENT, min_size=1, max_size=3),
    st.one_of(st.just(""), COMPONENT.map(lambda t: ":" + t), st.just("@sha256:" + "ab" * 32)))


@FUZZ
@given(ref_texts)
def test_image_references_raise_only_pallet_errors(text):
    _only_pallet_errors(refs.parse, text)


@FUZZ
@given(good_refs)
def test_image_references_round_trip_through_their_formatters(text):
    try:
        ref = refs.parse(text)
    except PalletError:
        return   # e.g. longer than 255 characters
    assert refs.parse(str(ref)) == ref
    assert refs.parse(ref.familiar()) == ref


@FUZZ
@given(st.text(string.digits + "kmgtpKMGTPiBb. -", max_size=12))
def test_sizes_raise_only_value_error(text):
    try:
        humanize.parse_bytes(text)
    except ValueError:
        pass


@FUZZ
@given(st.integers(0, 2 ** 40), st.sampled_from([("", 1), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)]))
def test_sizes_round_trip(amount, unit):
    suffix, scale = unit
    assert humanize.parse_bytes(f"{amount}{suffix}") == amount * scale
    _only_pallet_errors(runopts.parse_memory, f"{amount}{suffix}")


def _duration(text: str) -> int:
    return instructions.parse_duration(text, "--flag", lambda message: PalletError(message))


@FUZZ
@given(st.text(string.digits + "hmsuµn.+-", max_size=16) | st.text(max_size=8))
def test_durations_raise_only_pallet_errors(text):
    _only_pallet_errors(_duration, text)


@FUZZ
@given(st.integers(0, 10 ** 6), st.integers(0, 59), st.integers(0, 999))
def test_durations_round_trip(minutes, seconds, millis):
    assert _duration(f"{minutes}m{seconds}s{millis}ms") == ((minutes * 60 + seconds) * 1000 + millis) * 10 ** 6


KEYWORDS = ["FROM", "RUN", "CMD", "COPY", "ADD", "ENV", "ARG", "LABEL", "EXPOSE", "WORKDIR", "USER", "VOLUME",
            "ENTRYPOINT", "HEALTHCHECK", "SHELL", "STOPSIGNAL", "ONBUILD", "MAINTAINER", "from", "BOGUS"]
dockerfile_lines = st.builds(
    lambda keyword, rest: f"{keyword} {rest}",
    st.sampled_from(KEYWORDS),
    st.text(string.ascii_letters + string.digits + " =:/.-_$[]\"'\\{}#@", max_size=40))
dockerfiles = st.one_of(
    st.lists(dockerfile_lines, max_size=8).map(lambda lines: "\n".join(["FROM busybox AS base", *lines])),
    st.lists(st.one_of(dockerfile_lines, st.sampled_from(["# escape=`", "# syntax=docker/dockerfile:1",
                                                          "RUN <<EOF", "EOF", "\\", "`", ""])),
             max_size=8).map("\n".join),
    st.binary(max_size=200))


@FUZZ
@given(dockerfiles)
def test_dockerfiles_raise_only_pallet_errors_through_parse_instructions_and_plan(source):
    try:
        dockerfile = parser.parse(source)
        for node in dockerfile.nodes:
            instructions.parse_node(node, dockerfile.escape, dockerfile.name)
        plan.make_plan(dockerfile, {})
    except PalletError:
        pass
