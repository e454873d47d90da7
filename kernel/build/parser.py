"""The Dockerfile parser: directives, comments, continuations, heredocs and flags into positioned nodes.

Nothing is expanded here (that is :mod:`pallet.kernel.build.lex`) and nothing is typed (that is
:mod:`pallet.kernel.build.instructions`); a :class:`Node` keeps the raw words and the exact lines
it came from, so every later error can say ``Dockerfile:LINE``.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import BinaryIO

from pallet.kernel.errors import PalletError

MAX_LINE = 1 << 20          # a longer physical line is refused before it is held in memory
MAX_DOCKERFILE = 64 << 20   # a larger Dockerfile is refused while reading it
DIRECTIVES = ("syntax", "escape", "check")
HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([a-zA-Z_][a-zA-Z0-9_]*)(['\"]?)")
_FLAG = re.compile(r"--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?")


class DockerfileError(PalletError):
    """A mistake in the Dockerfile: the message starts with ``Dockerfile:LINE``."""

    def __init__(self, message: str, line: int = 0, name: str = "Dockerfile"):
        self.line, self.detail, self.name = line, message, name
        super().__init__(f"{name}:{line}: {message}" if line else f"{name}: {message}")


@dataclass
class Heredoc:
    name: str
    content: str
    expand: bool         # false for a quoted delimiter (<<"EOF" / <<'EOF')
    chomp: bool = False  # <<- : leading tabs were stripped


@dataclass
class Node:
    """One instruction as written: its keyword (upper case), flags, the rest of the line and positions."""

    instruction: str
    rest: str                       # text after the flags, continuations joined
    flags: list[tuple[str, str | None]] = field(default_factory=list)
    heredocs: list[Heredoc] = field(default_factory=list)
    start_line: int = 0
    end_line: int = 0
    original: str = ""

    def json_args(self) -> list[str] | None:
        """The exec form ``["a", "b"]`` if the rest is a JSON array of strings, else None (shell form)."""
        text = self.rest.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None


@dataclass
class Dockerfile:
    nodes: list[Node]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    name: str = "Dockerfile"

    def error(self, message: str, line: int) -> DockerfileError:
        return DockerfileError(message, line, self.name)


def parse(source: bytes | str | BinaryIO, name: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile (bytes, text or a binary stream read line by line under the limits)."""
    if isinstance(source, str):
        source = source.encode()
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    return _Parser(_lines(source, name), name).run()


def _lines(stream: BinaryIO, name: str) -> list[str]:
    lines, total = [], 0
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            break
        total += len(raw)
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            raise DockerfileError(f"line is longer than {MAX_LINE >> 20} MiB", len(lines) + 1, name)
        if total > MAX_DOCKERFILE:
            raise DockerfileError(f"the Dockerfile is larger than {MAX_DOCKERFILE >> 20} MiB", len(lines) + 1, name)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise DockerfileError("the line is not valid UTF-8", len(lines) + 1, name) from None
        if not lines:
            text = text.removeprefix("\ufeff")
        lines.append(text.rstrip("\n").removesuffix("\r"))
    return lines


class _Parser:
    def __init__(self, lines: list[str], name: str):
        self.lines, self.name = lines, name
        self.pos = 0
        self.result = Dockerfile([], name=name)

    def error(self, message: str, line: int) -> DockerfileError:
        return DockerfileError(message, line, self.name)

    def run(self) -> Dockerfile:
        self._directives()
        escape = self.result.escape
        continuation = re.compile(re.escape(escape) + r"[ \t]*$")
        while self.pos < len(self.lines):
            start = self.pos
            line = self.lines[self.pos].lstrip()
            self.pos += 1
            if not line or line.startswith("#"):
                continue
            parts, original = [], [self.lines[start]]
            while continuation.search(line):
                parts.append(continuation.sub("", line))
                line = None
                while self.pos < len(self.lines):
                    candidate = self.lines[self.pos]
                    self.pos += 1
                    original.append(candidate)
                    stripped = candidate.lstrip()
                    if stripped.startswith("#"):
                        continue     # a comment inside a continued instruction is dropped, as Docker does
                    if not stripped:
                        self.result.warnings.append(f"{self.name}:{self.pos}: empty continuation line")
                        continue
                    line = candidate
                    break
                if line is None:
                    line = ""
                    break
            parts.append(line)
            self._node("".join(parts), start + 1, self.pos, "\n".join(original))
        return self.result

    def _directives(self) -> None:
        seen = self.result.directives
        while self.pos < len(self.lines):
            match = _DIRECTIVE.match(self.lines[self.pos].strip())
            if not match or match.group(1).lower() not in DIRECTIVES:
                return
            key, value = match.group(1).lower(), match.group(2)
            if key in seen:
                raise self.error(f"only one {key} parser directive can be used", self.pos + 1)
            seen[key] = value
            if key == "escape":
                if value not in ("\\", "`"):
                    raise self.error(f"invalid escape token '{value}' does not match ` or \\", self.pos + 1)
                self.result.escape = value
            elif key == "syntax":
                self.result.warnings.append(f"{self.name}:{self.pos + 1}: syntax directive ignored "
                                            f"(pallet's own frontend is used): {value}")
            self.pos += 1

    def _node(self, text: str, start: int, end: int, original: str) -> None:
        keyword, _, rest = text.strip().partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = more + " " + rest
        instruction = keyword.upper()
        flags, rest = split_flags(rest)
        node = Node(instruction, rest.strip(), flags, [], start, end, original)
        if instruction in HEREDOC_INSTRUCTIONS or (instruction == "ONBUILD" and
                                                    rest.strip().split(" ", 1)[0].upper() in HEREDOC_INSTRUCTIONS):
            self._heredocs(node)
        self.result.nodes.append(node)

    def _heredocs(self, node: Node) -> None:
        if node.json_args() is not None:
            return
        for match in _HEREDOC.finditer(node.rest):
            chomp, open_quote, word, close_quote = match.groups()
            if open_quote != close_quote:
                raise self.error(f"heredoc delimiter {open_quote}{word}{close_quote} has unbalanced quotes",
                                 node.start_line)
            content = []
            while True:
                if self.pos >= len(self.lines):
                    raise self.error(f"unterminated heredoc {word} (no line '{word}' before the end of the file)",
                                     node.start_line)
                line = self.lines[self.pos]
                self.pos += 1
                check = line.lstrip("\t") if chomp else line
                if check == word:
                    break
                content.append(check)
            node.end_line = self.pos
            node.heredocs.append(Heredoc(word, "".join(c + "\n" for c in content), not open_quote, bool(chomp)))


def split_flags(rest: str) -> tuple[list[tuple[str, str | None]], str]:
    """Leading ``--name=value`` / ``--name`` words, and the text after them."""
    flags = []
    text = rest.lstrip()
    while text.startswith("--"):
        word, _, after = text.partition(" ")
        if word == "--":
            text = after.lstrip()
            break
        match = _FLAG.fullmatch(word)
        if not match:
            break
        flags.append((match.group(1), match.group(2)))
        text = after.lstrip()
    return flags, text
