"""Container lifecycle shared by the CLI and the monitor: create, prepare a bundle, start, finish, remove."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel import cgroups, events, faults, procs
from pallet.kernel.containers import ContainerRecord, ContainerStore, new_container_id
from pallet.kernel.errors import Conflict, NotFound, PalletError
from pallet.kernel.fsutil import atomic_write_json

MOUNTED_MARK = "rootfs.mounted"   # in the run dir: this container holds one storage.get()
EXIT_FILE = "exit-code"
STARTING_MARK = "starting"        # in the run dir: flocked by whoever is starting the container
LOCAL_MODES = ("none", "host")   # network modes that need no network plugin
           # in the run dir: written by the log pump the moment the process is reaped


@dataclass
class CreateRequest:
    """What ``create``/``run`` were asked for, already parsed by :mod:`pallet.kernel.runopts`."""

    image: str
    command: list[str] = field(default_factory=list)
    name: str = ""
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    stdin_open: bool = False
    attach: list[str] = field(default_factory=list)  # -a: "stdin", "stdout", "stderr"; empty = Docker's default
    labels: dict = field(default_factory=dict)
    network: str = ""
    port_specs: list[str] = field(default_factory=list)
    publish_all: bool = False
    exposed: dict = field(default_factory=dict)      # --expose, ExposedPorts keys ("80/tcp")
    pull: str = "missing"            # Docker's --pull: missing | always | never
    quiet: bool = False              # -q: no pull output
    platform: str = ""               # --platform os[/arch[/variant]]: the image must match
    healthcheck: dict | None = None  # Docker's HealthConfig; {"Test": ["NONE"]} disables the image's
    host_config: dict = field(default_factory=dict)
    extra_networks: dict = field(default_factory=dict)  # further networks: name -> Docker's EndpointSettings


def image_store(engine):
    from pallet.kernel.images import ImageStore

    return ImageStore(engine)


def resolve_image(engine, ref: str, policy: str = "missing", quiet: bool = False, platform: str = "",
                  credentials: dict | None = None):
    """The image for ``ref``, pulled first as Docker's ``--pull`` policy says (missing: only when absent);
    ``credentials`` (host -> (user, password)) are used for that pull before the auth files."""
    from pallet.kernel.errors import NotFound

    engine.storage  # noqa: B018 - opened first: a driver that cannot work here fails before any pull
    store = image_store(engine)
    if policy != "always":
        try:
            record = store.resolve(ref)
        except NotFound:
            if policy == "never":
                raise
        else:
            if record.repo_digests:   # pulled from a registry: the trust policy in force now, on the signatures kept
                from pallet.kernel.trust.enforce import admit_stored
                admit_stored(engine, record, ref)
            return check_platform(record, ref, platform)
    if policy == "missing" and not quiet:
        shown = ref if "@" in ref or ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"
        print(f"Unable to find image '{shown}' locally", file=sys.stderr, flush=True)
    from pallet.kernel.images import transfer

    engine.plugins.load("registry")
    return check_platform(transfer.pull(engine, ref, platform=platform or None, credentials=credentials),
                          ref, platform)


def check_platform(image, ref: str, platform: str):
    """``--platform``: refuse an image built for another OS or architecture (docker 28's wording)."""
    from pallet.kernel.images import manifest as mf

    if not platform:
        return image
    actual = mf.config_platform(image.config or {})
    if not mf.platform_matches(actual, platform):
        raise PalletError(f"image with reference {ref} was found but its platform ({mf.platform_text(actual)}) "
                          f"does not match the specified platform ({platform})")
    return image


def runtime_for(engine, record: ContainerRecord):
    return engine.open_driver("runtime", record.runtime or "pallet")


def default_network(engine) -> str:
    """``[containers] default_network`` from the config, else ``bridge`` when a plugin registers a
    bridge driver, else ``none`` (documented in ``run --help``)."""
    configured = engine.config.section("containers").get("default_network")
    if configured:
        return configured
    return "bridge" if "bridge" in engine.plugins.names("network") else "none"


def create(engine, request: CreateRequest) -> ContainerRecord:
    if request.network not in LOCAL_MODES and not request.network.startswith("container:"):
        engine.plugins.load("network")
    image = resolve_image(engine, request.image, request.pull, request.quiet, request.platform)
    store = image_store(engine)
    cid = new_container_id()

    def leased_top_layer():
        # Under the store lock: the image still exists, its layers are present, and the lease
        # pins them, all at once; rmi decides under the same lock (see images/leases.py).
        with store.locked():
            try:
                current = store.load(image.id)
            except NotFound:
                raise NotFound(f"No such image: {request.image}") from None
            top = store.ensure_layers(current)
            store.leases.take(cid, current.id, current.layers)
        faults.point("create.leased")
        return top

    try:
        return create_on(engine, request, image.id, (image.config or {}).get("config") or {},
                         leased_top_layer, cid)
    finally:
        with store.locked():
            store.leases.release(cid)   # the container record (or nothing) pins the image now


def create_on(engine, request: CreateRequest, image_id: str, image_config: dict, top_layer,
              cid: str | None = None) -> ContainerRecord:
    """Create a container over a resolved image: ``image_config`` is its runtime config, ``top_layer()``
    makes its layers present and returns the top one (the builder passes a layer chain that is no image)."""
    from pallet.kernel import runopts

    network = check_network(engine, request.network or default_network(engine))
    host_extra = resolve_shared(engine, request)
    cid = cid or new_container_id()
    if request.entrypoint is not None:
        entrypoint = [request.entrypoint] if request.entrypoint else []
        cmd = list(request.command)
    else:
        entrypoint = list(image_config.get("Entrypoint") or [])
        cmd = list(request.command) or list(image_config.get("Cmd") or [])
    hostname = request.hostname or (None if network == "host" else cid[:12]) or os.uname().nodename
    attach = request.attach or ["stdout", "stderr"] + (["stdin"] if request.stdin_open else [])
    config = {
        "Hostname": hostname,
        "Domainname": request.domainname,
        "User": request.user or image_config.get("User") or "",
        "Env": runopts.merge_env(image_config.get("Env") or [], request.env),
        "Cmd": cmd,
        "Entrypoint": entrypoint,
        "WorkingDir": request.workdir or image_config.get("WorkingDir") or "",
        "Tty": request.tty,
        "OpenStdin": request.stdin_open,
        "AttachStdin": "stdin" in attach, "AttachStdout": "stdout" in attach, "AttachStderr": "stderr" in attach,
        "Healthcheck": merge_healthcheck(request.healthcheck, image_config.get("Healthcheck")),
        "Image": request.image,
        "Labels": {**(image_config.get("Labels") or {}), **request.labels},
        "StopSignal": request.host_config.pop("StopSignal", None) or image_config.get("StopSignal") or "SIGTERM",
        "StopTimeout": request.host_config.pop("StopTimeout", None),
        "ExposedPorts": {**(image_config.get("ExposedPorts") or {}), **request.exposed},
        "Volumes": image_config.get("Volumes") or {},
        "MacAddress": request.host_config.pop("MacAddress", "") or "",
    }
    if not entrypoint and not cmd:
        raise PalletError("No command specified")
    ports = runopts.parse_ports(request.port_specs, request.publish_all, config["ExposedPorts"])
    for spec_port in ports:
        config["ExposedPorts"].setdefault(spec_port, {})
    host_config = {**request.host_config, **host_extra, "NetworkMode": network, "PortBindings": ports,
                   "PublishAllPorts": request.publish_all}
    from pallet.kernel import logdrivers

    host_config["LogConfig"] = logdrivers.resolve(engine, host_config.get("LogConfig"))
    record = ContainerRecord(
        id=cid, name=request.name, image_id=image_id, image_ref=request.image, created=time.time(),
        network_mode=network, port_bindings=ports, labels=config["Labels"], config=config,
        host_config=host_config, runtime=host_config.get("Runtime") or "pallet",
    )
    if request.extra_networks:   # joined at start, as networks added by `network connect` are at a restart
        record.network = {"Networks": {network: {"NetworkID": "", "IPAddress": "", "Gateway": ""},
                                       **{name: dict(settings) for name, settings in request.extra_networks.items()}}}
    record.image_top_layer = top_layer()
    record.storage_driver = engine.storage_driver_name
    store = ContainerStore(engine)
    # The read-write layer before the record: a record always has its layer. A kill in between
    # leaves a driver layer no record names, which the next prune (and system check) removes.
    engine.storage.create_rw(cid, record.image_top_layer, host_config.get("StorageOpt") or None)
    try:
        faults.point("create.before-record")
        store.add(record)  # refuses a duplicate name
    except BaseException:
        with contextlib.suppress(Exception):
            engine.storage.remove(cid)
        raise
    try:
        create_named_volumes(engine, host_config)
        record.anonymous_volumes = create_anonymous_volumes(engine, host_config.get("Mounts") or [],
                                                            host_config.get("VolumeDriver") or "")
        if record.anonymous_volumes:
            store.save(record)
    except BaseException:
        with contextlib.suppress(Exception):
            engine.storage.remove(cid)
        store.remove(cid)
        raise
    engine.plugins.broadcast("pallet_container_created", container=record)
    events.container(engine, record, "create")
    return record


def merge_healthcheck(given: dict | None, image: dict | None) -> dict | None:
    """``--health-*`` over the image's HEALTHCHECK: a flag without ``--health-cmd`` tunes the image's test."""
    if not given:
        return image
    if given.get("Test") or not image:
        return given
    return {**image, **{k: v for k, v in given.items() if v and k != "Test"}}


def create_anonymous_volumes(engine, mounts: list[dict], driver: str = "") -> list[str]:
    """``-v /path`` gets a fresh anonymous volume, named now so that ``rm -v`` can find it."""
    wanted = [m for m in mounts if m["Type"] == "volume" and not m["Source"]]
    if not wanted:
        return []
    store = volume_store(engine)
    for mount in wanted:
        options = {"options": mount["DriverOpts"]} if mount.get("DriverOpts") else {}
        if mount.get("Driver") or driver:
            options["driver"] = mount.get("Driver") or driver
        mount["Source"] = store.create(**options).name
    return [m["Source"] for m in wanted]


def create_named_volumes(engine, host_config: dict) -> None:
    """A named volume that does not exist yet is made with --volume-driver / volume-driver / volume-opt."""
    from pallet.kernel.errors import NotFound

    wanted = [m for m in host_config.get("Mounts") or [] if m["Type"] == "volume" and m["Source"]
              and (m.get("Driver") or m.get("DriverOpts") or host_config.get("VolumeDriver"))]
    for mount in wanted:
        store = volume_store(engine)
        try:
            store.get(mount["Source"])
        except NotFound:
            driver = mount.get("Driver") or host_config.get("VolumeDriver")
            store.create(mount["Source"], options=mount.get("DriverOpts") or None, **({"driver": driver} if driver else {}))


def resolve_shared(engine, request: CreateRequest) -> dict:
    """What names other containers, resolved to ids at create time (a rename later breaks nothing):
    --pid/--ipc container:NAME, --link, and --volumes-from (whose mounts are copied, as Docker does)."""
    store = ContainerStore(engine)
    host = request.host_config
    extra: dict = {}
    for key in ("PidMode", "IpcMode"):
        mode = host.get(key) or ""
        if mode.startswith("container:"):
            extra[key] = "container:" + store.get(mode.partition(":")[2]).id
    links = []
    for link in host.get("Links") or []:
        name, _sep, alias = link.partition(":")
        other = store.get(name)
        links.append(f"{other.id}:{alias}")
    if links:
        extra["Links"] = links
    if host.get("VolumesFrom"):
        own = {m["Target"] for m in host.get("Mounts") or []}
        mounts = list(host.get("Mounts") or [])
        for item in host["VolumesFrom"]:
            name, _sep, mode = item.partition(":")
            for mount in store.get(name).host_config.get("Mounts") or []:
                if mount["Target"] in own:
                    continue  # the container's own -v wins, as in Docker
                copied = {k: v for k, v in mount.items() if k != "CreateSource"}
                if mode:
                    copied["ReadOnly"] = mode == "ro"
                mounts.append(copied)
                own.add(mount["Target"])
        extra["Mounts"] = mounts
    return extra


def volume_store(engine):
    from pallet.kernel.volumes import VolumeStore

    return VolumeStore(engine)


def check_network(engine, network: str) -> str:
    """Refuse an unknown network before anything is created; return the mode to record."""
    if network.startswith("container:"):
        # Recorded by id, so a rename of the other container does not break this one.
        return "container:" + ContainerStore(engine).get(network.partition(":")[2]).id
    if network in LOCAL_MODES:
        return network
    from pallet.kernel.network.store import NetworkStore

    NetworkStore(engine).get(network)  # "network X not found" before anything is created
    return network


def shared_network(engine, record: ContainerRecord) -> tuple[str, dict[str, Path]]:
    """``--network container:ID``: the other container's netns path and its hosts/resolv.conf files.

    Joining a container that uses the host's network is using the host's network (its netns is the
    host's, its files copies of the host's): a pod with ``hostNetwork: true`` is made so."""
    other = refresh(engine, ContainerStore(engine).load(record.network_mode.partition(":")[2]))
    if other.status != "running":
        raise Conflict(f"cannot join network of a non running container: {other.id}")
    other_dir = ContainerStore(engine).run_dir(other.id)
    return f"/proc/{other.pid}/ns/net", {"/etc/hosts": other_dir / "hosts", "/etc/resolv.conf": other_dir / "resolv.conf"}


# --- start --------------------------------------------------------------------------------

def prepare(engine, record: ContainerRecord) -> Path:
    """Mount the rootfs, set up volumes, network and /etc files, write the bundle; return the bundle dir."""
    from pallet.kernel import configfiles, sandbox, secrets, spec as specmod

    store = ContainerStore(engine)
    run_dir = store.run_dir(record.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    hold_starting(run_dir, record.id)
    try:
        rootfs = mount_rootfs(engine, record)
        mounts = resolve_mounts(engine, record, rootfs) + secrets.spec_mounts(run_dir, record) + \
            configfiles.prepare(engine, record, run_dir)
        netns_path, net, shared_etc = None, {}, {}
        if record.network_mode.startswith("container:"):
            netns_path, shared_etc = shared_network(engine, record)
        elif record.network_mode not in LOCAL_MODES:
            from pallet.kernel.network import attach as network

            engine.plugins.load("network")
            netns_path = str(sandbox.create_sandbox(engine.run_root, record.id))
            net = network.connect(engine, record, netns_path) or {}
            record.network = {**net, "sandbox": netns_path}
        from pallet.kernel import runlinks

        links = runlinks.resolve(engine, record, net, refresh)
        etc = {**sandbox.write_etc_files(run_dir, record.config.get("Hostname", ""), record.network_mode, net,
                                         links.hosts, links.dns), **shared_etc}
        workdir = record.config.get("WorkingDir")
        if workdir:
            from pallet.kernel.rootpath import resolve_in_root
            resolve_in_root(rootfs, workdir).mkdir(parents=True, exist_ok=True)
        spec = specmod.build_spec(record, rootfs, etc, netns_path, mounts, links)
        specmod.finalize_spec(engine, spec, record)
        atomic_write_json(run_dir / "config.json", spec, durable=False)
        faults.point("start.prepared")
    except BaseException:
        release(engine, record)
        drop_starting(run_dir, record.id)
        raise
    return run_dir


# --- an atomic start ------------------------------------------------------------------------
# ``prepare`` mounts, makes a netns, veth and IP; the runtime start comes later, in the monitor.
# A ``kill -9`` in between must not leave a "Created" container holding all that. So prepare
# flocks ``<run dir>/starting`` on a close-on-exec fd: the forked monitor inherits it, the lock
# lives exactly as long as some process is still starting the container, and it is dropped
# once the record says "running". ``refresh`` finds an unlocked marker on a created container:
# its starter died, and it releases what prepare made (see :func:`release_abandoned_start`).
_starting: dict[str, int] = {}


def hold_starting(run_dir: Path, cid: str) -> None:
    import fcntl

    if cid in _starting:
        return
    fd = os.open(run_dir / STARTING_MARK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _starting[cid] = fd


def drop_starting(run_dir: Path, cid: str, unlink: bool = True) -> None:
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / STARTING_MARK).unlink()
    fd = _starting.pop(cid, None)
    if fd is not None:
        os.close(fd)


def release_abandoned_start(engine, record: ContainerRecord) -> bool:
    """Release what an interrupted start prepared; True if it was one (nobody holds its marker)."""
    import fcntl

    if record.id in _starting or record.status != "created":
        return False
    mark = f"{engine.run_root}/containers/{record.id}/{STARTING_MARK}"   # ContainerStore.run_dir, as text: ps calls this per record
    try:
        fd = os.open(mark, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False   # still being started
        fresh = ContainerStore(engine).load(record.id)
        if fresh.status != "created":
            return False
        with contextlib.suppress(PalletError):
            release(engine, fresh)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(mark)
        return True
    finally:
        os.close(fd)


def mount_rootfs(engine, record: ContainerRecord) -> Path:
    mark = ContainerStore(engine).run_dir(record.id) / MOUNTED_MARK
    rootfs = Path(engine.storage.get(record.id))
    mark.touch()
    return rootfs


def resolve_mounts(engine, record: ContainerRecord, rootfs: Path) -> list[dict]:
    from pallet.kernel.spec import user_mount

    host = record.host_config
    result = []
    for target, options in (host.get("Tmpfs") or {}).items():
        result.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "noexec"] + ([o for o in options.split(",") if o] or [])})
    for mount in host.get("Mounts") or []:
        if mount["Type"] == "volume":
            result.append(user_mount(mount, str(_mount_volume(engine, record, mount, rootfs))))
        else:
            if mount["Type"] == "bind" and mount.get("CreateSource") and not os.path.lexists(mount["Source"]):
                # -v creates a missing source as a directory (Docker's); an existing file is bound as is.
                Path(mount["Source"]).mkdir(parents=True, exist_ok=True)
            result.append(user_mount(mount))
    return result


