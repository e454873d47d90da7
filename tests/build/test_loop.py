"""The everyday loop: edit → ``pallet build`` → ``pallet run``; and ``--pull`` taking a changed base
from a registry."""

from __future__ import annotations

from tests.build.conftest import assert_nothing_left, write_context
from tests.build.test_cache import cached_steps
from tests.registry.conftest import registry  # noqa: F401  (a docker-registry on loopback)

APP = ('FROM busybox AS build\n'
       'WORKDIR /src\n'
       'COPY greeting.txt .\n'
       'RUN printf \'#!/bin/sh\\necho "$(cat /etc/greeting) from $(pwd) as $(id -un), $GREETED"\\n\' > app && '
       'chmod 755 app\n'
       'FROM busybox\n'
       'ENV GREETED=everyone\n'
       'COPY --from=build /src/app /usr/local/bin/app\n'
       'COPY --from=build /src/greeting.txt /etc/greeting\n'
       'WORKDIR /home\n'
       'USER nobody\n'
       'CMD ["app"]\n')


def test_build_then_run_the_cmd_then_edit_and_rebuild(build):
    context = write_context(build.tmp / "app", {"Dockerfile": APP, "greeting.txt": "hello\n"})
    built = build.pallet("build", "--progress", "plain", "-t", "app", str(context))
    assert built.returncode == 0, built.stderr
    assert build.pallet("run", "--rm", "app", check=True).stdout == "hello from /home as nobody, everyone\n"
    # run's own command and env replace the image's, as for any image
    assert build.pallet("run", "--rm", "-e", "GREETED=you", "app", check=True).stdout == \
        "hello from /home as nobody, you\n"
    assert build.pallet("run", "--rm", "app", "id", "-u", check=True).stdout == "65534\n"
    # edit → build → run: the change shows, and only the steps from the changed file on ran again
    (context / "greeting.txt").write_text("bonjour\n")
    rebuilt = build.pallet("build", "--progress", "plain", "-t", "app", str(context))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert cached_steps(rebuilt.stderr) == {
        "COPY greeting.txt .": False,
        "RUN printf '#!/bin/sh\\necho \"$(cat /etc/greeting) from $(pwd) as $(id -un), $GREETED\"\\n' > app "
        "&& chmod 755 app": False,
        "COPY --from=build /src/app /usr/local/bin/app": True,   # the same script: its layer is reused
        "COPY --from=build /src/greeting.txt /etc/greeting": False}
    assert build.pallet("run", "--rm", "app", check=True).stdout == "bonjour from /home as nobody, everyone\n"
    # the old image lost its tag to the new one, as Docker's
    images = build.pallet("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout.split()
    assert images.count("app:latest") == 1 and images.count("<none>:<none>") == 1
    assert_nothing_left(build.pallet)


def test_pull_takes_a_changed_base_from_the_registry(build, registry):  # noqa: F811
    base = f"{registry.host}/lib/base:1"
    build.pallet("push", "busybox", base, check=True)
    dockerfile = f"FROM {base}\nRUN (cat /version 2>/dev/null || echo none) > /seen\n"
    build(dockerfile, {}, "-t", "child1")
    assert build.filesystem("child1")["seen"].data == b"none\n"
    # the base changes in the registry: a new image pushed under the same tag
    build("FROM busybox\nRUN echo v2 > /version\n", {}, "-t", "base-v2")
    build.pallet("push", "base-v2", base, check=True)
    build.pallet("rmi", "base-v2", check=True)
    pulls_before = len(registry.requests("GET /v2/lib/base/manifests/1"))
    # without --pull the local copy of the tag is used (and the step is cached)
    stale = build(dockerfile, {}, "-t", "child2")
    assert all(cached_steps(stale.stderr).values())
    assert build.filesystem("child2")["seen"].data == b"none\n"
    assert len(registry.requests("GET /v2/lib/base/manifests/1")) == pulls_before
    # --pull asks the registry again, gets the new base, and the RUN on it runs again
    fresh = build(dockerfile, {}, "-t", "child3", "--pull")
    assert not any(cached_steps(fresh.stderr).values())
    assert build.filesystem("child3")["seen"].data == b"v2\n"
    assert len(registry.requests("GET /v2/lib/base/manifests/1")) > pulls_before
    # the local tag now names the new base
    assert build.filesystem(base)["version"].data == b"v2\n"
    # --pull when the base did not change: asked again, nothing re-runs
    again = build(dockerfile, {}, "--pull")
    assert all(cached_steps(again.stderr).values())
    assert_nothing_left(build.pallet)


def test_pull_of_an_unreachable_base_fails_on_the_from_line(build, registry):  # noqa: F811
    base = f"{registry.host}/lib/absent:1"
    result = build(f"# a comment\nFROM {base}\n", {}, "--pull", check=False)
    assert result.returncode == 1
    assert result.error_lines[-1].startswith(f"Error: Dockerfile:2: {base}: ")
    assert "not found" in result.error_lines[-1]
