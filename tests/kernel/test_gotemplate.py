"""Go text/template for --format: cases from Docker's formatting documentation and Go's own semantics."""

from __future__ import annotations

import pytest

from pallet.kernel.cli.gotemplate import TemplateError, render

CONTAINER = {
    "Name": "/web", "Image": "busybox:latest", "Args": ["-c", "sleep 1"], "LogPath": "/var/log/x.log",
    "State": {"Running": True, "Status": "running", "ExitCode": 0, "Pid": 42},
    "Config": {"Cmd": ["sh", "-c", "x"], "Labels": {"b": "2", "a": "1"}, "Image": "busybox", "Env": None},
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"}},
                        "Ports": {"8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8787"}],
                                  "22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "2222"}]}},
    "Mounts": [{"Source": "/a", "Destination": "/b"}],
}

CASES = [
    # docs.docker.com "Format command and log output" and "docker inspect" examples
    ("{{.State.Running}}", "true"),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.2"),
    ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:ac:11:00:02"),
    ("{{.LogPath}}", "/var/log/x.log"),
    ("{{.Config.Image}}", "busybox"),
    ("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
     " 22/tcp -> 2222  8787/tcp -> 8787 "),
    ('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "8787"),
    ("{{json .Config.Labels}}", '{"b":"2","a":"1"}'),
    ("{{json .Mounts}}", '[{"Source":"/a","Destination":"/b"}]'),
    ('{{join .Args " , "}}', "-c , sleep 1"),
    ("{{title .Name}}", "/Web"),
    ("{{upper .Name}}", "/WEB"),
    ("{{lower .Image}}", "busybox:latest"),
    ('{{split .Image ":"}}', "[busybox latest]"),
    ("{{pad .State.Status 1 2}}|", " running  |"),
    ("{{truncate .Image 3}}", "bus"),
    ('{{printf "%s has pid %d" .Name .State.Pid}}', "/web has pid 42"),
    # Go's value printing and semantics
    ("{{.Config.Cmd}}", "[sh -c x]"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{.Nothing}}", "<no value>"),
    ("{{.Config.Env}}", "<nil>"),
    ('{{if eq .State.Status "exited" "running"}}up{{else}}down{{end}}', "up"),
    ("{{if .State.ExitCode}}failed{{else if .State.Running}}running{{else}}ok{{end}}", "running"),
    ("{{with .State}}{{.Pid}}{{end}}", "42"),
    ("{{with .Nothing}}x{{else}}none{{end}}", "none"),
    ("{{range .Config.Env}}x{{else}}empty{{end}}", "empty"),
    ("{{range $i, $e := .Config.Cmd}}{{if $i}},{{end}}{{$e}}{{end}}", "sh,-c,x"),
    ("{{$n := .Name}}{{with .State}}{{$n}}:{{.Status}}{{end}}", "/web:running"),
    ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
    ("{{len .Config.Cmd}} {{index .Config.Cmd 1}} {{slice .Config.Cmd 1 2}}", "3 -c [-c]"),
    ("{{and 1 0}} {{or 0 \"\" \"z\"}} {{not 0}} {{lt 1 2}} {{ge 2 3}} {{ne .Image \"x\"}}", "0 z true true false true"),
    ('{{print 1 2 "a" 3}}|{{println "a" 1}}', "1 2a3|a 1\n"),
    ('{{.Image | printf "%q"}} {{printf "%-5s|%03d|%.1f" "ab" 7 2.25}}', '"busybox:latest" ab   |007|2.2'),
    ("a {{- /* a comment */ -}} b", "ab"),
    ("{{range .Config.Cmd}}{{if eq . \"-c\"}}{{break}}{{end}}{{.}}{{end}}", "sh"),
    ("{{range .Config.Cmd}}{{if eq . \"-c\"}}{{continue}}{{end}}{{.}}{{end}}", "shx"),
    ("{{`raw \\n`}}", "raw \\n"),
]


@pytest.mark.parametrize("template,expected", CASES)
def test_go_template_cases(template, expected):
    assert render(template, CONTAINER) == expected


@pytest.mark.parametrize("template,message", [
    ("{{.Name", "template parsing error: template: :1: unclosed action"),
    ("{{end}}", "template parsing error: template: :1: unexpected {{end}}"),
    ("{{if .Name}}x", "template parsing error: template: :1: unexpected EOF"),
    ("{{nosuch .Name}}", 'template parsing error: template: :1: function "nosuch" not defined'),
    ("{{.Name | }}", "template parsing error: template: :1: missing value for command"),
    ("line\n{{(.Name}}", "template parsing error: template: :2: unclosed left paren"),
    ("{{define \"x\"}}{{end}}", "template parsing error: template: :1: {{define}} (named templates)"),
])
def test_malformed_templates_are_parsing_errors_even_with_no_rows(template, message):
    with pytest.raises(TemplateError) as err:
        render(template, {})
    assert str(err.value).startswith(message)


def test_strict_rows_refuse_a_missing_field():
    with pytest.raises(TemplateError, match=r"can't evaluate field Nope"):
        render("{{.Nope}}", {"ID": "x"}, strict=True)
    assert render("{{.ID}}", {"ID": "x"}, strict=True) == "x"
