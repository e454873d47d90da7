"""``POST /build``: ``docker build`` (the classic builder path) and docker-py's build from a file object."""

from __future__ import annotations

import io
import tarfile


def test_docker_build_with_a_tar_context_and_build_args(api, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text('FROM busybox\nARG WHO=nobody\nCOPY hello.txt /hello.txt\n'
                                        'RUN echo built-by-$WHO > /who\nCMD ["cat", "/hello.txt", "/who"]\n')
    (context / "hello.txt").write_text("hello-from-context\n")
    result = api.docker("build", "-t", "built:1", "--build-arg", "WHO=api", str(context))
    assert result.returncode == 0, result.stderr
    assert "Successfully tagged built:1" in result.stdout
    run = api.docker("run", "--rm", "built:1")
    assert (run.returncode, run.stdout) == (0, "hello-from-context\nbuilt-by-api\n"), run.stderr
    (context / "Dockerfile.bad").write_text("FROM busybox\nRUN exit 3\n")
    bad = api.docker("build", "-f", str(context / "Dockerfile.bad"), str(context))
    assert bad.returncode == 1 and "returned a non-zero code: 3" in bad.stderr


def test_docker_py_builds_from_a_file_object_and_reports_the_id(api):
    client = api.client()
    dockerfile = io.BytesIO(b'FROM busybox\nLABEL made=by-py\nCMD ["echo", "from-py"]\n')
    image, logs = client.images.build(fileobj=dockerfile, tag="pybuilt:1", labels={"extra": "yes"})
    assert image.labels == {"made": "by-py", "extra": "yes"}
    assert "pybuilt:1" in image.tags
    assert any("Successfully built" in entry.get("stream", "") for entry in logs)
    assert client.containers.run("pybuilt:1", remove=True) == b"from-py\n"


def test_extra_hosts_reach_the_run_steps_from_the_cli_and_docker_py(api, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN grep example /etc/hosts > /seen\nCMD [\"cat\", \"/seen\"]\n")
    result = api.docker("build", "-t", "hosts:cli", "--add-host", "db.example:10.1.2.3",
                        "--add-host", "v6.example:[2001:db8::7]", str(context))
    assert result.returncode == 0, result.stderr
    run = api.docker("run", "--rm", "hosts:cli")
    assert run.stdout.splitlines() == ["10.1.2.3\tdb.example", "2001:db8::7\tv6.example"], run.stderr
    client = api.client()
    client.images.build(path=str(context), tag="hosts:py", extra_hosts={"py.example": "10.9.8.7"})
    assert client.containers.run("hosts:py", remove=True) == b"10.9.8.7\tpy.example\n"
    # the docker CLI checks the flag itself; a raw request with a bad one is a 400 before anything runs
    status, _headers, body = api.request("POST", "/build?t=hosts:bad&extrahosts=nocolon", body=context_tar(context),
                                         headers={"Content-Type": "application/x-tar"})
    assert status == 400
    assert body == {"message": 'invalid argument "nocolon" for "--add-host" flag: bad format for add-host: "nocolon"'}
    assert "hosts:bad" not in api.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout


def context_tar(directory) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


def test_quiet_build_streams_only_the_image_id_and_the_steps_when_it_fails(api, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo quiet > /q\n")
    result = api.docker("build", "-q", "-t", "quiet:1", str(context))
    assert result.returncode == 0, result.stderr
    image_id = api.docker("image", "inspect", "--format", "{{.Id}}", "quiet:1").stdout.strip()
    assert result.stdout == image_id + "\n"    # the docker CLI prints what the server streamed: the id alone
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo why-it-failed && exit 4\n")
    failed = api.docker("build", "-q", str(context))
    assert failed.returncode == 1 and failed.stdout == ""
    assert "why-it-failed" in failed.stderr and "returned a non-zero code: 4" in failed.stderr


def test_cache_from_platform_and_their_bad_values(api, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo once > /once\nLABEL done=yes\n")
    assert api.docker("build", "-t", "origin:1", str(context)).returncode == 0
    assert api.docker("builder", "prune", "-af").returncode == 0          # the image alone holds the steps now
    again = api.docker("build", "--cache-from", "origin:1", "--platform", "linux/amd64", str(context))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(" ---> Using cache") == 1                   # the RUN, from the image's layers
    foreign = api.docker("build", "--platform", "linux/riscv64", str(context))
    assert foreign.returncode == 1
    assert foreign.stderr.strip().splitlines()[-1] == ("Error response from daemon: platform linux/riscv64: only the "
                                                       "host's platform can be built here")
    for query, message in (("platform=linux", 'invalid platform "linux": expected OS/ARCH[/VARIANT]'),
                           ("cachefrom=%7B%7D", "invalid cachefrom: expected a JSON array"),
                           ("cachefrom=%5B1%5D", "invalid cachefrom: expected a JSON array of image references")):
        status, _headers, body = api.request("POST", f"/build?{query}", body=context_tar(context),
                                             headers={"Content-Type": "application/x-tar"})
        assert (status, body) == (400, {"message": message})


def test_run_steps_get_the_builds_shm_size_and_limits_and_squash_is_refused(api):
    client = api.client()
    dockerfile = io.BytesIO(b"FROM busybox\n"
                            b"RUN df -k /dev/shm | tail -1 | awk '{print $2}' > /shm && "
                            b"cat /sys/fs/cgroup/memory/memory.limit_in_bytes > /mem && "
                            b"cat /sys/fs/cgroup/cpu/cpu.shares > /shares\n"
                            b'CMD ["cat", "/shm", "/mem", "/shares"]\n')
    client.images.build(fileobj=dockerfile, tag="limited:1", shmsize=128 << 20,
                        container_limits={"memory": 64 << 20, "cpushares": 512})
    assert client.containers.run("limited:1", remove=True).decode().split() == ["131072", str(64 << 20), "512"]
    import docker

    dockerfile.seek(0)
    try:
        client.images.build(fileobj=dockerfile, tag="squashed:1", squash=True)
        raise AssertionError("a squash build was accepted")
    except docker.errors.APIError as exc:
        assert exc.status_code == 400 and exc.explanation == "squash is only supported with experimental mode"
    status, _headers, body = api.request("POST", "/build?shmsize=lots", body=b"",
                                         headers={"Content-Type": "application/x-tar"})
    assert (status, body) == (400, {"message": "invalid shmsize: lots is not an integer"})
