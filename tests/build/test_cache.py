"""The build cache and reproducible output: which steps re-run after which change; same digest twice."""

from __future__ import annotations

import re

from tests.build.conftest import Builder, write_context
from tests.conftest import Pallet

DOCKERFILE = ('FROM busybox\n'
              'RUN echo one > /one\n'
              'COPY a.txt /a.txt\n'
              'RUN cat /a.txt > /copy-of-a\n'
              'COPY b.txt /b.txt\n'
              'RUN echo done > /done\n')


def cached_steps(stderr: str) -> dict[str, bool]:
    """``{"RUN echo one > /one": True, …}``: whether each layer step was served from the cache."""
    names = dict(re.findall(r"^#(\d+) \[[^\]]+\] (.*)$", stderr, re.M))
    cached = set(re.findall(r"^#(\d+) CACHED$", stderr, re.M))
    return {text: number in cached for number, text in names.items() if text.startswith(("RUN", "COPY"))}


def test_only_the_steps_after_a_changed_file_rerun(pallet, tmp_path):
    pallet("image", "build-busybox", "-q", check=True)
    context = write_context(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "a.txt": "a1", "b.txt": "b1",
                                               "unused.txt": "u1"})

    def build(*args):
        result = pallet("build", "--progress", "plain", *args, str(context))
        assert result.returncode == 0, result.stderr
        return cached_steps(result.stderr)

    assert not any(build().values())
    assert all(build().values())                              # persistent: a new process reuses everything
    (context / "unused.txt").write_text("u2")                 # a file no step uses changes nothing
    assert all(build().values())
    (context / "b.txt").write_text("b2")
    assert build() == {"RUN echo one > /one": True, "COPY a.txt /a.txt": True,
                       "RUN cat /a.txt > /copy-of-a": True, "COPY b.txt /b.txt": False,
                       "RUN echo done > /done": False}
    (context / "a.txt").write_text("a2")
    assert build() == {"RUN echo one > /one": True, "COPY a.txt /a.txt": False,
                       "RUN cat /a.txt > /copy-of-a": False, "COPY b.txt /b.txt": False,
                       "RUN echo done > /done": False}
    (context / "a.txt").chmod(0o600)                          # metadata counts, not only content
    assert build()["COPY a.txt /a.txt"] is False
    assert not any(build("--no-cache").values())
    assert all(build().values())


def test_build_args_in_scope_key_the_run_steps(build):
    dockerfile = 'FROM busybox\nARG V=1\nRUN echo $V > /v\n'
    build(dockerfile, {}, "-t", "argv")
    again = build(dockerfile, {}, "--build-arg", "V=1")
    assert all(cached_steps(again.stderr).values())
    changed = build(dockerfile, {}, "--build-arg", "V=2", "-t", "argv2")
    assert not any(cached_steps(changed.stderr).values())
    assert build.filesystem("argv2")["v"].data == b"2\n"


def test_no_cache_filter_reruns_one_stage(build):
    dockerfile = ('FROM busybox AS first\nRUN echo 1 > /f\nFROM busybox AS second\nRUN echo 2 > /s\n'
                  'COPY --from=first /f /f\n')
    build(dockerfile, {})
    result = build(dockerfile, {}, "--no-cache-filter", "second")
    assert cached_steps(result.stderr) == {"RUN echo 1 > /f": True, "RUN echo 2 > /s": False,
                                           "COPY --from=first /f /f": False}


