"""Go ``text/template`` for ``--format``: parser and evaluator, with Docker's template functions.

Why our own: scripts written for the docker CLI pass Go templates, and no Python library
implements Go's semantics (pipelines, ``range``/``with``/``if`` with ``else``, variables, Go's
value printing such as ``map[a:1]``, ``[a b]``, ``<no value>``). This module covers what
templates given to Docker use: actions, comments, trim markers (``{{-``/``-}}``), ``if``/``else
if``/``range``/``with``/``break``/``continue``, ``$`` and ``$x :=``/``=`` variables, parenthesised
pipelines, the builtins (``and or not len index slice eq ne lt le gt ge print printf println
urlquery``) and Docker's (``json join split title lower upper pad truncate``). ``define``,
``template`` and ``block`` (named templates) are refused with a parsing error.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

from pallet.kernel.errors import PalletError

__all__ = ["TemplateError", "parse", "render", "go_str"]


class TemplateError(PalletError):
    """A malformed template (``template parsing error: …``) or one that failed while executing."""


_NO_VALUE = object()   # a missing map key: Go prints "<no value>"


# --- lexing --------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<decl>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


@dataclass
class Token:
    kind: str
    text: str
    fields: list[str] = field(default_factory=list)  # a chain after a variable or ")": $x.A.B, (…).A


def _tokens(source: str, line: int) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match:
            raise _parse_error(line, f"unexpected {source[pos]!r} in command")
        kind, text = match.lastgroup, match.group()
        pos = match.end()
        if kind == "ws":
            continue
        if kind == "field" and tokens and tokens[-1].kind in ("var", "rparen") and source[match.start() - 1] != " " \
                and text != ".":
            tokens[-1].fields += text.split(".")[1:]
            continue
        tokens.append(Token(kind, text, text.split(".")[1:] if kind == "field" and text != "." else []))
    return tokens


def _parse_error(line: int, message: str) -> TemplateError:
    return TemplateError(f"template parsing error: template: :{line}: {message}")


# --- the tree ------------------------------------------------------------------------------

@dataclass
class Command:
    operands: list  # Token or Pipeline (parenthesised)


@dataclass
class Pipeline:
    commands: list[Command]
    declare: list[str] = field(default_factory=list)   # $x := / $i, $e :=
    assign: bool = False                                # $x = (assignment, not declaration)
    chain: list[str] = field(default_factory=list)      # fields after a parenthesised pipeline: (…).A.B


@dataclass
class Node:
    kind: str                       # text | action | if | range | with | break | continue
    text: str = ""
    pipe: Pipeline | None = None
    body: list = field(default_factory=list)
    otherwise: list = field(default_factory=list)


def parse(template: str) -> list[Node]:
    """Parse ``template`` into a node list; raises TemplateError with Go's ``template parsing error`` prefix."""
    pieces: list[tuple[str, str, int]] = []
    pos, line = 0, 1
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if match.group(1):
            text = text.rstrip()
        if pieces and pieces[-1][0] == "trim-next":
            pieces.pop()
            text = text.lstrip()
        if text:
            pieces.append(("text", text, line))
        line += template[pos:match.end()].count("\n")
        pieces.append(("action", match.group(2).strip(), line))
        if match.group(3):
            pieces.append(("trim-next", "", line))
        pos = match.end()
    rest = template[pos:]
    if pieces and pieces[-1][0] == "trim-next":
        pieces.pop()
        rest = rest.lstrip()
    if "{{" in rest:
        raise _parse_error(line + rest[:rest.index("{{")].count("\n"), "unclosed action")
    if rest:
        pieces.append(("text", rest, line))
    nodes, stop, _index = _parse_list(pieces, 0, ())
    if stop is not None:
        raise _parse_error(stop[2], f"unexpected {{{{{stop[1]}}}}}")
    return nodes


_KEYWORDS = ("if", "range", "with")


