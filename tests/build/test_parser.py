"""The Dockerfile parser and word expansion on their own: a corpus of Docker's rules, no engine needed."""

from __future__ import annotations

import io

import pytest

from pallet.kernel.build import instructions as ins
from pallet.kernel.build.lex import ExpansionError, process_word, process_words
from pallet.kernel.build.parser import MAX_LINE, DockerfileError, parse
from pallet.kernel.build.plan import make_plan


def nodes(text: str):
    return parse(text).nodes


def typed(text: str):
    df = parse(text)
    return [ins.parse_node(n, df.escape) for n in df.nodes]


# --- directives, comments, continuations ------------------------------------------------

def test_directives_are_read_only_at_the_top_and_escape_changes_continuations():
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nRUN echo a `\n  b\n# escape=\\\n")
    assert df.escape == "`"
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert any("syntax directive ignored" in w for w in df.warnings)
    assert [(n.instruction, n.rest) for n in df.nodes] == [("FROM", "busybox"), ("RUN", "echo a   b")]


def test_a_directive_after_a_comment_is_a_comment():
    df = parse("# hello\n# escape=`\nFROM busybox\n")
    assert df.escape == "\\" and df.directives == {}


def test_duplicate_and_invalid_directives_name_their_line():
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: only one escape parser directive"):
        parse("# escape=`\n# escape=`\nFROM x\n")
    with pytest.raises(DockerfileError, match=r"^Dockerfile:1: invalid escape token"):
        parse("# escape=x\nFROM x\n")


def test_comment_inside_a_continued_line_is_dropped_and_positions_span_the_lines():
    (from_, run) = nodes("FROM busybox\nRUN echo a \\\n# a comment\n    && echo b \\  \n\n  && echo c\n")
    assert run.rest == "echo a     && echo b   && echo c"
    assert (run.start_line, run.end_line) == (2, 6)


def test_blank_lines_and_indented_comments_are_skipped():
    assert [n.start_line for n in nodes("\n\n   # c\nFROM a\n\n  RUN x\n")] == [4, 6]


def test_instructions_are_case_insensitive_and_keep_their_original_text():
    (node,) = nodes("from busybox as Base\n")
    step = ins.parse_node(node)
    assert isinstance(step, ins.From) and step.name == "base" and step.original == "from busybox as Base"


def test_crlf_and_bom_are_accepted():
    df = parse(b"\xef\xbb\xbfFROM a\r\nRUN x\r\n")
    assert [(n.instruction, n.rest) for n in df.nodes] == [("FROM", "a"), ("RUN", "x")]


# --- exec and shell forms ----------------------------------------------------------------

def test_json_exec_form_and_invalid_json_falls_back_to_shell_form():
    cmd, bad, entry = typed('FROM a\nCMD ["echo", "hi"]\nCMD [echo, hi]\nENTRYPOINT ["a", 1]\n')[1:]
    assert cmd.command == ["echo", "hi"]
    assert bad.command == "[echo, hi]"
    assert entry.command == '["a", 1]'


def test_shell_requires_json():
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: SHELL requires the arguments to be in JSON form"):
        typed("FROM a\nSHELL /bin/bash -c\n")
    assert typed('FROM a\nSHELL ["/bin/ash", "-eo", "pipefail", "-c"]\n')[1].shell == ["/bin/ash", "-eo", "pipefail", "-c"]


# --- heredocs ------------------------------------------------------------------------------

def test_heredocs_plain_chomped_quoted_and_several_on_one_line():
    (run, copy) = nodes('RUN <<EOF\necho $A\nEOF\nCOPY <<-"ONE" <<TWO /dst/\n\t\tfirst\n\tONE\nsecond\nTWO\n')
    assert run.heredocs[0].content == "echo $A\n" and run.heredocs[0].expand
    assert (run.start_line, run.end_line) == (1, 3)
    one, two = copy.heredocs
    assert (one.name, one.content, one.expand, one.chomp) == ("ONE", "first\n", False, True)
    assert (two.name, two.content, two.expand) == ("TWO", "second\n", True)
    step = ins.parse_node(copy)
    assert step.sources == [] and step.dest == "/dst/"


def test_heredoc_in_an_instruction_that_takes_none_is_plain_text():
    (label,) = nodes("LABEL a=<<EOF\n")
    assert label.heredocs == []


def test_unterminated_heredoc_names_the_line_that_opened_it():
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: unterminated heredoc EOF"):
        parse("FROM a\nRUN <<EOF\necho\n")


# --- flags ------------------------------------------------------------------------------

