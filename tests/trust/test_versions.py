"""Each ecosystem's version ordering: dpkg epochs and tildes, apk revisions and suffixes, rpm's ~ and ^, PEP 440, semver."""

from __future__ import annotations

import pytest

from pallet.kernel.trust.versions import compare

LESS = [
    ("Debian", "1.0~rc1", "1.0"), ("Debian", "1.0~~", "1.0~"), ("Debian", "2.0", "1:1.0"),
    ("Debian", "1.0-1", "1.0-1+deb12u1"), ("Debian", "2.36-9+deb12u3", "2.36-9+deb12u10"),
    ("Debian", "1.0a", "1.0+"), ("Debian", "1.2.3", "1.10"), ("Debian", "3.0.11-1~deb12u1", "3.0.11-1"),
    ("Alpine", "1.2.4-r9", "1.2.4-r10"), ("Alpine", "1.2.3_rc1", "1.2.3"), ("Alpine", "1.2.3", "1.2.3_p1"),
    ("Alpine", "1.2_alpha", "1.2_beta"), ("Alpine", "1.2", "1.2a"), ("Alpine", "1.2.9", "1.2.10"),
    ("PyPI", "1.0rc1", "1.0"), ("PyPI", "1.0.dev1", "1.0a1"), ("PyPI", "1.0", "1.0.post1"), ("PyPI", "1!0.1", "1!1.0"),
    ("npm", "1.0.0-alpha", "1.0.0-alpha.1"), ("npm", "1.0.0-alpha.2", "1.0.0-alpha.10"),
    ("npm", "1.0.0-alpha.beta", "1.0.0-beta"), ("npm", "1.0.0-rc.1", "1.0.0"), ("npm", "1.9.0", "1.10.0"),
    ("Red Hat", "1.0-1.el9", "1.0-10.el9"), ("Rocky Linux", "1.0~rc1-1", "1.0-1"), ("AlmaLinux", "1.0-1", "1.0^git1-1"),
    ("Red Hat", "1.0^git1-1", "1.0.1-1"), ("Red Hat", "3.0-1", "1:1.0-1"), ("Red Hat", "5.5p1-1", "5.5p10-1"),
    ("Red Hat", "1.0-1.el9", "1.0-1.el9_1"), ("SUSE", "1.0", "1.0.a"), ("openSUSE", "a-1", "1-1"),
]


@pytest.mark.parametrize("ecosystem, low, high", LESS)
def test_ordering(ecosystem, low, high):
    assert compare(ecosystem, low, high) == -1
    assert compare(ecosystem, high, low) == 1


@pytest.mark.parametrize("ecosystem, a, b", [
    ("Debian", "1.0", "0:1.0"), ("Debian", "1.0-0", "1.0"), ("Debian", "1.01", "1.1"),
    ("PyPI", "1.0", "1.0.0"), ("npm", "1.0.0+build.1", "1.0.0"), ("Alpine", "1.2.3-r0", "1.2.3"),
    ("Red Hat", "1.010-1", "1.10-1"), ("Red Hat", "0:1.0-1", "1.0-1"),
])
def test_equal(ecosystem, a, b):
    assert compare(ecosystem, a, b) == 0


@pytest.mark.parametrize("ecosystem, bad", [("Debian", "x1.0"), ("Alpine", "1.2-foo"), ("PyPI", "not!a@version"),
                                            ("npm", "1.0")])
def test_unparseable_versions_raise_value_error(ecosystem, bad):
    with pytest.raises(ValueError):
        compare(ecosystem, bad, "1.0.0")