def _parse_list(pieces, index: int, stops: tuple[str, ...]):
    nodes: list[Node] = []
    while index < len(pieces):
        kind, text, line = pieces[index]
        index += 1
        if kind == "text":
            nodes.append(Node("text", text))
            continue
        if text.startswith("/*"):
            if not text.endswith("*/"):
                raise _parse_error(line, "unclosed comment")
            continue
        word = text.split(None, 1)[0] if text else ""
        if word in ("end", "else"):
            if word not in stops:
                raise _parse_error(line, f"unexpected {{{{{word}}}}}")
            return nodes, (word, text, line), index
        if word in ("break", "continue"):
            nodes.append(Node(word))
            continue
        if word in ("define", "template", "block"):
            raise _parse_error(line, f"{{{{{word}}}}} (named templates) is not supported by pallet's --format")
        if word in _KEYWORDS:
            node, index = _parse_control(pieces, index, word, text[len(word):].strip(), line)
            nodes.append(node)
            continue
        if not text:
            raise _parse_error(line, "missing value for command")
        nodes.append(Node("action", pipe=_parse_pipeline(text, line)))
    return nodes, None, index


def _parse_control(pieces, index: int, word: str, rest: str, line: int):
    if not rest:
        raise _parse_error(line, f"missing value for {word}")
    node = Node(word, pipe=_parse_pipeline(rest, line, word == "range"))
    node.body, stop, index = _parse_list(pieces, index, ("end", "else"))
    if stop is None:
        raise _parse_error(line, f"unexpected EOF (no {{{{end}}}} for {{{{{word}}}}})")
    if stop[0] == "else":
        tail = stop[1][len("else"):].strip()
        chained = tail.split(None, 1)[0] if tail else ""
        if chained in ("if", "with"):  # {{else if …}} is an if nested in the else branch, sharing the {{end}}
            inner, index = _parse_control(pieces, index, chained, tail[len(chained):].strip(), stop[2])
            node.otherwise = [inner]
            return node, index
        if tail:
            raise _parse_error(stop[2], f"unexpected {tail!r} after else")
        node.otherwise, stop, index = _parse_list(pieces, index, ("end",))
        if stop is None:
            raise _parse_error(line, f"unexpected EOF (no {{{{end}}}} for {{{{{word}}}}})")
    return node, index


def _parse_pipeline(text: str, line: int, allow_two: bool = False) -> Pipeline:
    return _pipeline_from(_tokens(text, line), line, allow_two)


def _pipeline_from(tokens: list[Token], line: int, allow_two: bool = False) -> Pipeline:
    declare: list[str] = []
    assign = False
    kinds = [t.kind for t in tokens[:4]]
    if allow_two and kinds[:2] == ["var", "comma"] and kinds[2:3] == ["var"] and kinds[3:4] in (["decl"], ["assign"]):
        declare, assign, tokens = [tokens[0].text, tokens[2].text], kinds[3] == "assign", tokens[4:]
    elif kinds[:1] == ["var"] and kinds[1:2] in (["decl"], ["assign"]) and not tokens[0].fields:
        declare, assign, tokens = [tokens[0].text], kinds[1] == "assign", tokens[2:]
    commands, operands, depth, group = [], [], 0, []
    for token in tokens:
        if depth:
            if token.kind == "lparen":
                depth += 1
            elif token.kind == "rparen":
                depth -= 1
                if depth == 0:
                    inner = _pipeline_from(group, line)
                    inner.chain = token.fields
                    operands.append(inner)
                    group = []
                    continue
            group.append(token)
            continue
        if token.kind == "lparen":
            depth, group = 1, []
        elif token.kind == "rparen":
            raise _parse_error(line, "unexpected right paren")
        elif token.kind == "pipe":
            if not operands:
                raise _parse_error(line, "missing command before |")
            commands.append(Command(operands))
            operands = []
        elif token.kind in ("decl", "assign", "comma"):
            raise _parse_error(line, f"unexpected {token.text!r} in operand")
        else:
            operands.append(token)
    if depth:
        raise _parse_error(line, "unclosed left paren")
    if not operands:
        raise _parse_error(line, "missing value for command")
    commands.append(Command(operands))
    for command in commands:
        for operand in command.operands:
            if isinstance(operand, Token) and operand.kind == "ident" and operand.text not in FUNCTIONS \
                    and operand.text not in ("true", "false", "nil"):
                raise _parse_error(line, f'function "{operand.text}" not defined')
    for command in commands[1:]:
        first = command.operands[0]
        if isinstance(first, Token) and first.kind not in ("ident", "field", "var"):
            raise _parse_error(line, f"non executable command in pipeline stage {commands.index(command) + 1}")
    return Pipeline(commands, declare, assign)