def _mount_volume(engine, record: ContainerRecord, mount: dict, rootfs: Path) -> Path:
    host_path, created_empty = volume_store(engine).mount(mount["Source"], record.id)
    if created_empty:
        from pallet.kernel.rootpath import resolve_in_root
        source = resolve_in_root(rootfs, mount["Target"])
        if source.is_dir() and not mount.get("NoCopy"):
            shutil.copytree(source, host_path, symlinks=True, dirs_exist_ok=True)
            _copy_owners(source, Path(host_path))
        elif engine.storage_remap is not None:  # a fresh volume belongs to the container's (remapped) root
            os.chown(host_path, *engine.storage_remap.shift(0, 0))
    return Path(host_path)


def _copy_owners(source: Path, target: Path) -> None:
    """Owners of the copied image content, as Docker's copy into an empty volume keeps them."""
    for base, dirs, files in os.walk(source):
        for name in [None, *dirs, *files]:
            src = Path(base) if name is None else Path(base, name)
            dst = target / src.relative_to(source)
            st = src.lstat()
            os.lchown(dst, st.st_uid, st.st_gid)
            if not src.is_symlink():
                os.chmod(dst, st.st_mode & 0o7777)  # chown cleared setuid/setgid


def start_process(engine, record: ContainerRecord, bundle: Path, stdio, console_socket=None) -> int:
    """Run the bundle; the caller must already be the subreaper. Marks the record running."""
    from pallet.kernel import secrets

    runtime = runtime_for(engine, record)
    run_dir = ContainerStore(engine).run_dir(record.id)
    # Decrypted just for the runtime to bind them; afterwards only the container's mounts hold the values.
    secrets.materialize(engine, record, run_dir)
    try:
        pid = runtime.run(record.id, bundle, stdio, console_socket)
    finally:
        cgroups.stop_warming()   # whatever runtime ran it (the built-in one stops it before it clones)
        secrets.hide(run_dir)
    record = ContainerStore(engine).update(
        record.id, durable=False, status="running", pid=pid, pid_start_time=procs.start_time(pid), started_at=time.time(),
        finished_at=0.0, exit_code=0, oom_killed=False, stopped_by_user=False, error="", monitor_pid=os.getpid(),
        monitor_start_time=procs.start_time(os.getpid()), network=record.network)
    run_dir = ContainerStore(engine).run_dir(record.id)
    drop_starting(run_dir, record.id)   # running and supervised: the start is over
    with contextlib.suppress(FileNotFoundError):
        (run_dir / EXIT_FILE).unlink()
    engine.plugins.broadcast("pallet_container_started", container=record)
    events.container(engine, record, "start")
    return pid


