"""Typed Dockerfile instructions: one dataclass per instruction, made from a parser :class:`Node`.

Flags are checked here (a flag an instruction does not take is an error at its line); words
stay unexpanded, because their values depend on the stage's ARG and ENV at the time they run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pallet.kernel.build.parser import DockerfileError, Heredoc, Node

# Flags each instruction takes; True: the flag may stand alone (a boolean).
FLAGS: dict[str, dict[str, bool]] = {
    "FROM": {"platform": False},
    "RUN": {"mount": False, "network": False, "security": False},
    "COPY": {"from": False, "chown": False, "chmod": False, "link": True, "parents": True, "exclude": False},
    "ADD": {"chown": False, "chmod": False, "checksum": False, "keep-git-dir": True, "link": True,
            "exclude": False},
    "HEALTHCHECK": {"interval": False, "timeout": False, "start-period": False, "start-interval": False,
                    "retries": False},
}
REPEATABLE = {"mount", "exclude"}


@dataclass
class Instruction:
    line: int
    end_line: int
    original: str

    @property
    def keyword(self) -> str:
        return type(self).__name__.upper()


@dataclass
class From(Instruction):
    image: str = ""
    name: str = ""
    platform: str = ""


@dataclass
class Mount:
    type: str
    target: str = ""
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Run(Instruction):
    command: list[str] | str = ""       # a list: exec form; a string: shell form
    mounts: list[Mount] = field(default_factory=list)
    network: str = ""
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass
class Cmd(Instruction):
    command: list[str] | str = ""


@dataclass
class Entrypoint(Instruction):
    command: list[str] | str = ""


@dataclass
class Shell(Instruction):
    shell: list[str] = field(default_factory=list)


@dataclass
class Env(Instruction):
    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Label(Instruction):
    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Maintainer(Instruction):
    name: str = ""


@dataclass
class Arg(Instruction):
    pairs: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass
class Expose(Instruction):
    ports: list[str] = field(default_factory=list)


@dataclass
class Volume(Instruction):
    paths: list[str] = field(default_factory=list)


@dataclass
class User(Instruction):
    user: str = ""


@dataclass
class Workdir(Instruction):
    path: str = ""


@dataclass
class Stopsignal(Instruction):
    signal: str = ""


@dataclass
class Onbuild(Instruction):
    trigger: str = ""


@dataclass
class Healthcheck(Instruction):
    test: list[str] | None = None       # None: HEALTHCHECK NONE
    interval: int = 0                   # nanoseconds, as Docker's config holds them
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass
class Copy(Instruction):
    sources: list[str] = field(default_factory=list)
    dest: str = ""
    from_: str = ""
    chown: str = ""
    chmod: str = ""
    link: bool = False
    parents: bool = False
    exclude: list[str] = field(default_factory=list)
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass
class Add(Copy):
    checksum: str = ""
    keep_git_dir: bool = False


def parse_node(node: Node, escape: str = "\\", name: str = "Dockerfile") -> Instruction:
    """The typed instruction for ``node``; a DockerfileError naming its line otherwise."""
    def fail(message: str) -> DockerfileError:
        return DockerfileError(message, node.start_line, name)

    keyword = node.instruction
    maker = _MAKERS.get(keyword)
    if maker is None:
        raise fail(f'unknown instruction: {keyword.lower() if keyword.isupper() else keyword}'
                   + (" (did you mean " + _suggest(keyword) + "?)" if _suggest(keyword) else ""))
    flags = _flags(node, keyword, fail)
    base = dict(line=node.start_line, end_line=node.end_line, original=node.original)
    return maker(node, flags, base, fail, escape)


def _flags(node: Node, keyword: str, fail) -> dict:
    allowed = FLAGS.get(keyword, {})
    result: dict = {}
    for flag, value in node.flags:
        if flag not in allowed:
            raise fail(f"unknown flag: --{flag} ({keyword} takes "
                       + (", ".join("--" + f for f in allowed) if allowed else "no flags") + ")")
        if value is None and not allowed[flag]:
            raise fail(f"missing a value on flag: --{flag}")
        if allowed[flag]:
            if value not in (None, "", "true", "false"):
                raise fail(f'expecting boolean value for flag --{flag}, not: {value}')
            value = value != "false"
        if flag in REPEATABLE:
            result.setdefault(flag, []).append(value)
        elif flag in result:
            raise fail(f"duplicate flag specified: --{flag}")
        else:
            result[flag] = value
    return result


def _suggest(keyword: str) -> str:
    import difflib

    close = difflib.get_close_matches(keyword.upper(), list(_MAKERS), n=1, cutoff=0.75)
    return close[0] if close else ""


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Whitespace-separated words, quotes and escapes kept (Docker's parseWords): for ENV, LABEL, ARG."""
    words, current, quote, escaped = [], [], "", False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == escape:
            current.append(ch)
            escaped = True
        elif quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            current.append(ch)
            quote = ch
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
    if quote:
        raise DockerfileError(f"unterminated quote ({quote}) in: {text}")
    if current:
        words.append("".join(current))
    return words