# --- evaluation ----------------------------------------------------------------------------

class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def render(template: str, data, strict: bool = False) -> str:
    """Execute ``template`` on ``data``. ``strict``: a missing field is an error (Docker's typed list rows)
    rather than ``<no value>`` (its raw-JSON inspect fallback)."""
    nodes = _parse_cached(template)
    out: list[str] = []
    _Executor(strict).run(nodes, data, [{"$": data}], out)
    return "".join(out)


@functools.lru_cache(maxsize=32)
def _parse_cached(template: str) -> list[Node]:
    return parse(template)  # a list command renders the same template once per row


class _Executor:
    def __init__(self, strict: bool):
        self.strict = strict

    def run(self, nodes, dot, scopes, out) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                value = self.pipeline(node.pipe, dot, scopes)
                if not node.pipe.declare:
                    out.append(go_str(value))
            elif node.kind == "break":
                raise _Break()
            elif node.kind == "continue":
                raise _Continue()
            else:
                getattr(self, "run_" + node.kind)(node, dot, scopes, out)

    def run_if(self, node, dot, scopes, out) -> None:
        scopes = scopes + [{}]
        value = self.pipeline(node.pipe, dot, scopes)
        self.run(node.body if truth(value) else node.otherwise, dot, scopes, out)

    def run_with(self, node, dot, scopes, out) -> None:
        scopes = scopes + [{}]
        value = self.pipeline(node.pipe, dot, scopes)
        if truth(value):
            self.run(node.body, value, scopes, out)
        else:
            self.run(node.otherwise, dot, scopes, out)

    def run_range(self, node, dot, scopes, out) -> None:
        scopes = scopes + [{}]
        declare = node.pipe.declare
        value = self.pipeline(node.pipe, dot, scopes, bind=False)  # the variables take each element instead
        if isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, (list, tuple, str)) and not isinstance(value, str):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None or value is _NO_VALUE:
            items = []
        else:
            raise TemplateError(f"template: range can't iterate over {go_str(value)}")
        if not items:
            self.run(node.otherwise, dot, scopes, out)
            return
        for key, element in items:
            frame = {}
            if len(declare) == 1:
                frame[declare[0]] = element
            elif len(declare) == 2:
                frame[declare[0]], frame[declare[1]] = key, element
            try:
                self.run(node.body, element, scopes + [frame], out)
            except _Continue:
                continue
            except _Break:
                break

    def pipeline(self, pipe: Pipeline, dot, scopes, bind: bool = True):
        value = _NO_VALUE
        for position, command in enumerate(pipe.commands):
            value = self.command(command, dot, scopes, None if position == 0 else (value,))
        if pipe.declare and bind:
            name = pipe.declare[0]
            if pipe.assign:
                for frame in reversed(scopes):
                    if name in frame:
                        frame[name] = value
                        break
                else:
                    raise TemplateError(f"template: undefined variable: {name}")
            else:
                scopes[-1][name] = value
        return value

    def command(self, command: Command, dot, scopes, piped):
        first, args = command.operands[0], command.operands[1:]
        if isinstance(first, Token) and first.kind == "ident" and first.text not in ("true", "false", "nil"):
            function = FUNCTIONS.get(first.text)
            if function is None:
                raise TemplateError(f'template parsing error: template: :1: function "{first.text}" not defined')
            values = [self.operand(a, dot, scopes) for a in args] + list(piped or ())
            try:
                return function(*values)
            except TemplateError:
                raise
            except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError) as exc:
                raise TemplateError(f"template: error calling {first.text}: {exc}") from None
        if args or piped:
            raise TemplateError(f"template: can't give argument to non-function {_describe(first)}")
        return self.operand(first, dot, scopes)

    def operand(self, operand, dot, scopes):
        if isinstance(operand, Pipeline):
            return self.fields(self.pipeline(operand, dot, scopes), operand.chain, "(…)")
        kind, text = operand.kind, operand.text
        if kind == "field":
            return self.fields(dot, operand.fields, "")
        if kind == "var":
            for frame in reversed(scopes):
                if text in frame:
                    return self.fields(frame[text], operand.fields, text)
            raise TemplateError(f'template parsing error: template: :1: undefined variable "{text}"')
        if kind == "rparen":
            raise TemplateError("template: unexpected )")
        if kind in ("string", "raw", "char"):
            return _literal(kind, text)
        if kind == "number":
            return _number(text)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[text]
        raise TemplateError(f"template: unexpected {text!r}")

    def fields(self, value, chain: list[str], base: str):
        path = base
        for name in chain:
            path += "." + name
            if isinstance(value, dict):
                if name in value:
                    value = value[name]
                elif self.strict:
                    raise TemplateError(f'template: :1: executing "" at <{path}>: can\'t evaluate field {name}')
                else:
                    value = _NO_VALUE
            elif value is None or value is _NO_VALUE:
                if self.strict or value is None:
                    raise TemplateError(f'template: :1: executing "" at <{path}>: nil pointer evaluating {name}')
                value = _NO_VALUE
            else:
                raise TemplateError(f'template: :1: executing "" at <{path}>: can\'t evaluate field {name} in type '
                                    f"{_go_type(value)}")
        return value


