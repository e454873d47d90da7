"""``commit -c``: the Dockerfile instructions Docker accepts there, applied to an image config."""

from __future__ import annotations

import json
import shlex

from pallet.kernel.errors import UsageError

INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "SHELL", "STOPSIGNAL",
                "USER", "VOLUME", "WORKDIR")


def apply_changes(config: dict, changes) -> dict:
    """A copy of ``config`` (Docker's image Config) with each ``-c`` line applied in order."""
    from pallet.kernel.runopts import merge_env

    result = {**config}
    for line in changes or ():
        instruction, _sep, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction not in INSTRUCTIONS:
            raise UsageError(f"{instruction} is not a valid change command")
        if instruction in ("CMD", "ENTRYPOINT"):
            result["Cmd" if instruction == "CMD" else "Entrypoint"] = _command(rest, result.get("Shell"))
        elif instruction == "SHELL":
            result["Shell"] = _json_list(rest, "SHELL")
        elif instruction == "ENV":
            result["Env"] = merge_env(result.get("Env") or [], _pairs(rest, "ENV"))
        elif instruction == "LABEL":
            result["Labels"] = {**(result.get("Labels") or {}),
                                **dict(p.split("=", 1) for p in _pairs(rest, "LABEL"))}
        elif instruction == "EXPOSE":
            from pallet.kernel.policyopts import parse_expose

            result["ExposedPorts"] = {**(result.get("ExposedPorts") or {}), **parse_expose(rest.split())}
        elif instruction == "VOLUME":
            paths = _json_list(rest, "VOLUME") if rest.startswith("[") else rest.split()
            result["Volumes"] = {**(result.get("Volumes") or {}), **{p: {} for p in paths}}
        elif instruction == "ONBUILD":
            trigger = rest.split(None, 1)[0].upper() if rest else ""
            if trigger in ("ONBUILD", "FROM", "MAINTAINER", ""):
                raise UsageError(f"{trigger or 'an empty'} isn't allowed as an ONBUILD trigger")
            result["OnBuild"] = list(result.get("OnBuild") or []) + [rest]
        elif instruction == "HEALTHCHECK":
            result["Healthcheck"] = _healthcheck(rest)
        elif instruction == "STOPSIGNAL":
            from pallet.kernel.runopts import parse_signal

            parse_signal(rest)
            result["StopSignal"] = rest
        elif instruction == "USER":
            result["User"] = rest
        else:
            result["WorkingDir"] = rest
    return result


def _command(rest: str, shell: list | None) -> list[str]:
    if rest.startswith("["):
        return _json_list(rest, "CMD")
    return list(shell or ["/bin/sh", "-c"]) + [rest]


def _json_list(rest: str, instruction: str) -> list[str]:
    try:
        value = json.loads(rest)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{instruction} requires a JSON array of strings: {rest}")
    return value


def _pairs(rest: str, instruction: str) -> list[str]:
    """``K=V K2="v 2"``, or the legacy ``K V`` form (one pair, the value is the rest of the line)."""
    words = shlex.split(rest)
    if not words:
        raise UsageError(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        name, _sep, value = rest.partition(" ")
        return [f"{name}={value.strip()}"]
    bad = next((w for w in words if "=" not in w), None)
    if bad is not None:
        raise UsageError(f"{instruction} names can not be blank: {bad}")
    return words


def _healthcheck(rest: str) -> dict:
    from pallet.kernel.policyopts import parse_duration

    if rest.upper() == "NONE":
        return {"Test": ["NONE"]}
    check = {"Interval": 0, "Timeout": 0, "StartPeriod": 0, "StartInterval": 0, "Retries": 0}
    words = rest.split()
    while words and words[0].startswith("--"):
        flag, _sep, value = words.pop(0)[2:].partition("=")
        key = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
               "start-interval": "StartInterval", "retries": "Retries"}.get(flag)
        if key is None:
            raise UsageError(f"Unknown flag: {flag}")
        check[key] = int(value) if key == "Retries" else parse_duration(value, f"--{flag}")
    body = " ".join(words)
    kind, _sep, command = body.partition(" ")
    if kind.upper() != "CMD" or not command:
        raise UsageError(f"HEALTHCHECK needs CMD or NONE: {rest}")
    command = command.strip()
    test = ["CMD"] + _json_list(command, "HEALTHCHECK") if command.startswith("[") else ["CMD-SHELL", command]
    return {"Test": test, **check}
