"""``POST /build``: ``docker build`` (the classic builder path) and docker-py's build from a file object."""

from __future__ import annotations

import io


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