def test_flags_are_parsed_and_checked_per_instruction():
    copy = typed("FROM a\nCOPY --from=build --chown=1:2 --chmod=755 --link --exclude=*.md --exclude=x src/ /dst\n")[1]
    assert (copy.from_, copy.chown, copy.chmod, copy.link, copy.exclude) == ("build", "1:2", "755", True, ["*.md", "x"])
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: unknown flag: --from \(ADD takes"):
        typed("FROM a\nADD --from=x a b\n")
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: unknown flag: --foo \(ENV takes no flags\)"):
        typed("FROM a\nENV --foo=1 a=b\n")
    with pytest.raises(DockerfileError, match=r"duplicate flag specified: --chown"):
        typed("FROM a\nCOPY --chown=1 --chown=2 a b\n")
    with pytest.raises(DockerfileError, match=r"missing a value on flag: --from"):
        typed("FROM a\nCOPY --from a b\n")


def test_run_mounts_and_network():
    run = typed("FROM a\nRUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked "
                "--mount=type=secret,id=tok,required --network=none make\n")[1]
    cache, secret = run.mounts
    assert (cache.type, cache.target, cache.options) == ("cache", "/root/.cache", {"id": "pip", "sharing": "locked"})
    assert (secret.type, secret.options) == ("secret", {"id": "tok", "required": "true"})
    assert run.network == "none" and run.command == "make"
    with pytest.raises(DockerfileError, match="security.insecure entitlement"):
        typed("FROM a\nRUN --security=insecure true\n")
    for bad, message in (("type=nfs,target=/x", "unsupported mount type"), ("type=cache", "needs a target"),
                         ("type=cache,target=/x,sharing=all", "unsupported sharing"),
                         ("type=cache,target=/x,colour=red", 'unexpected key "colour"'),
                         ("type=cache,target=/x,source=/y", "source= of a cache mount needs from=")):
        with pytest.raises(DockerfileError, match=message):
            typed(f"FROM a\nRUN --mount={bad} true\n")


# --- instruction shapes ----------------------------------------------------------------

def test_env_and_label_both_forms_with_quotes():
    env, legacy, label = typed('FROM a\nENV A=1 B="two words" C=three\\ words\nENV D the rest  of it\n'
                               'LABEL "com.x"="y z" k=v\n')[1:]
    assert env.pairs == [("A", "1"), ("B", '"two words"'), ("C", "three\\ words")]
    assert legacy.pairs == [("D", "the rest  of it")]
    assert label.pairs == [('"com.x"', '"y z"'), ("k", "v")]
    with pytest.raises(DockerfileError, match=r"can't find = in \"B\""):
        typed("FROM a\nENV A=1 B\n")


def test_arg_names_and_defaults():
    (arg,) = typed("FROM a\nARG A B=2 C=\"x y\"\n")[1:]
    assert arg.pairs == [("A", None), ("B", "2"), ("C", '"x y"')]


def test_healthcheck_options_none_and_errors():
    check, none = typed("FROM a\nHEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s "
                        "--start-interval=1s --retries=4 CMD curl -f http://x/ || exit 1\nHEALTHCHECK NONE\n")[1:]
    assert check.test == ["CMD-SHELL", "curl -f http://x/ || exit 1"]
    assert (check.interval, check.timeout, check.start_period, check.start_interval, check.retries) == \
        (90_000_000_000, 500_000_000, 2_000_000_000, 1_000_000_000, 4)
    assert none.test == ["NONE"]
    assert typed('FROM a\nHEALTHCHECK CMD ["true"]\n')[1].test == ["CMD", "true"]
    with pytest.raises(DockerfileError, match=r'unknown type "RUN"'):
        typed("FROM a\nHEALTHCHECK RUN x\n")


def test_onbuild_refuses_chaining_and_from():
    assert typed("FROM a\nONBUILD RUN echo hi\n")[1].trigger == "RUN echo hi"
    with pytest.raises(DockerfileError, match="ONBUILD ONBUILD"):
        typed("FROM a\nONBUILD ONBUILD RUN x\n")
    with pytest.raises(DockerfileError, match="FROM isn't allowed"):
        typed("FROM a\nONBUILD FROM b\n")


def test_unknown_instruction_suggests_the_closest():
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: unknown instruction: cpy \(did you mean COPY\?\)$"):
        typed("FROM a\nCPY a b\n")


def test_copy_needs_a_source_and_a_dest():
    with pytest.raises(DockerfileError, match="COPY requires at least two arguments"):
        typed("FROM a\nCOPY onlyone\n")


def test_maintainer_user_workdir_stopsignal_expose_volume():
    steps = typed('FROM a\nMAINTAINER Jo <jo@x>\nUSER app:app\nWORKDIR /srv/$X\nSTOPSIGNAL SIGQUIT\n'
                  'EXPOSE 80 53/udp\nVOLUME ["/data", "/logs"]\nVOLUME /a /b\n')[1:]
    assert [getattr(s, f) for s, f in zip(steps, ["name", "user", "path", "signal", "ports", "paths", "paths"])] == \
        ["Jo <jo@x>", "app:app", "/srv/$X", "SIGQUIT", ["80", "53/udp"], ["/data", "/logs"], ["/a", "/b"]]


# --- limits ---------------------------------------------------------------------------------

def test_an_overlong_line_is_refused_without_reading_it_whole():
    class Endless(io.RawIOBase):
        """A 2 GB single line, produced lazily: the parser must stop after its limit."""

        def __init__(self):
            self.given = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            if self.given > 2 << 30:
                return 0
            buffer[:] = b"A" * len(buffer)
            self.given += len(buffer)
            return len(buffer)

    source = Endless()
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: line is longer than 1 MiB"):
        parse(io.BufferedReader(io.BufferedReader(_Prefixed(b"FROM a\nRUN ", source))))
    assert source.given < 4 * MAX_LINE


class _Prefixed(io.RawIOBase):
    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        return self.rest.readinto(buffer)


# --- word expansion -------------------------------------------------------------------------

ENV = {"A": "hello world", "E": "", "P": "/usr/local/bin", "F": "file.tar.gz"}


@pytest.mark.parametrize("word, expected", [
    ("$A", "hello world"), ("${A}", "hello world"), ("x${A}y", "xhello worldy"),
    ("${U:-def}", "def"), ("${E:-def}", "def"), ("${E-def}", ""), ("${U-def}", "def"),
    ("${A:+alt}", "alt"), ("${E:+alt}", ""), ("${E+alt}", "alt"), ("${U+alt}", ""),
    ("${P#*/}", "usr/local/bin"), ("${P##*/}", "bin"), ("${F%.*}", "file.tar"), ("${F%%.*}", "file"),
    ("${P/local/LOC}", "/usr/LOC/bin"), ("${F//./_}", "file_tar_gz"), ("${F/#file/doc}", "file.tar.gz"),
    ("'$A'", "$A"), ('"$A"', "hello world"), ("\\$A", "$A"), ('"a\\b"', "a\\b"), ('"a\\"b"', 'a"b'),
    ("$", "$"), ("a$", "a$"), ("$1x", "x"), ("${U:-$A}", "hello world"), ("${U:-'q w'}", "q w"),
    ("\\\\", "\\"), ("$U", ""), ("a\\ b", "a b"),
])
def test_process_word(word, expected):
    assert process_word(word, ENV) == expected


def test_process_words_splits_unquoted_results_only():
    assert process_words("$A 'x y' \"$A\"", ENV) == ["hello", "world", "x y", "hello world"]
    assert process_words('""', ENV) == [""]
    assert process_words("   ", ENV) == []


def test_backtick_escape():
    assert process_word("a`$A`\\", ENV, escape="`") == "a$A\\"


def test_required_variable_and_bad_substitutions():
    with pytest.raises(ExpansionError, match="U: need it"):
        process_word("${U:?need it}", ENV)
    assert process_word("${A:?x}", ENV) == "hello world"
    for bad in ("${A", "${A:x}", "${}", "'open", '"open'):
        with pytest.raises(ExpansionError):
            process_word(bad, ENV)


# --- the plan ---------------------------------------------------------------------------------

def test_plan_keeps_only_needed_stages_dependencies_first():
    df = parse("ARG BASE=busybox\nFROM $BASE AS a\nFROM busybox AS unused\nFROM a AS b\n"
               "COPY --from=c /x /y\nFROM busybox AS c\n")
    plan = make_plan(df, {}, target="b")
    assert [plan.stages[i].label for i in plan.order] == ["a", "c", "b"]
    assert [plan.stages[i].label for i in make_plan(df, {}).order] == ["c"]
    assert plan.stages[0].base == "busybox"
    assert make_plan(df, {"BASE": "other"}).stages[0].base == "other"
    assert [plan.stages[i].label for i in make_plan(df, {}, target="unused").order] == ["unused"]


def test_plan_refuses_bad_targets_cycles_and_blank_bases():
    with pytest.raises(DockerfileError, match='target stage "nope" could not be found'):
        make_plan(parse("FROM a AS x\n"), {}, target="nope")
    with pytest.raises(DockerfileError, match="circular dependency"):
        make_plan(parse("FROM a AS x\nCOPY --from=y / /\nFROM a AS y\nCOPY --from=x / /\n"), {})
    with pytest.raises(DockerfileError, match="circular dependency detected on stage: x"):
        make_plan(parse("FROM a AS x\nCOPY --from=x / /\n"), {})
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: FROM uses ARG V"):
        make_plan(parse("ARG V\nFROM busybox:$V\n"), {})
    with pytest.raises(DockerfileError, match="duplicate stage name"):
        make_plan(parse("FROM a AS x\nFROM b AS x\n"), {})
    with pytest.raises(DockerfileError, match="only the host's platform"):
        make_plan(parse("FROM --platform=linux/s390x a\n"), {})
    assert make_plan(parse("FROM --platform=$BUILDPLATFORM a\n"), {}).stages[0].base == "a"
