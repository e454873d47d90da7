"""Every instruction through a real build: the image config and the filesystem it produces."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile

import pytest

from tests.build.conftest import assert_nothing_left


def test_metadata_instructions_make_the_config_docker_writes(build):
    result = build(
        'FROM busybox\n'
        'ARG WHO=world\n'
        'ENV GREETING="hello $WHO" PLAIN=x\n'
        'ENV LEGACY value with spaces\n'
        'LABEL org.example.a="1" "b c"=d\n'
        'MAINTAINER Jo <jo@example.org>\n'
        'EXPOSE 80 53/udp 8000-8002\n'
        'VOLUME ["/data"]\n'
        'VOLUME /logs /cache\n'
        'USER nobody\n'
        'WORKDIR /srv\n'
        'WORKDIR app\n'
        'STOPSIGNAL SIGQUIT\n'
        'HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q -O- http://localhost/ || exit 1\n'
        'ONBUILD LABEL triggered=yes\n'
        'ENTRYPOINT ["/bin/echo"]\n'
        'CMD ["default"]\n', {}, "-t", "meta", "--label", "extra=yes")
    cfg = build.config("meta")["Config"]
    assert cfg["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "GREETING=hello world", "PLAIN=x", "LEGACY=value with spaces"]
    assert cfg["Labels"] == {"org.example.a": "1", "b c": "d", "extra": "yes"}
    assert cfg["ExposedPorts"] == {p: {} for p in ("80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp")}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}, "/cache": {}}
    assert (cfg["User"], cfg["WorkingDir"], cfg["StopSignal"]) == ("nobody", "/srv/app", "SIGQUIT")
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
                                  "Interval": 30_000_000_000, "Timeout": 3_000_000_000, "Retries": 2}
    assert cfg["OnBuild"] == ["LABEL triggered=yes"]
    assert (cfg["Entrypoint"], cfg["Cmd"]) == (["/bin/echo"], ["default"])
    assert "WHO" not in str(cfg["Env"])  # ARGs are not kept in the image
    doc = build.document(result.image_id)
    assert doc["author"] == "Jo <jo@example.org>"
    made_layers = [h["created_by"] for h in doc["history"][1:] if not h.get("empty_layer")]
    assert made_layers == ["/bin/sh -c #(nop)  WORKDIR /srv", "/bin/sh -c #(nop)  WORKDIR /srv/app"]
    assert doc["history"][-1]["created_by"] == '/bin/sh -c #(nop)  CMD ["default"]'
    assert len(doc["rootfs"]["diff_ids"]) == 3  # only WORKDIR made layers: its directories, as Docker's
    fs = build.filesystem("meta")
    assert fs["srv/app"].isdir() and (fs["srv/app"].uid, fs["srv/app"].gid) == (65534, 65534)  # USER's
    run = build.pallet("run", "--rm", "meta", check=True)
    assert run.stdout == "default\n"


def test_run_copy_add_make_the_filesystem(build):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("inner/file.txt")
        info.size, info.mode, info.uid = 5, 0o640, 1234
        tar.addfile(info, io.BytesIO(b"inner"))
    build(
        'FROM busybox\n'
        'RUN mkdir -p /made && echo ran > /made/by-run && ln -s /made/by-run /made/link && rmdir /var/www\n'
        'COPY a.txt /copied/\n'
        'COPY dir/ /tree\n'
        'COPY --chown=nobody:nobody --chmod=600 a.txt /owned\n'
        'COPY --chown=42:43 exe /numeric/\n'
        'COPY sym /tree/\n'
        'ADD pack.tar.gz /unpacked/\n'
        'ADD a.txt /added.txt\n'
        'COPY b*.txt /glob/\n',
        {"a.txt": "alpha\n", "dir/x": "x", "dir/sub/y": ("y", 0o700), "exe": ("#!/bin/sh\n", 0o755),
         "sym": ("->", "a.txt"), "pack.tar.gz": archive.getvalue(), "b1.txt": "1", "b2.txt": "2", "c.txt": "no"},
        "-t", "files")
    fs = build.filesystem("files")
    assert fs["made/by-run"].data == b"ran\n"
    assert fs["made/link"].issym() and fs["made/link"].linkname == "/made/by-run"
    assert "var/www" not in fs and "etc/passwd" in fs
    assert fs["copied/a.txt"].data == b"alpha\n" and (fs["copied/a.txt"].uid, fs["copied/a.txt"].gid) == (0, 0)
    assert fs["tree/x"].data == b"x" and stat.S_IMODE(fs["tree/sub/y"].mode) == 0o700
    assert "tree/dir" not in fs  # a directory source copies its contents
    assert (fs["owned"].uid, fs["owned"].gid, stat.S_IMODE(fs["owned"].mode)) == (65534, 65534, 0o600)
    assert (fs["numeric/exe"].uid, fs["numeric/exe"].gid, stat.S_IMODE(fs["numeric/exe"].mode)) == (42, 43, 0o755)
    assert fs["tree/sym"].issym() and fs["tree/sym"].linkname == "a.txt"
    assert fs["unpacked/inner/file.txt"].data == b"inner" and fs["unpacked/inner/file.txt"].uid == 1234
    assert fs["added.txt"].data == b"alpha\n"
    assert sorted(n for n in fs if n.startswith("glob/")) == ["glob/b1.txt", "glob/b2.txt"]


def test_run_whiteouts_delete_lower_files(build):
    result = build('FROM busybox\nRUN rm -rf /var/www /bin/vi\n', {}, "-t", "wh")
    doc = build.document(result.image_id)
    top = doc["rootfs"]["diff_ids"][-1]
    layer_blob = _layer_blob_for(build, result.image_id, top)
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer_blob)))]
    assert "var/.wh.www" in names and "bin/.wh.vi" in names
    fs = build.filesystem("wh")
    assert "var/www" not in fs and "bin/vi" not in fs and "bin/sh" in fs


def _layer_blob_for(build, image_id: str, diff_id: str) -> bytes:
    import json

    blobs = build.pallet.root / "images" / "blobs" / "sha256"
    for path in blobs.iterdir():
        try:
            manifest = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(manifest, dict) and manifest.get("config", {}).get("digest") == image_id:
            doc = build.document(image_id)
            index = doc["rootfs"]["diff_ids"].index(diff_id)
            return (blobs / manifest["layers"][index]["digest"].split(":")[1]).read_bytes()
    raise AssertionError("manifest not found")


def test_heredocs_in_run_and_copy(build):
    build('FROM busybox\nARG NAME=pallet\n'
          'RUN <<EOF\nset -e\necho "hi $NAME" > /from-run\nEOF\n'
          'RUN cat > /from-cat <<"END"\nliteral $NAME\nEND\n'
          'COPY <<-A <<"B" /docs/\n\tone $NAME\n\tA\ntwo $NAME\nB\n'
          'RUN <<EOF\n#!/bin/sh -e\necho "interpreted by $0" > /shebang\nEOF\n', {}, "-t", "here")
    fs = build.filesystem("here")
    assert fs["from-run"].data == b"hi pallet\n"
    assert fs["from-cat"].data == b"literal $NAME\n"
    assert fs["docs/A"].data == b"one pallet\n"
    assert fs["docs/B"].data == b"two $NAME\n"
    assert fs["shebang"].data == b"interpreted by /dev/pipes/EOF\n" and "dev/pipes" not in fs


def test_shell_changes_the_shell_of_run_and_the_shell_forms(build):
    build('FROM busybox\nSHELL ["/bin/sh", "-xc"]\nRUN echo shelled > /s\nCMD echo hi\n', {}, "-t", "sh")
    cfg = build.config("sh")["Config"]
    assert cfg["Cmd"] == ["/bin/sh", "-xc", "echo hi"] and cfg["Shell"] == ["/bin/sh", "-xc"]
    assert build.filesystem("sh")["s"].data == b"shelled\n"


def test_arg_scoping_global_defaults_and_build_args(build):
    build('ARG BASE=busybox\nARG GLOBAL=g\nFROM $BASE\nARG GLOBAL\nARG LOCAL=l\nARG OVER=default\n'
          'RUN echo "$GLOBAL $LOCAL $OVER $TARGETARCH-${TARGETOS:-none}" > /args\n'
          'ARG TARGETOS\nRUN echo "$TARGETOS" > /os\n',
          {}, "-t", "args", "--build-arg", "OVER=given")
    fs = build.filesystem("args")
    assert fs["args"].data == b"g l given -none\n"  # platform args exist in a stage only once declared there
    assert fs["os"].data == b"linux\n"


def test_multi_stage_copy_from_and_target(build):
    dockerfile = ('FROM busybox AS builder\nRUN echo artefact > /out && mkdir /tree && echo t > /tree/t\n'
                  'FROM busybox AS tester\nRUN echo tested > /tested\n'
                  'FROM scratch\nCOPY --from=builder /out /tree /\nCOPY --from=0 /bin/busybox /bin/busybox\n'
                  'COPY --from=busybox /etc/passwd /etc/passwd\n')
    build(dockerfile, {}, "-t", "multi")
    fs = build.filesystem("multi")
    assert fs["out"].data == b"artefact\n" and fs["t"].data == b"t\n"
    assert set(fs) == {"out", "t", "bin", "bin/busybox", "etc", "etc/passwd"}
    result = build(dockerfile, {}, "--target", "tester", "-t", "only-tester")
    assert "[tester 2/2]" in result.stderr and "builder" not in result.stderr  # unneeded stages are skipped
    assert build.filesystem("only-tester")["tested"].data == b"tested\n"


def test_onbuild_triggers_run_in_the_child_build(build):
    build('FROM busybox\nONBUILD COPY a.txt /from-trigger\nONBUILD RUN echo ok > /ran\n', {"a.txt": "A"},
          "-t", "parent-img")
    build('FROM parent-img\n', {"a.txt": "child context"}, "-t", "child-img")
    fs = build.filesystem("child-img")
    assert fs["from-trigger"].data == b"child context" and fs["ran"].data == b"ok\n"
    assert "OnBuild" not in build.config("child-img")["Config"] or not build.config("child-img")["Config"]["OnBuild"]


def test_entrypoint_resets_an_inherited_cmd_and_healthcheck_none(build):
    build('FROM busybox\nHEALTHCHECK CMD true\n', {}, "-t", "hc")
    build('FROM hc\nENTRYPOINT ["/bin/true"]\nHEALTHCHECK NONE\n', {}, "-t", "hc-none")
    cfg = build.config("hc-none")["Config"]
    assert cfg["Entrypoint"] == ["/bin/true"] and not cfg.get("Cmd")  # busybox's ["sh"] is dropped, as Docker's
    assert cfg["Healthcheck"] == {"Test": ["NONE"]}


def test_run_mounts_cache_bind_tmpfs_secret(build, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret")
    dockerfile = ('FROM busybox\n'
                  'RUN --mount=type=cache,target=/cache,id=c1 echo x >> /cache/log && wc -l < /cache/log > /count\n'
                  'RUN --mount=type=bind,source=data,target=/mnt cat /mnt/f > /bound\n'
                  'RUN --mount=type=tmpfs,target=/scratch touch /scratch/t && ! test -e /scratch/t2 && '
                  'grep -q " /scratch tmpfs" /proc/mounts && echo ok > /tmpfs-ok\n'
                  'RUN --mount=type=secret,id=tok cat /run/secrets/tok > /leaked-on-purpose && '
                  'test "$(stat -c %a /run/secrets/tok)" = 400\n'
                  'RUN --mount=type=secret,id=tok,env=TOKEN test "$TOKEN" = s3cret\n')
    build(dockerfile, {"data/f": "bound content"}, "-t", "mounts", "--secret", f"id=tok,src={secret}")
    fs = build.filesystem("mounts")
    assert fs["count"].data == b"1\n" and fs["bound"].data == b"bound content"
    assert fs["tmpfs-ok"].data == b"ok\n" and "scratch/t" not in fs
    assert fs["leaked-on-purpose"].data == b"s3cret"
    assert "run/secrets/tok" not in fs and "cache/log" not in fs and "mnt/f" not in fs
    build(dockerfile.replace("echo x", "echo y"), {"data/f": "bound content"}, "-t", "mounts2",
          "--secret", f"id=tok,src={secret}")
    assert build.filesystem("mounts2")["count"].data == b"2\n"  # the cache directory persisted
    missing = build('FROM busybox\nRUN --mount=type=secret,id=absent,required=true true\n', {}, check=False)
    assert missing.returncode == 1 and 'Dockerfile:2: secret "absent" is required' in missing.stderr
    assert_nothing_left(build.pallet)


def test_run_mount_owner_mode_and_target_options(build, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("tok")
    build("FROM busybox\n"
          "RUN --mount=type=cache,target=/c,id=owned,uid=1234,gid=5678,mode=0750 stat -c '%u %g %a' /c > /cache\n"
          "RUN --mount=type=secret,id=s,uid=42,gid=43,mode=0440 stat -c '%u %g %a' /run/secrets/s > /secret\n"
          "RUN --mount=type=secret,id=s,target=/etc/tok cat /etc/tok > /secret-target\n"
          "RUN --mount=type=tmpfs,target=/t,size=1m df -k /t | tail -1 | awk '{print $2}' > /tmpfs-size\n",
          {}, "-t", "mount-opts", "--secret", f"id=s,src={secret}")
    fs = build.filesystem("mount-opts")
    assert fs["cache"].data == b"1234 5678 750\n" and fs["secret"].data == b"42 43 440\n"
    assert fs["secret-target"].data == b"tok" and "etc/tok" not in fs
    assert fs["tmpfs-size"].data == b"1024\n"


def test_platform_and_proxy_args(build):
    dockerfile = ("FROM busybox\nARG TARGETPLATFORM\nARG BUILDPLATFORM\nARG TARGETARCH\n"
                  'RUN echo "$TARGETPLATFORM $BUILDPLATFORM $TARGETARCH ${HTTP_PROXY:-none}" > /seen\n')
    result = build(dockerfile, {}, "-t", "proxied", "--build-arg", "HTTP_PROXY=http://proxy.example:3128")
    host = build.config("busybox")["Architecture"]
    assert build.filesystem("proxied")["seen"].data == f"linux/{host} linux/{host} {host} " \
        "http://proxy.example:3128\n".encode()
    # a proxy arg reaches RUN without an ARG, and stays out of the history and the step key (Docker's rule)
    history = build.document(result.image_id)["history"]
    assert not any("proxy.example" in h["created_by"] for h in history)
    again = build(dockerfile, {}, "--build-arg", "HTTP_PROXY=http://other.example:3128")
    assert "#5 CACHED" in again.stderr


def test_cache_mount_seeded_from_a_stage_once(build):
    dockerfile = ('FROM busybox AS seed\nRUN mkdir -p /s && echo seeded > /s/file\n'
                  'FROM busybox\n'
                  'RUN --mount=type=cache,target=/c,id=seeded,from=seed,source=/s,mode=0700 '
                  'cat /c/file > /got && stat -c %a /c > /mode && echo more >> /c/file\n')
    build(dockerfile, {}, "-t", "seeded")
    fs = build.filesystem("seeded")
    assert fs["got"].data == b"seeded\n" and fs["mode"].data == b"700\n"
    # the seed is taken once: the second build sees what the first wrote into the cache
    build(dockerfile.replace("cat /c/file", "cat /c/file /c/file"), {}, "-t", "seeded2")
    assert build.filesystem("seeded2")["got"].data == b"seeded\nmore\nseeded\nmore\n"
    missing = build(dockerfile.replace("source=/s", "source=/nowhere").replace("id=seeded", "id=other"), {},
                    check=False)
    assert missing.returncode == 1 and "source /nowhere not found in seed" in missing.stderr
    assert_nothing_left(build.pallet)


def test_private_cache_mount_is_a_fresh_directory_while_the_shared_one_is_held(build):
    # Two parallel stages mount the same cache id: one waits until the other has written its mark.
    # With sharing=private the second gets its own empty directory, so it never sees the first's mark.
    wait = ('RUN --mount=type=cache,id=rv2,target=/rv touch /rv/{me} && i=0; '
            'until [ -e /rv/{other} ]; do i=$((i+1)); [ $i -lt 600 ] || exit 9; sleep 0.1; done\n')
    private = ('RUN --mount=type=cache,id=priv,target=/p,sharing=private touch /p/{me}; '
               '{hold}ls /p > /{me}\n')
    dockerfile = ('FROM busybox AS left\n' + wait.format(me="left", other="right") +
                  private.format(me="left", hold="sleep 2; ") +
                  'FROM busybox AS right\n' + wait.format(me="right", other="left") +
                  private.format(me="right", hold="sleep 2; ") +
                  'FROM scratch\nCOPY --from=left /left /\nCOPY --from=right /right /\n')
    build(dockerfile, {}, "-t", "private")
    fs = build.filesystem("private")
    listings = sorted([fs["left"].data, fs["right"].data])
    # whichever held the shared directory sees only its own mark; the other, a fresh directory, only its own
    assert listings == [b"left\n", b"right\n"]
    assert_nothing_left(build.pallet)


def test_locked_cache_mount_serialises_two_parallel_stages(build):
    # Both stages meet first (a shared cache mount), then take the same cache id with sharing=locked.
    # Inside, each waits up to 3 s for the other's mark: unserialised, both would see it.
    wait = ('RUN --mount=type=cache,id=rv-locked,target=/rv touch /rv/{me} && i=0; '
            'until [ -e /rv/{other} ]; do i=$((i+1)); [ $i -lt 600 ] || exit 9; sleep 0.1; done\n')
    locked = ('RUN --mount=type=cache,id=lk,target=/c,sharing=locked mkdir /c/in-{me} && i=0; '
              'until [ -e /c/in-{other} ] || [ $i -ge 30 ]; do i=$((i+1)); sleep 0.1; done; '
              '{{ [ -e /c/in-{other} ] && echo overlap || echo alone; ls /c; }} > /{me}; '
              'rmdir /c/in-{me} && touch /c/done-{me}\n')
    dockerfile = ''.join(f'FROM busybox AS {me}\n' + wait.format(me=me, other=other) + locked.format(me=me, other=other)
                         for me, other in (("left", "right"), ("right", "left")))
    dockerfile += 'FROM scratch\nCOPY --from=left /left /\nCOPY --from=right /right /\n'
    build(dockerfile, {}, "-t", "locked")
    fs = build.filesystem("locked")
    seen = sorted([fs["left"].data.decode().split(), fs["right"].data.decode().split()], key=len)
    # the first holder was alone; the second was alone too, and found the first's finished mark
    assert seen[0] in (["alone", "in-left"], ["alone", "in-right"])
    first = seen[0][1].partition("-")[2]
    second = "right" if first == "left" else "left"
    assert seen[1] == ["alone", f"done-{first}", f"in-{second}"]
    assert_nothing_left(build.pallet)


def test_run_network_none_has_only_loopback(build):
    build('FROM busybox\nRUN --network=none ls /sys/class/net > /nets\n', {}, "-t", "net")
    assert build.filesystem("net")["nets"].data == b"lo\n"


def test_dockerignore_exceptions_and_per_dockerfile_ignore(build):
    files = {"keep.txt": "k", "skip.log": "s", "logs/a.log": "a", "logs/important.log": "i", "deep/x/y.tmp": "t",
             "deep/x/z.txt": "z", ".dockerignore": "*.log\n**/*.tmp\nlogs\n!logs/important.log\n# comment\n"}
    build('FROM scratch\nCOPY . /ctx/\n', files, "-t", "ignored")
    names = {n for n in build.filesystem("ignored") if n.startswith("ctx/")}
    assert names == {"ctx/keep.txt", "ctx/logs", "ctx/logs/important.log", "ctx/deep", "ctx/deep/x",
                     "ctx/deep/x/z.txt", "ctx/Dockerfile", "ctx/.dockerignore"}
    copied = build('FROM scratch\nCOPY skip.log /\n', files, check=False)
    assert copied.returncode == 1 and '"skip.log": not found in the build context' in copied.stderr
    # BuildKit's NAME.dockerignore beside the Dockerfile wins over the context's .dockerignore
    context = build.tmp / f"ctx{build.count}"
    (context / "app.Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    (context / "app.Dockerfile.dockerignore").write_text("*\n!skip.log\n")
    result = build.pallet("build", "-q", "-t", "per-file", "-f", str(context / "app.Dockerfile"), str(context))
    assert result.returncode == 0, result.stderr
    assert {n for n in build.filesystem("per-file") if n.startswith("ctx/")} == {"ctx/skip.log"}
    # an ignored Dockerfile and .dockerignore still serve the build; only COPY leaves them out (Docker's rule)
    build('FROM scratch\nCOPY . /ctx/\n', {"a.txt": "a", ".dockerignore": "Dockerfile\n.dockerignore\n"},
          "-t", "self-ignored")
    assert {n for n in build.filesystem("self-ignored") if n.startswith("ctx/")} == {"ctx/a.txt"}


def test_outputs_oci_local_iidfile_and_quiet(build, tmp_path):
    out = tmp_path / "local"
    oci = tmp_path / "img.oci.tar"
    iid = tmp_path / "iid"
    result = build('FROM busybox\nRUN echo exported > /e\n', {}, "-q", "-o", f"type=local,dest={out}",
                   "-o", f"type=oci,dest={oci}", "--iidfile", str(iid))
    assert result.stdout.strip() == iid.read_text() and result.stdout.startswith("sha256:")
    assert result.stderr == ""
    assert (out / "e").read_text() == "exported\n" and (out / "bin" / "busybox").is_file()
    with tarfile.open(oci) as tar:
        assert "index.json" in tar.getnames() and "oci-layout" in tar.getnames()


def test_stdin_dockerfile_and_tar_context(build, tmp_path):
    result = build.pallet("build", "-q", "-t", "stdin-df", "-", input="FROM busybox\nLABEL from=stdin\n")
    assert result.returncode == 0, result.stderr
    assert build.config("stdin-df")["Config"]["Labels"] == {"from": "stdin"}
    context = tmp_path / "ctx.tar"
    with tarfile.open(context, "w") as tar:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY f /f\n"), ("f", b"from tar")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = build.pallet("build", "-q", "-t", "tar-ctx", str(context))
    assert result.returncode == 0, result.stderr
    assert build.filesystem("tar-ctx")["f"].data == b"from tar"
    df = tmp_path / "elsewhere.Dockerfile"
    df.write_text("FROM busybox\nCOPY f /g\n")
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / "f").write_text("ctx2")
    result = build.pallet("build", "-q", "-t", "f-flag", "-f", str(df), str(tmp_path / "c2"))
    assert result.returncode == 0, result.stderr
    assert build.filesystem("f-flag")["g"].data == b"ctx2"


def test_independent_stages_build_at_the_same_time(build):
    # Each stage waits (up to 60 s) for the other's mark in a shared cache mount: built one after the
    # other, the first would fail. No timing is measured.
    wait = ('RUN --mount=type=cache,id=rendezvous,target=/rv touch /rv/{me} && i=0; '
            'until [ -e /rv/{other} ]; do i=$((i+1)); [ $i -lt 600 ] || exit 9; sleep 0.1; done; '
            'echo {me} > /{me}\n')
    dockerfile = ('FROM busybox AS left\n' + wait.format(me="left", other="right") +
                  'FROM busybox AS right\n' + wait.format(me="right", other="left") +
                  'FROM scratch\nCOPY --from=left /left /\nCOPY --from=right /right /\n')
    build(dockerfile, {}, "-t", "parallel")
    fs = build.filesystem("parallel")
    assert fs["left"].data == b"left\n" and fs["right"].data == b"right\n"
    assert_nothing_left(build.pallet)


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server over a directory, for ADD of URLs."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_add_url_with_checksum(build, http_server):
    import hashlib

    root, base = http_server
    (root / "tool.sh").write_text("echo remote\n")
    digest = "sha256:" + hashlib.sha256(b"echo remote\n").hexdigest()
    build(f"FROM busybox\nADD --checksum={digest} {base}/tool.sh /opt/\nADD {base}/tool.sh /renamed.sh\n", {},
          "-t", "url")
    fs = build.filesystem("url")
    assert fs["opt/tool.sh"].data == b"echo remote\n" and stat.S_IMODE(fs["opt/tool.sh"].mode) == 0o600
    assert fs["renamed.sh"].data == b"echo remote\n"
    wrong = "sha256:" + "0" * 64
    result = build(f"FROM busybox\nADD --checksum={wrong} {base}/tool.sh /opt/\n", {}, check=False)
    assert result.returncode == 1 and "Dockerfile:2: ADD" in result.stderr and "digest mismatch" in result.stderr
    assert_nothing_left(build.pallet)
    # the checksum may come from a build variable, as BuildKit expands it; it is checked once expanded
    by_arg = build(f"FROM busybox\nARG SUM\nADD --checksum=$SUM {base}/tool.sh /arg/\n", {},
                   "--build-arg", f"SUM={digest}", "-t", "url-arg")
    assert by_arg.returncode == 0 and build.filesystem("url-arg")["arg/tool.sh"].data == b"echo remote\n"
    bad = build(f"FROM busybox\nARG SUM=md5:x\nADD --checksum=$SUM {base}/tool.sh /arg/\n", {}, check=False)
    assert bad.returncode == 1
    assert bad.error_lines[-1] == 'Error: Dockerfile:3: invalid checksum "md5:x" (sha256:<64 hex>)'
    assert_nothing_left(build.pallet)


def test_copy_parents_and_exclude(build):
    files = {"src/a/x.py": "x", "src/a/x.md": "doc", "src/b/y.py": "y", "top.md": "t"}
    build("FROM scratch\nCOPY --parents src/a/x.py src/b/y.py /keep/\nCOPY --exclude=**/*.md src /flat/\n", files,
          "-t", "parents")
    fs = build.filesystem("parents")
    assert {n for n in fs if n.startswith("keep/")} >= {"keep/src/a/x.py", "keep/src/b/y.py"}
    assert {n for n in fs if n.startswith("flat/") and "." in n} == {"flat/a/x.py", "flat/b/y.py"}


def test_dockerfile_from_stdin_with_a_directory_context(build, tmp_path):
    context = tmp_path / "dirctx"
    context.mkdir()
    (context / "f").write_text("from dir")
    result = build.pallet("build", "-q", "-t", "stdin-f", "-f", "-", str(context), input="FROM busybox\nCOPY f /f\n")
    assert result.returncode == 0, result.stderr
    assert build.filesystem("stdin-f")["f"].data == b"from dir"


def test_docker_media_types_and_the_image_build_alias(build, tmp_path):
    context = tmp_path / "alias"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo d > /d\n")
    result = build.pallet("image", "build", "-q", "--format", "docker", "-t", "docker-media", str(context))
    assert result.returncode == 0, result.stderr
    inspected = build.config("docker-media")
    assert inspected["Descriptor"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert build.pallet("run", "--rm", "docker-media", "cat", "/d", check=True).stdout == "d\n"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = b"FROM busybox\nLABEL stdin=tar\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-m", "pallet.kernel.cli", "--root", str(build.pallet.root), "--run-root",
                           str(build.pallet.run_root), "build", "-q", "-t", "stdin-tar", "-"], input=archive.getvalue(),
                          capture_output=True, cwd=str(REPO), env=build.pallet.env)
    assert proc.returncode == 0, proc.stderr
    assert build.config("stdin-tar")["Config"]["Labels"] == {"stdin": "tar"}