def _command(node: Node) -> list[str] | str:
    as_json = node.json_args()
    return as_json if as_json is not None else node.rest


def _require(node: Node, fail, what: str = "") -> None:
    if not node.rest.strip() and not node.heredocs:
        raise fail(f"{node.instruction} requires {what or 'at least one argument'}")


def _pairs(node: Node, fail, escape: str) -> list[tuple[str, str]]:
    _require(node, fail)
    try:
        words = split_words(node.rest, escape)
    except DockerfileError as exc:
        raise fail(exc.detail) from None
    if "=" not in words[0]:
        if len(words) < 2 and node.instruction == "ENV":
            raise fail(f"ENV must have two arguments (ENV NAME VALUE or ENV NAME=VALUE): {node.rest}")
        key, _, value = node.rest.strip().partition(" ")
        if not value.strip() and node.instruction == "LABEL":
            raise fail(f"LABEL requires KEY=VALUE: {node.rest}")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise fail(f'syntax error - can\'t find = in "{word}"; must be of the form: name=value')
        pairs.append((key, value))
    return pairs


def _words_or_json(node: Node) -> list[str]:
    as_json = node.json_args()
    return as_json if as_json is not None else node.rest.split()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}


def parse_duration(value: str, flag: str, fail) -> int:
    """Go's time.ParseDuration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    if value == "0":
        return 0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise fail(f'invalid duration "{value}" for --{flag} (e.g. 30s, 1m30s, 500ms)')
    return int(total)


def _make_from(node, flags, base, fail, escape):
    words = node.rest.split()
    if len(words) == 3 and words[1].lower() == "as":
        return From(**base, image=words[0], name=words[2].lower(), platform=flags.get("platform", ""))
    if len(words) != 1:
        raise fail('FROM requires either one or three arguments (FROM IMAGE [AS NAME])')
    return From(**base, image=words[0], platform=flags.get("platform", ""))


def _make_run(node, flags, base, fail, escape):
    _require(node, fail)
    mounts = [parse_mount(spec, fail) for spec in flags.get("mount", [])]
    network = flags.get("network", "")
    if network not in ("", "default", "none", "host"):
        raise fail(f'unsupported network mode "{network}" (use default, none or host)')
    if flags.get("security") == "insecure":
        raise fail("RUN --security=insecure needs the security.insecure entitlement, which pallet build does not grant")
    if flags.get("security") not in (None, "sandbox"):
        raise fail(f'unsupported security mode "{flags["security"]}"')
    return Run(**base, command=_command(node), mounts=mounts, network=network, heredocs=node.heredocs)


MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
MOUNT_KEYS = {"type", "target", "dst", "destination", "source", "src", "from", "id", "sharing", "mode", "uid",
              "gid", "required", "readonly", "ro", "rw", "readwrite", "size", "env"}


def parse_mount(spec: str, fail) -> Mount:
    """``--mount=type=cache,target=/root/.cache,sharing=locked`` (CSV, as BuildKit's)."""
    options: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key not in MOUNT_KEYS:
            raise fail(f'unexpected key "{key}" in --mount={spec}')
        options[key] = value if sep else "true"
    kind = options.pop("type", "bind")
    if kind not in MOUNT_TYPES or kind == "ssh":
        raise fail(f'unsupported mount type "{kind}" in --mount={spec} (bind, cache, tmpfs, secret)')
    target = options.pop("target", "") or options.pop("dst", "") or options.pop("destination", "")
    if "src" in options:
        options["source"] = options.pop("src")
    if not target and not (kind == "secret" and (options.get("id") or options.get("env"))):
        raise fail(f"--mount={spec} needs a target")
    if kind == "cache" and "source" in options and "from" not in options:
        raise fail(f"--mount={spec}: source= of a cache mount needs from= (a stage or an image)")
    if options.get("sharing", "shared") not in ("shared", "private", "locked"):
        raise fail(f'unsupported sharing value "{options["sharing"]}" in --mount={spec}')
    for key in ("mode",):
        if key in options and not re.fullmatch(r"[0-7]{1,4}", options[key]):
            raise fail(f'invalid {key} "{options[key]}" in --mount={spec} (octal)')
    for key in ("uid", "gid"):
        if key in options and not options[key].isdigit():
            raise fail(f'invalid {key} "{options[key]}" in --mount={spec} (a number)')
    return Mount(kind, target, options)


def _make_cmd(cls):
    def make(node, flags, base, fail, escape):
        _require(node, fail)
        return cls(**base, command=_command(node))
    return make


def _make_shell(node, flags, base, fail, escape):
    as_json = node.json_args()
    if not as_json:
        raise fail("SHELL requires the arguments to be in JSON form: SHELL [\"executable\", \"parameters\"]")
    return Shell(**base, shell=as_json)


def _make_arg(node, flags, base, fail, escape):
    _require(node, fail)
    pairs = []
    for word in split_words(node.rest, escape):
        key, sep, value = word.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise fail(f'invalid ARG name "{key}"')
        pairs.append((key, value if sep else None))
    return Arg(**base, pairs=pairs)


def _make_healthcheck(node, flags, base, fail, escape):
    _require(node, fail)
    kind, _, rest = node.rest.strip().partition(" ")
    kind = kind.upper()
    if kind == "NONE":
        if rest.strip() or flags:
            raise fail("HEALTHCHECK NONE takes no arguments or flags")
        return Healthcheck(**base, test=["NONE"])
    if kind != "CMD":
        raise fail(f'unknown type "{kind}" in HEALTHCHECK (try CMD)')
    inner = Node("CMD", rest.strip())
    if not inner.rest:
        raise fail("HEALTHCHECK CMD requires a command")
    command = inner.json_args()
    test = ["CMD", *command] if command is not None else ["CMD-SHELL", inner.rest]
    retries = flags.get("retries", "0")
    if not retries.isdigit():
        raise fail(f'invalid retries "{retries}" for HEALTHCHECK (a non-negative number)')
    durations = {key.replace("-", "_"): parse_duration(flags[key], key, fail)
                 for key in ("interval", "timeout", "start-period", "start-interval") if key in flags}
    for key, value in durations.items():
        if 0 < value < 1_000_000:
            raise fail(f"HEALTHCHECK --{key.replace('_', '-')} cannot be less than 1ms")
    return Healthcheck(**base, test=test, retries=int(retries), **durations)


def _make_copy(cls):
    def make(node, flags, base, fail, escape):
        words = _words_or_json(node)
        heredoc_names = {doc.name for doc in node.heredocs}
        if len(words) < 2 and not (node.heredocs and words):
            raise fail(f"{node.instruction} requires at least two arguments, but only {len(words)} provided "
                       f"({node.instruction} SRC... DEST)")
        sources = words[:-1]
        if node.heredocs:
            sources = [w for w in sources if not _is_heredoc_word(w, heredoc_names)]
        extra = {}
        if cls is Add:
            extra = {"checksum": flags.get("checksum", ""), "keep_git_dir": flags.get("keep-git-dir", False)}
            if "$" not in extra["checksum"]:   # one with a variable is checked once expanded
                check_checksum(extra["checksum"], fail)
        elif "from" in flags:
            extra = {"from_": flags["from"]}
        if cls is Copy:
            extra["parents"] = flags.get("parents", False)
        chmod = flags.get("chmod", "")
        if "$" not in chmod:
            check_chmod(chmod, fail)
        return cls(**base, sources=sources, dest=words[-1], chown=flags.get("chown", ""), chmod=chmod,
                   link=flags.get("link", False), exclude=flags.get("exclude", []), heredocs=node.heredocs,
                   **extra)
    return make


def check_chmod(value: str, fail) -> None:
    """``--chmod`` of COPY/ADD (as written, or after expansion when it holds a variable)."""
    if value and not re.fullmatch(r"[0-7]{3,4}", value):
        raise fail(f'invalid --chmod "{value}" (octal like 755; symbolic modes are not supported)')


def check_checksum(value: str, fail) -> None:
    """``--checksum`` of ADD (as written, or after expansion when it holds a variable)."""
    if value and not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise fail(f'invalid checksum "{value}" (sha256:<64 hex>)')


def _is_heredoc_word(word: str, names: set[str]) -> bool:
    match = re.fullmatch(r"<<-?(['\"]?)([a-zA-Z_][a-zA-Z0-9_]*)\1", word)
    return bool(match and match.group(2) in names)


def _make_onbuild(node, flags, base, fail, escape):
    _require(node, fail)
    inner = node.rest.strip().split(None, 1)[0].upper()
    if inner == "ONBUILD":
        raise fail("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if inner in ("FROM", "MAINTAINER"):
        raise fail(f"{inner} isn't allowed as an ONBUILD trigger")
    if inner not in _MAKERS:
        raise fail(f"unknown instruction in ONBUILD: {inner.lower()}")
    return Onbuild(**base, trigger=node.rest.strip())


def _simple(cls, attr, split=False):
    def make(node, flags, base, fail, escape):
        _require(node, fail)
        if split:
            return cls(**base, **{attr: _words_or_json(node)})
        return cls(**base, **{attr: node.rest.strip()})
    return make


_MAKERS = {
    "FROM": _make_from, "RUN": _make_run, "CMD": _make_cmd(Cmd), "ENTRYPOINT": _make_cmd(Entrypoint),
    "SHELL": _make_shell, "ENV": lambda n, f, b, fail, e: Env(**b, pairs=_pairs(n, fail, e)),
    "LABEL": lambda n, f, b, fail, e: Label(**b, pairs=_pairs(n, fail, e)),
    "MAINTAINER": _simple(Maintainer, "name"), "ARG": _make_arg,
    "EXPOSE": _simple(Expose, "ports", split=True), "VOLUME": _simple(Volume, "paths", split=True),
    "USER": _simple(User, "user"), "WORKDIR": _simple(Workdir, "path"), "STOPSIGNAL": _simple(Stopsignal, "signal"),
    "ONBUILD": _make_onbuild, "HEALTHCHECK": _make_healthcheck, "COPY": _make_copy(Copy), "ADD": _make_copy(Add),
}


def created_by(instruction: Instruction, shell: list[str], args: dict[str, str] | None = None) -> str:
    """The history ``created_by`` string in Docker's form (``/bin/sh -c #(nop) ...`` for metadata).

    A shell-form RUN with build args in scope (``args``: declared, with a value, not shadowed by an
    ENV) starts with them as the classic builder writes them: ``|2 A=1 B=2 /bin/sh -c …``.
    """
    if isinstance(instruction, Run):
        if isinstance(instruction.command, list):
            return "RUN " + json.dumps(instruction.command)
        pairs = sorted(f"{key}={value}" for key, value in (args or {}).items())
        prefix = f"|{len(pairs)} " + "".join(pair + " " for pair in pairs) if pairs else ""
        return prefix + " ".join(shell) + " " + instruction.command
    return " ".join(shell) + " #(nop)  " + instruction.original.replace("\n", " ").strip()
