"""Disk use and prune through the Engine API: ``docker system df``, docker-py's ``df()``, ``docker * prune``."""

from __future__ import annotations

from tests.containers.conftest import container_ids


def _rows(text: str) -> dict[str, list[str]]:
    """``docker system df``'s table: TYPE -> the other columns (the two-word types joined)."""
    rows = {}
    for line in text.splitlines()[1:]:
        line = line.replace("Local Volumes", "Local-Volumes").replace("Build Cache", "Build-Cache")
        kind, *rest = line.split()
        rows[kind] = rest
    return rows


def test_docker_system_df_and_docker_py_df_count_images_containers_and_volumes(api):
    assert api.docker("volume", "create", "spc-data").returncode == 0
    created = api.docker("create", "--name", "spc-idle", "-v", "spc-data:/data", "busybox", "true")
    assert created.returncode == 0, created.stderr
    running = api.docker("run", "-d", "--name", "spc-busy", "busybox", "sh", "-c", "echo x > /f; exec sleep 100")
    assert running.returncode == 0, running.stderr
    result = api.docker("system", "df")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:5] == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = _rows(result.stdout)
    assert rows["Images"][:2] == ["1", "1"]
    assert rows["Containers"][:2] == ["2", "1"]
    assert rows["Local-Volumes"][:2] == ["1", "1"]
    assert rows["Build-Cache"][:2] == ["0", "0"]
    verbose = api.docker("system", "df", "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "spc-data" in verbose.stdout and "spc-busy" in verbose.stdout

    usage = api.client().df()
    assert set(usage) == {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}
    (image,) = usage["Images"]
    assert image["RepoTags"] == ["busybox:latest"] and image["Containers"] == 2
    assert usage["LayersSize"] == image["Size"] > 0
    by_name = {c["Names"][0]: c for c in usage["Containers"]}
    assert by_name["/spc-busy"]["State"] == "running" and by_name["/spc-busy"]["SizeRw"] > 0
    assert by_name["/spc-idle"]["SizeRootFs"] >= image["Size"]
    (volume,) = usage["Volumes"]
    assert volume["Name"] == "spc-data" and volume["UsageData"]["RefCount"] == 1
    only = api.request("GET", "/system/df?type=volume")
    assert only[0] == 200 and set(only[2]) == {"Volumes"}
    assert api.request("GET", "/system/df?type=bogus")[0] == 400
    assert api.docker("rm", "-f", "spc-busy", "spc-idle").returncode == 0
    assert api.docker("volume", "rm", "spc-data").returncode == 0


def test_container_prune_removes_stopped_containers_and_keeps_running_and_labelled_out_ones(api):
    for name, label in (("spc-a", "keep=no"), ("spc-b", "keep=yes")):
        assert api.docker("create", "--name", name, "--label", label, "busybox", "true").returncode == 0
    assert api.docker("run", "-d", "--name", "spc-up", "busybox", "sleep", "100").returncode == 0
    ids = {n: api.docker("inspect", "-f", "{{.Id}}", n).stdout.strip() for n in ("spc-a", "spc-b", "spc-up")}
    pruned = api.docker("container", "prune", "-f", "--filter", "label=keep=no")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith(f"Deleted Containers:\n{ids['spc-a']}\n")
    assert "Total reclaimed space:" in pruned.stdout
    result = api.client().containers.prune()
    assert result["ContainersDeleted"] == [ids["spc-b"]] and isinstance(result["SpaceReclaimed"], int)
    assert container_ids(api.pallet.root) == [ids["spc-up"]]
    bad = api.request("POST", "/containers/prune?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D")
    assert bad[0] == 400 and bad[2] == {"message": "invalid filter 'bogus'"}
    assert api.docker("rm", "-f", "spc-up").returncode == 0


def test_image_prune_takes_dangling_images_and_with_all_every_unused_one(api):
    assert api.docker("run", "--name", "spc-src", "busybox", "sh", "-c", "echo x > /made").returncode == 0
    committed = api.pallet("commit", "spc-src", check=True).stdout.strip()  # no name: a dangling image
    assert api.docker("tag", "busybox", "spc-other:1").returncode == 0
    pruned = api.docker("image", "prune", "-f")
    assert pruned.returncode == 0, pruned.stderr
    assert f"deleted: {committed}" in pruned.stdout and "busybox" not in pruned.stdout
    assert api.docker("images", "-q", "--no-trunc").stdout.split() != []
    kept = api.docker("image", "prune", "-af")  # spc-src still uses busybox
    assert kept.returncode == 0 and "busybox" not in kept.stdout, kept.stdout
    assert api.docker("rm", "spc-src").returncode == 0
    result = api.client().images.prune(filters={"dangling": False})
    steps = result["ImagesDeleted"]
    assert {"Untagged": "busybox:latest"} in steps and {"Untagged": "spc-other:1"} in steps
    assert any("Deleted" in step for step in steps) and result["SpaceReclaimed"] > 0
    assert api.docker("images", "-q").stdout == ""


def test_volume_and_network_prune_take_what_no_container_uses(api):
    assert api.docker("volume", "create", "spc-named").returncode == 0
    assert api.docker("volume", "create", "spc-used").returncode == 0
    assert api.docker("create", "--name", "spc-user", "-v", "spc-used:/u", "-v", "/anon", "busybox", "true").returncode == 0
    anonymous = [m["Name"] for m in api.client().containers.get("spc-user").attrs["Mounts"] if m["Destination"] == "/anon"]
    assert api.docker("rm", "spc-user").returncode == 0  # without -v: its anonymous volume stays behind
    assert api.docker("create", "--name", "spc-user2", "-v", "spc-used:/u", "busybox", "true").returncode == 0
    pruned = api.docker("volume", "prune", "-f")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("Deleted Volumes:\n" + "".join(f"{n}\n" for n in anonymous))
    every = api.client().volumes.prune(filters={"all": "true"})
    assert every["VolumesDeleted"] == ["spc-named"]
    assert sorted(api.docker("volume", "ls", "-q").stdout.split()) == ["spc-used"]

    assert api.docker("network", "create", "spc-net").returncode == 0
    assert api.docker("network", "create", "spc-inuse").returncode == 0
    assert api.docker("run", "-d", "--name", "spc-on", "--network", "spc-inuse", "busybox", "sleep", "100").returncode == 0
    nets = api.docker("network", "prune", "-f")
    assert nets.returncode == 0, nets.stderr
    assert nets.stdout == "Deleted Networks:\nspc-net\n\n"
    assert api.client().networks.prune() == {"NetworksDeleted": []}
    assert api.docker("rm", "-f", "spc-on", "spc-user2").returncode == 0
    assert api.client().networks.prune()["NetworksDeleted"] == ["spc-inuse"]
    assert api.docker("volume", "rm", "spc-used").returncode == 0


def test_build_prune_and_system_prune(api, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo cached > /cached\n")
    built = api.docker("build", "-q", "-t", "spc-built", str(context), timeout=120)
    assert built.returncode == 0, built.stderr
    assert _rows(api.docker("system", "df").stdout)["Build-Cache"][0] == "1"
    kept = api.client().api.prune_builds()
    assert kept == {"CachesDeleted": [], "SpaceReclaimed": 0}  # spc-built holds the layer
    assert api.docker("rmi", "spc-built").returncode == 0
    assert api.docker("create", "--name", "spc-stopped", "busybox", "true").returncode == 0
    result = api.docker("system", "prune", "-f")
    assert result.returncode == 0, result.stderr
    assert "Deleted Containers:" in result.stdout and "Deleted build cache objects:" in result.stdout
    assert _rows(api.docker("system", "df").stdout)["Build-Cache"][0] == "0"
    assert container_ids(api.pallet.root) == []