def _describe(operand) -> str:
    return operand.text if isinstance(operand, Token) else "(…)"


def _literal(kind: str, text: str):
    if kind == "raw":
        return text[1:-1]
    if kind == "char":
        return ord(json.loads('"' + text[1:-1].replace('"', '\\"') + '"'))
    return json.loads(text)


def _number(text: str):
    try:
        return int(text, 0)
    except ValueError:
        return float(text)


# --- Go's printing and truth ---------------------------------------------------------------

def go_str(value) -> str:
    """fmt's %v: ``true``, ``[a b]``, ``map[k:v]`` (sorted keys), ``<no value>``, ``<nil>``."""
    if value is _NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(value[k])}" for k in sorted(value, key=str)) + "]"
    return str(value)


def truth(value) -> bool:
    if value is _NO_VALUE or value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def _go_type(value) -> str:
    return {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}",
            dict: "map[string]interface {}"}.get(type(value), type(value).__name__)


# --- functions -----------------------------------------------------------------------------

def _and(*args):
    for arg in args:
        if not truth(arg):
            return arg
    return args[-1]


def _or(*args):
    for arg in args:
        if truth(arg):
            return arg
    return args[-1]


def _index(item, *keys):
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, _NO_VALUE) if not isinstance(key, bool) else item.get(key)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or not 0 <= key < len(item):
                raise TemplateError(f"template: error calling index: index out of range: {key}")
            item = item[key]
        else:
            raise TemplateError(f"template: error calling index: can't index item of type {_go_type(item)}")
    return item


def _slice(item, *bounds):
    return item[slice(*bounds)] if bounds else item