def start_error_code(exc: BaseException) -> int | None:
    """Docker's 125/126/127 when the runtime could not start the command (it raises with the code)."""
    if getattr(exc, "exit_code", None) in (125, 126, 127):
        return exc.exit_code
    text = str(exc).lower()
    if "not found" in text or "no such file" in text:
        return 127
    if "permission denied" in text or "exec format" in text or "is a directory" in text:
        return 126
    return None


# --- stop ---------------------------------------------------------------------------------

def finish(engine, record: ContainerRecord, exit_code: int) -> ContainerRecord:
    """After the container's process was reaped: record the exit, release resources, honour --rm."""
    oom = oom_killed(record)
    store = ContainerStore(engine)
    try:
        release(engine, record)
    except PalletError as exc:  # the exit code still counts; `rm` retries the clean-up
        print(f"pallet: warning: {exc}", file=sys.stderr)
    changes = dict(status="exited", exit_code=exit_code, oom_killed=oom, finished_at=time.time(), pid=0,
                   monitor_pid=0)
    if oom:
        events.container(engine, record, "oom")
    events.container(engine, record, "die", exitCode=exit_code)
    if record.host_config.get("AutoRemove"):
        for key, value in changes.items():  # about to be removed: no point writing it first
            setattr(record, key, value)
    else:
        try:
            record = store.update(record.id, **changes)
        except PalletError:
            return record  # removed meanwhile (rm -f)
    engine.plugins.broadcast("pallet_container_stopped", container=record, exit_code=exit_code)
    if record.host_config.get("AutoRemove"):
        remove(engine, record, volumes=True, just_exited=True)
    return record


