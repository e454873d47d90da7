"""Version ordering of each ecosystem a scan matches: dpkg's, apk's, rpm's, PEP 440 and semver (npm).

Each ``compare_*`` returns -1, 0 or 1; :func:`key` gives a sort key for one ecosystem.
A version an ecosystem cannot parse raises ``ValueError``.
"""

from __future__ import annotations

import functools
import re


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


# --- dpkg (deb-version(7)) -----------------------------------------------------------------

def _dpkg_order(char: str) -> int:
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256 if char else 0


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _dpkg_order(a[i]) if i < len(a) else 0
            bc = _dpkg_order(b[j]) if j < len(b) else 0
            if ac != bc:
                return _sign(ac - bc)
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return _sign(first_diff)
    return 0


def _dpkg_split(version: str) -> tuple[int, str, str]:
    version = version.strip()
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    if not epoch.isdigit() or not rest or not rest[0].isdigit():
        raise ValueError(f'invalid Debian version "{version}"')
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch), upstream, revision


def compare_dpkg(a: str, b: str) -> int:
    ea, ua, ra = _dpkg_split(a)
    eb, ub, rb = _dpkg_split(b)
    if ea != eb:
        return _sign(ea - eb)
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


# --- apk (apk-tools' version.c ordering) ---------------------------------------------------

_APK = re.compile(r"^(\d+(?:\.\d+)*)([a-z]?)((?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)\d*)*)(?:-r(\d+))?$")
_APK_SUFFIX = {"alpha": 0, "beta": 1, "pre": 2, "rc": 3, "": 4, "cvs": 5, "svn": 6, "git": 7, "hg": 8, "p": 9}


def _apk_key(version: str):
    match = _APK.match(version.strip())
    if not match:
        raise ValueError(f'invalid Alpine version "{version}"')
    numbers = tuple(int(n) for n in match.group(1).split("."))
    suffixes = tuple((_APK_SUFFIX[name], int(num or 0))
                     for name, num in re.findall(r"_([a-z]+)(\d*)", match.group(3))) + ((_APK_SUFFIX[""], 0),)
    return numbers, match.group(2), suffixes, int(match.group(4) or 0)


def compare_apk(a: str, b: str) -> int:
    ka, kb = _apk_key(a), _apk_key(b)
    return (ka > kb) - (ka < kb)


# --- rpm (rpmvercmp, with ~ and ^) ---------------------------------------------------------

def _rpm_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def rpmvercmp(a: str, b: str) -> int:
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and not _rpm_alnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < len(b) and not _rpm_alnum(b[j]) and b[j] not in "~^":
            j += 1
        a_has, b_has = i < len(a), j < len(b)
        if (a_has and a[i] == "~") or (b_has and b[j] == "~"):       # ~ sorts before anything, even the end
            if not (a_has and a[i] == "~"):
                return 1
            if not (b_has and b[j] == "~"):
                return -1
            i, j = i + 1, j + 1
            continue
        if (a_has and a[i] == "^") or (b_has and b[j] == "^"):       # ^ sorts after the end, before anything else
            if not a_has:
                return -1
            if not b_has:
                return 1
            if a[i] != "^":
                return 1
            if b[j] != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (a_has and b_has):
            break
        numeric = a[i].isdigit()
        same_kind = str.isdigit if numeric else (lambda c: c.isascii() and c.isalpha())
        start_a, start_b = i, j
        while i < len(a) and same_kind(a[i]):
            i += 1
        while j < len(b) and same_kind(b[j]):
            j += 1
        seg_a, seg_b = a[start_a:i], b[start_b:j]
        if not seg_b:
            return 1 if numeric else -1
        if numeric:
            seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
    if i >= len(a) and j >= len(b):
        return 0
    return -1 if i >= len(a) else 1


def _rpm_split(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.strip().partition(":")
    if not sep:
        epoch, rest = "0", version.strip()
    if not epoch.isdigit() or not rest:
        raise ValueError(f'invalid rpm version "{version}"')
    upstream, _, release = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch), upstream, release


def compare_rpm(a: str, b: str) -> int:
    ea, va, ra = _rpm_split(a)
    eb, vb, rb = _rpm_split(b)
    if ea != eb:
        return _sign(ea - eb)
    return rpmvercmp(va, vb) or (rpmvercmp(ra, rb) if ra and rb else 0)


# --- PEP 440 (PyPI) ------------------------------------------------------------------------

def compare_pep440(a: str, b: str) -> int:
    from packaging.version import InvalidVersion, Version

    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion as exc:
        raise ValueError(str(exc)) from None
    return (va > vb) - (va < vb)


# --- semver 2.0 (npm) ----------------------------------------------------------------------

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def _semver_key(version: str):
    match = _SEMVER.match(version.strip())
    if not match:
        raise ValueError(f'invalid semver "{version}"')
    core = tuple(int(match.group(i)) for i in (1, 2, 3))
    pre = match.group(4)
    if pre is None:
        return core, (1,)
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return core, (0, parts)


def compare_semver(a: str, b: str) -> int:
    ka, kb = _semver_key(a), _semver_key(b)
    return (ka > kb) - (ka < kb)


RPM_ECOSYSTEMS = ("Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE")
COMPARE = {"Debian": compare_dpkg, "Alpine": compare_apk, "PyPI": compare_pep440, "npm": compare_semver,
           "Go": compare_semver,
           **{name: compare_rpm for name in RPM_ECOSYSTEMS}}


def compare(ecosystem: str, a: str, b: str) -> int:
    return COMPARE[ecosystem.split(":", 1)[0]](a, b)


def key(ecosystem: str):
    return functools.cmp_to_key(COMPARE[ecosystem.split(":", 1)[0]])