def test_copy_from_a_stage_is_keyed_by_the_files_it_takes(build):
    # the stage re-runs for another V, but /out stays the same: the COPY and what follows stay cached
    dockerfile = ('FROM busybox AS gen\nARG V=1\nARG OUT=same\nRUN echo $OUT > /out && echo $V > /other\n'
                  'FROM busybox\nCOPY --from=gen /out /out\nRUN cat /out > /copy\n')
    build(dockerfile, {})
    steps = cached_steps(build(dockerfile, {}, "--build-arg", "V=2").stderr)
    assert steps == {"RUN echo $OUT > /out && echo $V > /other": False, "COPY --from=gen /out /out": True,
                     "RUN cat /out > /copy": True}
    steps = cached_steps(build(dockerfile, {}, "--build-arg", "OUT=changed", "-t", "changed").stderr)
    assert steps == {"RUN echo $OUT > /out && echo $V > /other": False, "COPY --from=gen /out /out": False,
                     "RUN cat /out > /copy": False}
    assert build.filesystem("changed")["copy"].data == b"changed\n"


def test_builder_prune_drops_the_cache_and_system_df_shows_it(build):
    build('FROM busybox\nRUN echo x > /x\n', {})
    df = build.pallet("system", "df", check=True).stdout
    assert "Build Cache" in df
    pruned = build.pallet("builder", "prune", "-f", "--all", check=True).stdout
    assert re.fullmatch(r"Deleted build cache objects:\n[0-9a-f]{25}\n\nTotal reclaimed space: \S+\n", pruned)
    again = build('FROM busybox\nRUN echo x > /x\n', {})
    assert not any(cached_steps(again.stderr).values())
    kept = build.pallet("builder", "prune", "-f", check=True).stdout  # without --all: an image still uses it
    assert kept == "Total reclaimed space: 0B\n"


def _entry_file(pallet, text: str):
    """The cache entry file of the step whose instruction contains ``text``."""
    import json

    found = [p for p in (pallet.root / "build" / "cache").iterdir() if text in json.loads(p.read_text())["description"]]
    assert len(found) == 1, found
    return found[0]


def test_builder_prune_until_drops_only_what_was_unused_for_longer(build):
    import os
    import time

    old, new = 'FROM busybox\nRUN echo old > /o\n', 'FROM busybox\nRUN echo new > /n\n'
    build(old, {})
    build(new, {})
    stale = _entry_file(build.pallet, "echo old")
    two_days_ago = time.time() - 48 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))  # last used two days ago (a cache hit touches the entry)
    pruned = build.pallet("builder", "prune", "-f", "--all", "--filter", "until=24h", check=True).stdout
    assert pruned.splitlines()[:3] == ["Deleted build cache objects:", stale.name[:25], ""]
    assert not any(cached_steps(build(old, {}).stderr).values())   # its step runs again
    assert all(cached_steps(build(new, {}).stderr).values())       # the other stayed
    # a hit counts as a use: the entry just rebuilt survives until=1h30m, the aged one does not
    os.utime(_entry_file(build.pallet, "echo new"), (two_days_ago, two_days_ago))
    build(new, {})
    kept = build.pallet("builder", "prune", "-f", "--all", "--filter", "until=1h30m", check=True).stdout
    assert kept == "Total reclaimed space: 0B\n"


def test_builder_prune_asks_first_and_refuses_bad_filters(build):
    build('FROM busybox\nRUN echo x > /x\n', {})
    declined = build.pallet("builder", "prune", "--all", input="n\n")
    assert declined.returncode == 0
    assert declined.stdout.startswith("WARNING! This will remove all build cache.\nAre you sure you want to continue?")
    assert "Deleted" not in declined.stdout and len(list((build.pallet.root / "build" / "cache").iterdir())) == 1
    for bad, message in (("until=soon", 'Error: invalid duration "soon" for --filter until (e.g. 30s, 1m30s, 500ms)'),
                         ("label=x", 'Error: invalid filter "label=x" (only until=DURATION is supported)')):
        result = build.pallet("builder", "prune", "-f", "--filter", bad)
        assert result.returncode == 2 and result.error_lines == [message]
    assert len(list((build.pallet.root / "build" / "cache").iterdir())) == 1


REPRODUCIBLE = ('FROM busybox AS build\nRUN echo made > /made && mkdir -p /srv && touch /srv/stamp\n'
                'FROM busybox\nCOPY --from=build /made /srv /out/\nCOPY a.txt /a.txt\nENV X=1\nCMD ["cat", "/a.txt"]\n')