def container_cgroup(record: ContainerRecord):
    """The container's cgroup, found from the same cgroupsPath the spec gives the runtime."""
    from pallet.kernel.cgroups import Cgroup
    from pallet.kernel.spec import cgroups_path

    return Cgroup.for_spec(record.id, {"cgroupsPath": cgroups_path(record.id, record.host_config.get("CgroupParent"))})


def oom_killed(record: ContainerRecord) -> bool:
    return container_cgroup(record).oom_killed()


def release(engine, record: ContainerRecord) -> None:
    """Undo ``prepare``: runtime state and cgroup, network, volumes, rootfs mount. Idempotent."""
    from pallet.kernel import sandbox

    store = ContainerStore(engine)
    errors = []
    with contextlib.suppress(PalletError):
        runtime = runtime_for(engine, record)
        try:
            runtime.delete(record.id, force=True)
        except Exception as exc:
            errors.append(f"runtime: {exc}")
    if record.network_mode not in LOCAL_MODES and not record.network_mode.startswith("container:"):
        with contextlib.suppress(ImportError):
            from pallet.kernel.network import attach as network
            engine.plugins.load("network")
            try:
                network.disconnect(engine, record)
            except Exception as exc:
                errors.append(f"network: {exc}")
    try:
        sandbox.remove_sandbox(engine.run_root, record.id)
    except PalletError as exc:
        errors.append(str(exc))
    for mount in record.host_config.get("Mounts") or []:
        if mount["Type"] == "volume":
            with contextlib.suppress(ImportError):
                from pallet.kernel.volumes import VolumeStore
                try:
                    VolumeStore(engine).unmount(mount["Source"], record.id)
                except Exception as exc:
                    errors.append(f"volume {mount['Source']}: {exc}")
    if record.host_config.get("IpcMode") == "shareable":
        from pallet.kernel.runlinks import unmount_shareable_shm

        try:
            unmount_shareable_shm(store, record)
        except OSError as exc:
            errors.append(f"/dev/shm: {exc}")
    if record.host_config.get("Secrets"):
        from pallet.kernel import secrets

        try:
            secrets.hide(store.run_dir(record.id))
        except PalletError as exc:
            errors.append(str(exc))
    mark = store.run_dir(record.id) / MOUNTED_MARK
    claimed = mark.with_name(f"{MOUNTED_MARK}.{os.getpid()}")
    try:
        # Claimed by a rename, so that one release puts the mount back: a monitor that finishes and an
        # `rm -f` can both get here at once (CI: the loser's unlink failed, after a second put).
        os.rename(mark, claimed)
    except FileNotFoundError:
        pass   # not mounted, or released by the other one
    else:
        try:
            engine.storage.put(record.id)
        except Exception as exc:
            os.rename(claimed, mark)   # still held: the next clean-up tries again
            errors.append(f"rootfs: {exc}")
        else:
            claimed.unlink()
    if errors:
        raise PalletError(f"cleaning up container {record.short_id}: " + "; ".join(errors))