def _comparable(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return a, b
    if type(a) is not type(b):
        raise TemplateError("template: error calling eq: incompatible types for comparison")
    return a, b


def _eq(first, *others):
    if not others:
        raise TemplateError("template: error calling eq: missing argument for comparison")
    return any(x == y for x, y in (_comparable(first, o) for o in others))


def _ordered(op):
    def compare(a, b):
        a, b = _comparable(a, b)
        return op(a, b)
    return compare


def _sprint(*args) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(arg)
    return out


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([vsdqtxXfeEgGcbo%T])")


def _sprintf(fmt: str, *args) -> str:
    """fmt.Sprintf for the verbs templates use (%v %s %d %q %t %x %f %e %g %c %b %o %T, width, precision)."""
    values = list(args)

    def convert(match):
        flags, width, precision, verb = match.groups()
        if verb == "%":
            return "%"
        if not values:
            return f"%!{verb}(MISSING)"
        value = values.pop(0)
        if verb in "vs":
            text = go_str(value)
            if precision is not None:
                text = text[:int(precision)]
        elif verb == "q":
            text = json.dumps(go_str(value) if not isinstance(value, str) else value, ensure_ascii=False)
        elif verb == "t":
            text = go_str(value) if isinstance(value, bool) else f"%!t({_go_type(value)}={go_str(value)})"
        elif verb == "T":
            text = _go_type(value)
        else:
            spec = f"{precision and '.' + precision or ''}{verb}"
            if verb in "dxXcbo" and isinstance(value, str) and verb in "xX":
                text = value.encode().hex() if verb == "x" else value.encode().hex().upper()
            else:
                try:
                    text = format(value, "d" if verb == "d" else spec) if verb != "c" else chr(value)
                except (TypeError, ValueError):
                    text = f"%!{verb}({_go_type(value)}={go_str(value)})"
        if width:
            size = int(width)
            text = text.ljust(size) if "-" in flags else (text.rjust(size, "0") if "0" in flags else text.rjust(size))
        return text

    result = _VERB.sub(convert, fmt)
    if values:
        result += "%!(EXTRA " + ", ".join(f"{_go_type(v)}={go_str(v)}" for v in values) + ")"
    return result


def _json(value) -> str:
    """Docker's ``json``: encoding/json's compact output, with Go's HTML-safe escapes."""
    if value is _NO_VALUE:
        value = None
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _title(text: str) -> str:
    return re.sub(r"(^|[\s\-_./])(\w)", lambda m: m.group(1) + m.group(2).upper(), str(text))


def _truncate(text, length) -> str:
    text = go_str(text)
    return text[:int(length)] if len(text) > int(length) else text


def _urlquery(*args) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_sprint(*args))


def _len(item) -> int:
    if item is _NO_VALUE or item is None:
        raise TemplateError("template: error calling len: len of nil pointer")
    if not isinstance(item, (str, list, tuple, dict)):
        raise TemplateError(f"template: error calling len: len of type {_go_type(item)}")
    return len(item)


FUNCTIONS = {
    "and": _and, "or": _or, "not": lambda x: not truth(x), "len": _len, "index": _index, "slice": _slice,
    "eq": _eq, "ne": lambda a, b: not _eq(a, b), "lt": _ordered(lambda a, b: a < b),
    "le": _ordered(lambda a, b: a <= b), "gt": _ordered(lambda a, b: a > b), "ge": _ordered(lambda a, b: a >= b),
    "print": _sprint, "printf": _sprintf, "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "urlquery": _urlquery,
    # Docker's (docker/cli templates.basicFunctions)
    "json": _json, "split": lambda s, sep: str(s).split(sep), "join": lambda items, sep: sep.join(map(go_str, items)),
    "title": _title, "lower": lambda s: go_str(s).lower(), "upper": lambda s: go_str(s).upper(),
    "pad": lambda s, before, after: " " * int(before) + go_str(s) + " " * int(after), "truncate": _truncate,
}