def test_two_roots_give_the_same_digest_with_source_date_epoch(tmp_path):
    ids = []
    # the first from the environment, the second from the flag: the same epoch either way
    for name, flag, env in (("one", [], {"SOURCE_DATE_EPOCH": "1700000000"}),
                            ("two", ["--source-date-epoch", "1700000000"], {})):
        (tmp_path / name).mkdir()
        runner = Pallet(tmp_path / name / "root", tmp_path / name / "run")
        runner("image", "build-busybox", "-q", check=True)
        context = write_context(tmp_path / name / "ctx", {"Dockerfile": REPRODUCIBLE, "a.txt": "same"})
        result = runner("build", "-q", "--no-cache", *flag, str(context), env=env)
        assert result.returncode == 0, result.stderr
        ids.append(result.stdout.strip())
        doc = Builder(runner, tmp_path).document(ids[-1])
        assert doc["created"] == "2023-11-14T22:13:20Z"
        assert {h["created"] for h in doc["history"][1:]} == {"2023-11-14T22:13:20Z"}
    assert ids[0] == ids[1]


def test_cache_from_an_image_built_elsewhere(tmp_path):
    dockerfile = 'FROM busybox\nRUN echo made > /m\nCOPY a.txt /a\nRUN cat /a > /b\n'
    runners = []
    for name in ("origin", "fresh"):
        (tmp_path / name).mkdir()
        runner = Pallet(tmp_path / name / "root", tmp_path / name / "run")
        runner("image", "build-busybox", "-q", check=True)
        runners.append(runner)
    origin, fresh = runners
    context = write_context(tmp_path / "ctx", {"Dockerfile": dockerfile, "a.txt": "A"})
    origin("build", "-q", "-t", "cached:1", str(context), check=True)
    archive = tmp_path / "cached.oci.tar"
    origin("save", "--format", "oci-archive", "-o", str(archive), "cached:1", check=True)
    fresh("load", "-i", str(archive), check=True)
    result = fresh("build", "--progress", "plain", "--cache-from", "cached:1", str(context))
    assert result.returncode == 0, result.stderr
    assert all(cached_steps(result.stderr).values())
    (context / "a.txt").write_text("changed")
    result = fresh("build", "--progress", "plain", "--cache-from", "cached:1", str(context))
    assert cached_steps(result.stderr) == {"RUN echo made > /m": True, "COPY a.txt /a": False, "RUN cat /a > /b": False}


def test_without_source_date_epoch_only_the_created_fields_differ(tmp_path):
    docs = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        runner = Pallet(tmp_path / name / "root", tmp_path / name / "run")
        runner("image", "build-busybox", "-q", check=True)
        context = write_context(tmp_path / name / "ctx", {"Dockerfile": REPRODUCIBLE, "a.txt": "same"})
        result = runner("build", "-q", str(context))
        assert result.returncode == 0, result.stderr
        docs.append(Builder(runner, tmp_path).document(result.stdout.strip()))

    def without_created(doc):
        return {**doc, "created": None, "history": [{**h, "created": None} for h in doc["history"]]}

    assert docs[0]["created"] != docs[1]["created"]
    assert without_created(docs[0]) == without_created(docs[1])  # the layers (diff ids) too