def monitor_alive(record: ContainerRecord) -> bool:
    return record.monitor_pid != os.getpid() and procs.alive(record.monitor_pid, record.monitor_start_time)


def refresh(engine, record: ContainerRecord, restart_policy: bool = True) -> ContainerRecord:
    """The truth about a record: a dead pid means exited, even when the monitor died (kill -9, reboot).

    While a live monitor is still recording the exit, the code it published is shown without
    writing (before it is published, the record stays running). With no monitor left the container
    is settled here (:func:`settle_unsupervised`): one still running is stopped, and the exit is
    recorded (code 255 if none was published); ``restart_policy=False`` settles it without applying
    its restart policy (``system boot`` starts it itself).
    """
    if record.status == "created" and release_abandoned_start(engine, record):
        return ContainerStore(engine).load(record.id)
    if record.status not in ("running", "paused"):
        return record
    if procs.alive(record.pid, record.pid_start_time):
        if record.monitor_pid == os.getpid() or monitor_alive(record):
            return record
        return settle_unsupervised(engine, record, restart_policy=restart_policy)
    store = ContainerStore(engine)
    published = None
    with contextlib.suppress(OSError, ValueError):
        published = int((store.run_dir(record.id) / EXIT_FILE).read_text())
    if monitor_alive(record):
        if published is None:
            # It ended a moment ago and its monitor has not published the code yet: still "running" for
            # a few milliseconds, not "exited 0" (a running record's exit code is 0: `wait` printed it).
            return record
        # A copy: the Engine API's list passes records it keeps between calls (ContainerStore.all(shared=True)).
        return dataclasses.replace(record, status="exited", exit_code=published)
    return settle_unsupervised(engine, record, published, restart_policy)


