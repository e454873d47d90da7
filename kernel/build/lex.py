"""Word expansion for Dockerfile instructions, with Docker's rules: quotes, escapes and ``$VAR`` forms.

Supported: ``$V``, ``${V}``, ``${V:-w}``, ``${V-w}``, ``${V:+w}``, ``${V+w}``, ``${V:?msg}``,
``${V?msg}``, ``${V#p}``, ``${V##p}``, ``${V%p}``, ``${V%%p}``, ``${V/p/r}``, ``${V//p/r}``.
Single quotes are literal; inside double quotes the escape character escapes only ``"``, ``$``
and itself. :func:`process_words` also splits on unquoted whitespace (after expansion, as Docker).
"""

from __future__ import annotations

import fnmatch
import re

from pallet.kernel.errors import PalletError

_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")


class ExpansionError(PalletError):
    """A word that cannot be expanded (``${V:?msg}`` of an unset V, an unterminated quote or brace)."""


class _Word:
    def __init__(self, text: str, env: dict[str, str], escape: str, splitting: bool = False):
        self.text, self.env, self.escape, self.splitting = text, env, escape, splitting
        self.pos = 0
        self.words: list[str] = []
        self.current: list[str] = []
        self.in_word = False   # whether the current word exists (a quoted "" is a word)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def emit(self, value: str, split: bool) -> None:
        """Append expansion output; unquoted variable values split into words, as a shell would."""
        if not split or not self.splitting:
            self.current.append(value)
            self.in_word = True
            return
        pieces = re.split(r"[ \t\n]+", value)
        for index, piece in enumerate(pieces):
            if index:
                self.flush()
            if piece:
                self.current.append(piece)
                self.in_word = True

    def flush(self) -> None:
        if self.in_word:
            self.words.append("".join(self.current))
        self.current, self.in_word = [], False

    def run(self, stop: str = "") -> None:
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch in stop:
                return
            if ch in " \t\n" and not stop:
                self.next()
                self.flush()
            elif ch == self.escape:
                self.next()
                if self.pos < len(self.text):
                    self.emit(self.next(), False)
            elif ch == "'":
                self.emit(self.single(), False)
            elif ch == '"':
                self.emit(self.double(), False)
            elif ch == "$":
                self.emit(*self.dollar())
            else:
                self.emit(self.next(), False)

    def single(self) -> str:
        self.next()
        end = self.text.find("'", self.pos)
        if end < 0:
            raise ExpansionError(f"unexpected end of statement while looking for matching single-quote: {self.text}")
        value = self.text[self.pos:end]
        self.pos = end + 1
        return value

    def double(self) -> str:
        self.next()
        out = []
        while True:
            if self.pos >= len(self.text):
                raise ExpansionError(f"unexpected end of statement while looking for matching double-quote: {self.text}")
            ch = self.peek()
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar()[0])
            elif ch == self.escape:
                self.next()
                following = self.peek()
                if following in ('"', "$", self.escape) and following:
                    out.append(self.next())
                elif following:
                    out.append(ch)
            else:
                out.append(self.next())

    def dollar(self) -> tuple[str, bool]:
        """Expand at ``$``; returns (value, whether it may be split into words)."""
        self.next()
        ch = self.peek()
        if ch == "{":
            self.next()
            return self.braced(), True
        if ch and _NAME_START.match(ch):
            start = self.pos
            while self.peek() and _NAME_CHAR.match(self.peek()):
                self.next()
            return self.env.get(self.text[start:self.pos], ""), True
        if ch.isdigit():
            self.next()
            return "", True
        return "$", False

    def braced(self) -> str:
        start = self.pos
        while self.peek() and _NAME_CHAR.match(self.peek()):
            self.next()
        name = self.text[start:self.pos]
        if not name:
            raise ExpansionError(f"bad substitution: ${{{self.text[start:]}")
        op = self.next()
        if op == "}":
            return self.env.get(name, "")
        if op == "":
            raise ExpansionError(f"missing '}}' in: {self.text}")
        if op == ":":
            op += self.next()
        elif op in "#%/" and self.peek() == op:
            op += self.next()
        if op not in (":-", "-", ":+", "+", ":?", "?", "#", "##", "%", "%%", "/", "//"):
            raise ExpansionError(f"unsupported modifier ({op}) in substitution: {self.text}")
        if op in ("/", "//"):
            pattern = self.argument("/}")
            replacement = ""
            if self.peek() == "/":
                self.next()
                replacement = self.argument("}")
            self.close()
            return _replace(self.env.get(name, ""), pattern, replacement, op == "//")
        word = self.argument("}")
        self.close()
        value = self.env.get(name)
        is_set = value is not None
        non_empty = bool(value)
        if op in (":-", "-"):
            return value if (non_empty if op == ":-" else is_set) else word
        if op in (":+", "+"):
            return word if (non_empty if op == ":+" else is_set) else ""
        if op in (":?", "?"):
            if non_empty if op == ":?" else is_set:
                return value
            raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
        return _trim(value or "", word, op)

    def argument(self, stop: str) -> str:
        """The word inside ``${...}``: itself expanded (quotes, escapes, nested ``$``)."""
        inner = _Word(self.text, self.env, self.escape)
        inner.pos = self.pos
        inner.run(stop)
        self.pos = inner.pos
        inner.flush()
        return "".join(inner.words) if inner.words else ""

    def close(self) -> None:
        if self.next() != "}":
            raise ExpansionError(f"missing '}}' in: {self.text}")


def _matcher(pattern: str):
    regex = re.compile(fnmatch.translate(pattern), re.DOTALL)
    return lambda s: regex.match(s) is not None


def _trim(value: str, pattern: str, op: str) -> str:
    matches = _matcher(pattern)
    sizes = range(len(value) + 1)
    if op in ("#", "##"):
        for size in (sizes if op == "#" else reversed(sizes)):
            if matches(value[:size]):
                return value[size:]
        return value
    for size in (sizes if op == "%" else reversed(sizes)):
        if matches(value[len(value) - size:]):
            return value[:len(value) - size]
    return value


def _replace(value: str, pattern: str, replacement: str, every: bool) -> str:
    """``${V/p/r}``: the longest match of ``p`` at the first place it matches is replaced (as bash)."""
    if not pattern:
        return value
    matches = _matcher(pattern)
    out, index = [], 0
    while index <= len(value):
        for end in range(len(value), index - 1, -1):
            if end > index and matches(value[index:end]):
                out.append(replacement)
                index = end
                break
        else:
            if index < len(value):
                out.append(value[index])
            index += 1
            continue
        if not every:
            out.append(value[index:])
            return "".join(out)
    return "".join(out)


def process_word(word: str, env: dict[str, str], escape: str = "\\") -> str:
    """Expand ``word`` into one string (whitespace kept), as Docker does for ENV values, WORKDIR, USER …"""
    state = _Word(word, env, escape)
    state.run(stop="\x00")
    state.flush()
    return "".join(state.words)


def process_words(word: str, env: dict[str, str], escape: str = "\\") -> list[str]:
    """Expand ``word`` and split it on unquoted whitespace (EXPOSE, COPY/ADD sources, VOLUME …)."""
    state = _Word(word, env, escape, splitting=True)
    state.run()
    state.flush()
    return state.words