def test_copy_link_stays_cached_when_the_base_changes(pallet, tmp_path):
    pallet("image", "build-busybox", "-q", check=True)
    builder = Builder(pallet, tmp_path)
    builder("FROM busybox\nRUN echo 1 > /base\n", {}, "-t", "base:1")
    builder("FROM busybox\nRUN echo 2 > /base\n", {}, "-t", "base:2")
    steps = "COPY --link app.txt /opt/app/\nCOPY plain.txt /plain.txt\nRUN cat /base /opt/app/app.txt > /seen\n"
    files = {"app.txt": "app", "plain.txt": "plain"}
    first = builder("FROM base:1\n" + steps, files, "-t", "linked:1")
    assert not any(cached_steps(first.stderr).values())
    second = builder("FROM base:2\n" + steps, files, "-t", "linked:2")
    # the --link layer is independent of the base; what follows it is not
    assert cached_steps(second.stderr) == {"COPY --link app.txt /opt/app/": True, "COPY plain.txt /plain.txt": False,
                                           "RUN cat /base /opt/app/app.txt > /seen": False}
    fs = builder.filesystem("linked:2")
    assert fs["seen"].data == b"2\napp" and fs["opt/app/app.txt"].data == b"app"
    # the same layer blob under both bases
    one, two = (builder.config(ref)["RootFS"]["Layers"] for ref in ("linked:1", "linked:2"))
    base_layers = len(builder.config("base:1")["RootFS"]["Layers"])
    assert one[base_layers] == two[base_layers]


def test_system_prune_lists_the_build_cache_it_deleted_as_docker_does(build):
    build('FROM busybox\nRUN echo x > /x\nRUN echo y > /y\n', {})
    keys = sorted(p.name[:25] for p in (build.pallet.root / "build" / "cache").iterdir())
    assert len(keys) == 2
    pruned = build.pallet("system", "prune", "-f", "--all", check=True).stdout
    block = re.search(r"Deleted build cache objects:\n((?:[0-9a-f]{25}\n)+)\nTotal reclaimed space: \S+\n\Z", pruned)
    assert block, pruned
    assert sorted(block.group(1).split()) == keys
    assert not list((build.pallet.root / "build" / "cache").iterdir())


def _layer_records(pallet) -> set[str]:
    layers = pallet.root / "images" / "records" / "layers"
    return {p.name for p in layers.iterdir()} if layers.is_dir() else set()


def _driver_layers(pallet) -> set[str]:
    home = pallet.root / "overlay2"
    return {p.name for p in home.iterdir() if len(p.name) == 64} if home.is_dir() else set()


def test_the_unpacked_layers_of_cached_steps_are_build_cache_not_debris(build):
    """A RUN over a cached stage unpacks its layers: they are the build cache's (kept for the next
    build, not shown or swept as debris) until ``builder prune`` drops their entries."""
    build.pallet("system", "prune", "-f", check=True)      # debris of the busybox import, if any
    images_only, driver_before = _layer_records(build.pallet), _driver_layers(build.pallet)
    dockerfile = ("FROM busybox AS stage\nRUN echo staged > /s\nRUN cat /s > /t\n"
                  "FROM busybox\nCOPY --from=stage /t /t\n")
    first = build(dockerfile, {}, "-t", "final").image_id
    stage_layers = _layer_records(build.pallet) - images_only
    assert len(stage_layers) == 3   # the stage's two RUN layers, the final COPY's
    df = {line.split()[0]: line.split() for line in build.pallet("system", "df", check=True).stdout.splitlines()}
    assert df["Debris"][1:3] == ["0", "0"]
    assert "no problems found" in build.pallet("system", "check", check=True).stdout
    build.pallet("system", "check", "--repair", check=True)
    assert _layer_records(build.pallet) - images_only == stage_layers   # --repair keeps them too
    again = build(dockerfile, {}, "-t", "final")
    assert all(cached_steps(again.stderr).values())
    assert again.image_id != first   # its config's date: the first is now dangling
    build.pallet("rmi", "final", first, check=True)   # the COPY layer is a cache entry's as well: it stays
    assert _layer_records(build.pallet) - images_only == stage_layers
    pruned = build.pallet("builder", "prune", "-f", "--all", check=True).stdout
    assert pruned.startswith("Deleted build cache objects:\n")
    assert _layer_records(build.pallet) == images_only   # their unpacked layers went with the entries
    assert _driver_layers(build.pallet) == driver_before