UNSUPERVISED = "its monitor died: pallet stopped the unsupervised container"


def unsupervised(record: ContainerRecord) -> bool:
    """Running (its process lives) with no monitor: nobody keeps its log or will record its exit."""
    return (record.running and procs.alive(record.pid, record.pid_start_time) and record.monitor_pid != os.getpid()
            and not monitor_alive(record))


def settle_unsupervised(engine, record: ContainerRecord, published: int | None = None,
                        restart_policy: bool = True) -> ContainerRecord:
    """A running container whose monitor is gone (killed, or the machine's processes were): settle it.

    A process cannot be re-parented to a new monitor (its exit status would be lost), so one that
    still runs is killed (its exit is 137, ``State.Error`` says why); one that already exited gets
    the code its monitor published, else 255. Then, as the monitor would have: its resources are
    released, ``die`` is emitted, ``--rm`` is honoured and the restart policy applies unless
    ``restart_policy`` is false (a restarted container gets a new monitor). One process settles a
    container (a lock in its run dir); others meanwhile see the record as it is.
    """
    import fcntl

    from pallet.kernel import restart

    store = ContainerStore(engine)
    run_dir = store.run_dir(record.id)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / "settle.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return record
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return record
        try:
            fresh = store.load(record.id)
        except PalletError:
            return record   # removed meanwhile
        if not fresh.running or monitor_alive(fresh) or fresh.monitor_pid == os.getpid():
            return fresh
        code, error = (255 if published is None else published), ""
        if procs.alive(fresh.pid, fresh.pid_start_time):
            with contextlib.suppress(PalletError):
                kill(engine, fresh, 9)
            deadline = time.monotonic() + 30
            while procs.alive(fresh.pid, fresh.pid_start_time) and time.monotonic() < deadline:
                time.sleep(0.01)
            code, error = 137, UNSUPERVISED
        if error:
            with contextlib.suppress(PalletError):
                fresh = store.update(fresh.id, error=error)
        done = finish(engine, fresh, code)
    finally:
        os.close(fd)   # before a restarter is forked: it must not hold the lock
    if restart_policy:
        with contextlib.suppress(Exception):
            restart.after_exit(engine, done, code)
    return done


def stop(engine, record: ContainerRecord, timeout: float | None = None, sig: int | None = None) -> ContainerRecord:
    from pallet.kernel import restart
    from pallet.kernel.runopts import parse_signal

    restart.note_user_stop(engine, record)  # first: the monitor must not restart what we stop
    record = refresh(engine, ContainerStore(engine).load(record.id))
    if not record.running:
        return record
    if timeout is None:
        timeout = record.config.get("StopTimeout")
        timeout = 10 if timeout is None else timeout
    # Gone already (Conflict): it ended before the signal and its monitor has not published the code yet,
    # so the record still says running; the wait below sees the exit recorded.
    with contextlib.suppress(Conflict):
        kill(engine, record, sig or parse_signal(record.config.get("StopSignal") or "SIGTERM"))
    if wait_stopped(engine, record, timeout):
        events.container(engine, record, "stop")
        return ContainerStore(engine).load(record.id) if ContainerStore(engine).dir(record.id).exists() else record
    with contextlib.suppress(Conflict):   # else it is gone and its monitor still recording
        kill(engine, record, 9)
    wait_stopped(engine, record, 30)
    try:
        return ContainerStore(engine).load(record.id)
    except PalletError:
        return record
    finally:
        events.container(engine, record, "stop")


def kill(engine, record: ContainerRecord, sig: int) -> None:
    if not procs.alive(record.pid, record.pid_start_time):
        raise Conflict(f"Container {record.id} is not running")
    try:
        runtime_for(engine, record).kill(record.id, sig)
    except Exception:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, sig)
    events.container(engine, record, "kill", signal=sig)
    if record.status == "paused" and sig in (9, 15):
        with contextlib.suppress(Exception):
            runtime_for(engine, record).resume(record.id)


def wait_stopped(engine, record: ContainerRecord, timeout: float) -> bool:
    """Wait until the process is gone and its exit is recorded on disk (by the monitor, or here if it died)."""
    deadline = time.monotonic() + timeout
    store = ContainerStore(engine)
    delay = 0.005
    while time.monotonic() < deadline:
        if not procs.alive(record.pid, record.pid_start_time):
            try:
                fresh = store.load(record.id)
            except PalletError:
                return True
            if fresh.status not in ("running", "paused"):
                return True
            if not monitor_alive(fresh):
                refresh(engine, fresh)
                return True
            # The monitor is recording the exit and ends right after: wake when it does, not a poll later.
            procs.wait_gone(fresh.monitor_pid, min(delay, deadline - time.monotonic()))
        else:
            time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return False


def remove(engine, record: ContainerRecord, force: bool = False, volumes: bool = False,
           just_exited: bool = False) -> None:
    """``just_exited``: ``--rm`` by the exit's own clean-up (``finish``): no restart can be pending (``--rm``
    excludes ``--restart``), so the record is not first rewritten, and synced, to cancel one."""
    from pallet.kernel import restart

    store = ContainerStore(engine)
    if not just_exited and (force or not refresh(engine, record).running):  # a refused rm must not mark it stopped
        restart.cancel_pending(engine, record)
    record = refresh(engine, record)
    if record.running:
        if not force:
            raise Conflict(f"You cannot remove a running container {record.id}. "
                           "Stop the container before attempting removal or force remove")
        kill(engine, record, 9)
    if record.running or monitor_alive(record):
        wait_stopped(engine, record, 30)  # let the monitor finish its own clean-up first
        with contextlib.suppress(PalletError):
            record = store.load(record.id)
    release(engine, record)
    engine.storage.remove(record.id)
    if volumes and record.anonymous_volumes:
        for name in record.anonymous_volumes:
            try:
                volume_store(engine).remove(name, force=True, ignore_container=record.id)
            except PalletError as exc:
                print(f"pallet: warning: volume {name} kept: {exc}", file=sys.stderr)
    if store.dir(record.id).exists():
        store.remove(record.id)
        engine.plugins.broadcast("pallet_container_removed", container=record)
        events.container(engine, record, "destroy")


def bundle_config(engine, record: ContainerRecord) -> dict:
    path = ContainerStore(engine).run_dir(record.id) / "config.json"
    return json.loads(path.read_text())
