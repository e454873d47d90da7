"""Solve a build plan: each needed stage from its base, step by step, with the content-addressed cache.

A stage's state is an image config document and a layer chain. Metadata steps change the config
and the step key; RUN, COPY and ADD look their key up in the cache and, on a miss, do the work
(:mod:`pallet.kernel.build.executor`) and store the new layer. Stages whose dependencies are done
run in parallel threads.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pallet.kernel.build import instructions as ins
from pallet.kernel.build import executor as ex
from pallet.kernel.build.cache import BuildCache, Entry, step_key
from pallet.kernel.build.lex import ExpansionError, process_word, process_words
from pallet.kernel.build.parser import DockerfileError, parse
from pallet.kernel.build.plan import PROXY_ARGS, Plan, Stage
from pallet.kernel.errors import PalletError
from pallet.kernel.images import manifest as mf
from pallet.kernel.images.build import DEFAULT_PATH, base_config, layer_from_tar

DEFAULT_SHELL = ["/bin/sh", "-c"]
DROPPED_STUBS = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
HEREDOC_DIR = "/dev/pipes"                       # where a RUN heredoc with a #! line is mounted to run
CACHE_ANNOTATION = "org.pallet.build.cache.v0"   # on a layer descriptor: the step key that made the layer


class StepFailed(PalletError):
    """A RUN that exited non-zero; ``tail`` holds its last output lines, ``step`` its progress id."""

    def __init__(self, message: str, tail: list[str], step: int = 0, code: int = 0):
        super().__init__(message)
        self.tail, self.step, self.code = tail, step, code


@dataclass
class State:
    doc: dict
    layers: list = field(default_factory=list)      # [(Descriptor, diff_id)]
    key: str = ""
    args: dict = field(default_factory=dict)        # ARGs declared in this stage -> value or None
    cmd_set: bool = False
    layer_keys: list = field(default_factory=list)  # the step key that made each layer (None: base image's)
    clamp: int = 0                                  # file times in this stage's new layers are clamped to it

    @property
    def config(self) -> dict:
        return self.doc.setdefault("config", {})

    @property
    def shell(self) -> list[str]:
        return self.config.get("Shell") or DEFAULT_SHELL

    def env(self) -> dict[str, str]:
        values = {k: v for k, v in self.args.items() if v is not None}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            values[key] = value
        return values

    def set_env(self, key: str, value: str) -> None:
        env = [e for e in self.config.get("Env") or [] if e.partition("=")[0] != key]
        self.config["Env"] = [*env, f"{key}={value}"]


class Solver:
    def __init__(self, engine, request, plan: Plan, context, progress, build_id: str):
        from pallet.kernel.images import ImageStore

        self.engine, self.request, self.plan, self.context = engine, request, plan, context
        self.progress = progress
        self.store = ImageStore(engine)
        self.cache = BuildCache(engine, self.store)
        self.journal = ex.Journal(engine, build_id)
        from pallet.kernel import procs

        procs.set_subreaper()  # a runtime that forks away still hands its container to us to reap
        self.results: dict[int, State] = {}
        self.cache_images: dict | None = None
        self.counter = 0
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.epoch = request.source_date_epoch
        stamp = datetime.fromtimestamp(self.epoch, timezone.utc) if self.epoch is not None \
            else datetime.now(timezone.utc)
        self.created = stamp.strftime("%Y-%m-%dT%H:%M:%SZ" if self.epoch is not None else "%Y-%m-%dT%H:%M:%S.%fZ")
        self.name = plan.dockerfile.name

    # --- driving ------------------------------------------------------------------------
    def solve(self) -> State:
        try:
            self._run_stages()
            return self.results[self.plan.target]
        finally:
            ex.release_items(self.engine, self.journal.items)
            self.journal.close()

    def _run_stages(self) -> None:
        pending = list(self.plan.order)
        if len(pending) == 1 or self.request.jobs <= 1:
            for index in pending:
                self.results[index] = self.build_stage(self.plan.stages[index])
            return
        running = {}
        with ThreadPoolExecutor(max_workers=self.request.jobs, thread_name_prefix="stage") as pool:
            try:
                while pending or running:
                    for index in list(pending):
                        if all(dep in self.results for dep in self.plan.stages[index].deps):
                            pending.remove(index)
                            running[pool.submit(self.build_stage, self.plan.stages[index])] = index
                    done, _ = wait(list(running), return_when=FIRST_EXCEPTION)
                    for future in done:
                        index = running.pop(future)
                        self.results[index] = future.result()
            except BaseException:
                self.cancel()  # siblings stop now, instead of the pool waiting for their RUNs to end
                raise

    def cancel(self) -> None:
        """Stop the other stages: no new step starts, and running build containers are killed."""
        from pallet.kernel import lifecycle
        from pallet.kernel.containers import ContainerStore

        self.cancelled.set()
        for cid in list(self.journal.items["containers"]):
            with contextlib.suppress(Exception):
                lifecycle.kill(self.engine, ContainerStore(self.engine).load(cid), 9)

    def step(self, stage: Stage, position: int, text: str) -> int:
        with self.lock:
            self.counter += 1
            number = self.counter
        total = len(stage.steps) + 1
        self.progress({"type": "step", "id": number, "name": f"[{stage.label} {position}/{total}] {text}"})
        return number

    def error(self, message: str, line: int) -> DockerfileError:
        return DockerfileError(message, line, self.name)

    def expand(self, word: str, state: State, line: int) -> str:
        try:
            return process_word(word, state.env(), self.plan.dockerfile.escape)
        except ExpansionError as exc:
            raise self.error(str(exc), line) from None

    def expand_words(self, word: str, state: State, line: int) -> list[str]:
        try:
            return process_words(word, state.env(), self.plan.dockerfile.escape)
        except ExpansionError as exc:
            raise self.error(str(exc), line) from None

    # --- a stage ------------------------------------------------------------------------
    def build_stage(self, stage: Stage) -> State:
        number = self.step(stage, 1, stage.from_.original.strip())
        started = time.monotonic()
        state, triggers = self.base_state(stage)
        self.progress({"type": "done", "id": number, "seconds": time.monotonic() - started})
        for trigger in triggers:
            self.run_trigger(stage, state, trigger)
        for position, step in enumerate(stage.steps, start=2):
            self.run_step(stage, state, step, position)
        return state

    def base_state(self, stage: Stage) -> tuple[State, list[str]]:
        if stage.base_stage is not None:
            parent = self.results[stage.base_stage]
            return State(copy.deepcopy(parent.doc), list(parent.layers), parent.key,
                         layer_keys=list(parent.layer_keys), clamp=parent.clamp), []
        if stage.base.lower() == "scratch":
            doc = base_config(self.created)
            doc["history"] = []
            return State(doc, [], step_key("scratch"), clamp=self.layer_clamp(None)), []
        image = self.resolve_image(stage.base, stage.from_.line)
        doc = copy.deepcopy(image.config)
        layers = self.image_layers(image)
        triggers = list((doc.get("config") or {}).get("OnBuild") or [])
        if triggers:
            doc["config"]["OnBuild"] = None
        return State(doc, layers, step_key("image", image.id), layer_keys=[None] * len(layers),
                     clamp=self.layer_clamp(doc.get("created"))), triggers

    def layer_clamp(self, base_created: str | None) -> int:
        """``SOURCE_DATE_EPOCH``, else the base image's creation time (0 for scratch): reproducible by
        default, since the same sources then give the same layers and only ``created`` fields differ."""
        if self.epoch is not None:
            return self.epoch
        from pallet.kernel.humanize import parse_time

        when = parse_time(base_created or "")
        return int(when.timestamp()) if when else 0

    def resolve_image(self, ref: str, line: int):
        from pallet.kernel import lifecycle

        try:
            return lifecycle.resolve_image(self.engine, ref, "always" if self.request.pull else "missing",
                                           credentials=self.request.credentials or None)
        except PalletError as exc:
            raise self.error(f"{ref}: {exc}", line) from None

    def resolve_source_image(self, ref: str, line: int):
        """``--from=REF`` naming no stage: a local image, else pulled; a bare unknown name is most likely a
        misspelt stage, so it is reported as such rather than as a registry failure."""
        from pallet.kernel.errors import NotFound

        try:
            self.store.resolve(ref)
        except NotFound:
            if not any(c in ref for c in "/:.@"):
                stages = ", ".join(s.name for s in self.plan.stages if s.name) or "none named"
                raise self.error(f'--from={ref}: no build stage named "{ref}" (stages: {stages}) '
                                 "and no local image of that name", line) from None
        return self.resolve_image(ref, line)  # through the lifecycle: the trust policy applies, as for FROM

    def image_layers(self, image) -> list:
        manifest = mf.parse_manifest(self.store.blobs.read(image.manifest_digest))
        return list(zip(manifest.layers, mf.config_diff_ids(image.config)))

    def run_trigger(self, stage: Stage, state: State, trigger: str) -> None:
        dockerfile = parse(trigger, name=f"{self.name} (ONBUILD of {stage.base})")
        for node in dockerfile.nodes:
            node.start_line = node.end_line = stage.from_.line
            step = ins.parse_node(node, self.plan.dockerfile.escape, self.name)
            self.run_step(stage, state, step, 1)

    def run_step(self, stage: Stage, state: State, step: ins.Instruction, position: int) -> None:
        if self.cancelled.is_set():
            raise PalletError("build cancelled")
        number = self.step(stage, position, step.original.split("\n", 1)[0].strip())
        started = time.monotonic()
        handler = getattr(self, "do_" + type(step).__name__.lower())
        try:
            cached = handler(stage, state, step, number)
        except DockerfileError:
            raise
        except StepFailed:
            raise
        except PalletError as exc:
            raise self.error(str(exc), step.line) from None
        self.progress({"type": "cached" if cached else "done", "id": number,
                       "seconds": time.monotonic() - started})

    def history(self, state: State, step: ins.Instruction, empty: bool, text: str | None = None) -> None:
        entry = {"created": self.created, "created_by": text or ins.created_by(step, state.shell)}
        if empty:
            entry["empty_layer"] = True
        else:
            entry["comment"] = "buildkit.dockerfile.v0"
        state.doc.setdefault("history", []).append(entry)

    def meta(self, state: State, step: ins.Instruction, description: str) -> bool:
        """A metadata-only step: key moves on, history gets an empty-layer entry."""
        state.key = step_key(state.key, description)
        self.history(state, step, True, f"{' '.join(state.shell)} #(nop)  {description}")
        return False

    # --- metadata instructions ----------------------------------------------------------
    def do_env(self, stage, state, step: ins.Env, number) -> bool:
        shown = []
        for key, value in step.pairs:
            key, value = self.expand(key, state, step.line), self.expand(value, state, step.line)
            if not key:
                raise self.error("ENV names can not be blank", step.line)
            state.set_env(key, value)
            shown.append(f"{key}={value}")
        return self.meta(state, step, "ENV " + " ".join(shown))

    def do_label(self, stage, state, step: ins.Label, number) -> bool:
        labels = state.config.get("Labels") or {}
        shown = []
        for key, value in step.pairs:
            key, value = self.expand(key, state, step.line), self.expand(value, state, step.line)
            labels[key] = value
            shown.append(f"{key}={value}")
        state.config["Labels"] = labels
        return self.meta(state, step, "LABEL " + " ".join(shown))

    def do_maintainer(self, stage, state, step: ins.Maintainer, number) -> bool:
        state.doc["author"] = step.name
        return self.meta(state, step, "MAINTAINER " + step.name)

    def do_arg(self, stage, state, step: ins.Arg, number) -> bool:
        shown, declared = [], []
        for key, default in step.pairs:
            written = None if default is None else self.expand(default, state, step.line)
            if key in self.request.build_args:
                value = self.request.build_args[key]
            elif default is not None:
                value = written
            else:
                value = self.plan.global_args.get(key)
            state.args[key] = value
            shown.append(key if value is None else f"{key}={value}")
            declared.append(key if written is None else f"{key}={written}")
        state.key = step_key(state.key, "ARG " + " ".join(shown))
        # history names the declaration, as Docker's builders do; the values given reach the RUNs' lines
        self.history(state, step, True, f"{' '.join(state.shell)} #(nop)  ARG {' '.join(declared)}")
        return False

    def _command(self, state: State, command) -> list[str]:
        return list(command) if isinstance(command, list) else [*state.shell, command]

    def do_cmd(self, stage, state, step: ins.Cmd, number) -> bool:
        state.config["Cmd"] = self._command(state, step.command)
        state.cmd_set = True
        return self.meta(state, step, "CMD " + json.dumps(state.config["Cmd"]))

    def do_entrypoint(self, stage, state, step: ins.Entrypoint, number) -> bool:
        state.config["Entrypoint"] = self._command(state, step.command)
        if not state.cmd_set:
            state.config["Cmd"] = None  # as Docker: a new ENTRYPOINT drops the base image's CMD
        return self.meta(state, step, "ENTRYPOINT " + json.dumps(state.config["Entrypoint"]))

    def do_shell(self, stage, state, step: ins.Shell, number) -> bool:
        state.config["Shell"] = list(step.shell)
        return self.meta(state, step, "SHELL " + json.dumps(step.shell))

    def do_expose(self, stage, state, step: ins.Expose, number) -> bool:
        ports = state.config.get("ExposedPorts") or {}
        shown = []
        for word in step.ports:
            for port in self.expand_words(word, state, step.line):
                for spec in _port_specs(port, lambda m: self.error(m, step.line)):
                    ports[spec] = {}
                    shown.append(spec)
        state.config["ExposedPorts"] = ports
        return self.meta(state, step, "EXPOSE " + " ".join(shown))

    def do_volume(self, stage, state, step: ins.Volume, number) -> bool:
        volumes = state.config.get("Volumes") or {}
        for word in step.paths:
            for path in self.expand_words(word, state, step.line):
                if not path:
                    raise self.error("VOLUME specified can not be an empty string", step.line)
                volumes[path] = {}
        state.config["Volumes"] = volumes
        return self.meta(state, step, "VOLUME " + json.dumps(sorted(volumes)))

    def do_user(self, stage, state, step: ins.User, number) -> bool:
        state.config["User"] = self.expand(step.user, state, step.line)
        return self.meta(state, step, "USER " + state.config["User"])

    def do_workdir(self, stage, state, step: ins.Workdir, number) -> bool:
        path = self.expand(step.path, state, step.line)
        if not path.startswith("/"):
            path = os.path.join(state.config.get("WorkingDir") or "/", path)
        state.config["WorkingDir"] = os.path.normpath(path) if path != "/" else "/"
        text = f"{' '.join(state.shell)} #(nop)  WORKDIR {state.config['WorkingDir']}"
        key = step_key(state.key, "WORKDIR", state.config["WorkingDir"], state.config.get("User") or "",
                       state.clamp)
        entry = self.lookup(stage, key)
        if entry is not None:
            self.apply_entry(state, step, entry, text)
            return True
        from pallet.kernel.build.copying import workdir_layer

        workdir_layer(self, stage, state, step, key, text)  # as Docker: the directory exists in the image
        return False

    def do_stopsignal(self, stage, state, step: ins.Stopsignal, number) -> bool:
        from pallet.kernel.runopts import parse_signal

        value = self.expand(step.signal, state, step.line)
        try:
            parse_signal(value)
        except PalletError:
            raise self.error(f'invalid STOPSIGNAL "{value}"', step.line) from None
        state.config["StopSignal"] = value
        return self.meta(state, step, "STOPSIGNAL " + value)

    def do_healthcheck(self, stage, state, step: ins.Healthcheck, number) -> bool:
        check = {"Test": step.test}
        for key, value in (("Interval", step.interval), ("Timeout", step.timeout),
                           ("StartPeriod", step.start_period), ("StartInterval", step.start_interval),
                           ("Retries", step.retries)):
            if value:
                check[key] = value
        state.config["Healthcheck"] = check
        return self.meta(state, step, "HEALTHCHECK " + json.dumps(check, sort_keys=True))

    def do_onbuild(self, stage, state, step: ins.Onbuild, number) -> bool:
        state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), step.trigger]
        return self.meta(state, step, "ONBUILD " + step.trigger)

    # --- layer instructions -------------------------------------------------------------
    def lookup(self, stage: Stage, key: str) -> Entry | None:
        if self.request.no_cache or stage.name in self.request.no_cache_filter:
            return None
        entry = self.cache.get(key)
        if entry is None and self.request.cache_from:
            entry = self.from_cache_images(key)
        return entry

    def from_cache_images(self, key: str) -> Entry | None:
        """``--cache-from IMAGE``: its layers carry the step key that made them (a descriptor annotation),
        so an exact match is adopted into the local cache."""
        with self.lock:
            if self.cache_images is None:
                self.cache_images = {}
                for ref in self.request.cache_from:
                    try:
                        image = self.store.resolve(ref)
                    except PalletError:
                        self.progress({"type": "log", "id": 0, "text": f"--cache-from {ref}: not found, ignored"})
                        continue
                    for descriptor, diff_id in self.image_layers(image):
                        made_by = (descriptor.annotations or {}).get(CACHE_ANNOTATION)
                        if made_by:
                            self.cache_images[made_by] = (descriptor, diff_id)
        found = self.cache_images.get(key)
        if found is None or not self.store.blobs.has(found[0].digest):
            return None
        descriptor, diff_id = found
        entry = Entry(key, descriptor.media_type, descriptor.digest, descriptor.size, diff_id, self.created)
        with self.store.transaction() as txn:
            self.cache.put(txn, entry)
        return entry

    def apply_entry(self, state: State, step, entry: Entry, text: str | None = None) -> None:
        state.key = entry.key
        if entry.digest:
            state.layers.append((entry.descriptor, entry.diff_id))
            state.layer_keys.append(entry.key)
            state.doc.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(entry.diff_id)
            self.history(state, step, False, text)
        else:
            self.history(state, step, True, text)

    def store_layer(self, stage: Stage, state: State, step, key: str, chunks, text: str | None = None,
                    drop: set[str] = frozenset()) -> None:
        layer, non_empty = ex.normalized_layer(chunks, state.clamp, drop)
        with layer:
            self.store_tar(stage, state, step, key, layer, non_empty, text)

    def store_tar(self, stage: Stage, state: State, step, key: str, layer, non_empty: bool,
                  text: str | None = None) -> None:
        """Store an already normalised layer tar (``layer``, rewound) and apply it to ``state``."""
        with self.store.transaction() as txn:
            if non_empty:
                descriptor, diff_id = layer_from_tar(txn, layer)
                entry = Entry(key, descriptor.media_type, descriptor.digest, descriptor.size, diff_id, self.created,
                              stage.label, step.original.split("\n", 1)[0][:200])
            else:
                entry = Entry(key, "", "", 0, "", self.created, stage.label, step.original.split("\n", 1)[0][:200])
            self.cache.put(txn, entry)
        self.apply_entry(state, step, entry, text)

    def do_run(self, stage, state, step: ins.Run, number) -> bool:
        from pallet.kernel.build.mounts import RunMounts

        command = self.run_command(state, step)
        scoped = {k: v for k, v in state.args.items() if v is not None}
        network = step.network if step.network not in ("", "default") else self.request.network
        mounts = RunMounts(self, stage, state, step)
        hosts = list(self.request.extra_hosts)  # in the key only when given: older keys stay valid
        key = step_key(state.key, "RUN", command, sorted(scoped.items()), network, mounts.key(), state.clamp,
                       *([hosts] if hosts else []))
        env_keys = {item.partition("=")[0] for item in state.config.get("Env") or []}
        text = ins.created_by(step, state.shell, {k: v for k, v in scoped.items() if k not in env_keys})
        entry = self.lookup(stage, key)
        if entry is not None:
            self.apply_entry(state, step, entry, text)
            return True
        from pallet.kernel.lifecycle import CreateRequest

        with self.lock:
            self.engine.plugins.load("security", "runtime")
        env = dict(scoped)
        env.update({k: v for k, v in self.request.build_args.items() if k in PROXY_ARGS})
        env.update(state.env())
        env.setdefault("PATH", DEFAULT_PATH.partition("=")[2])
        top = self.store.ensure_chain(state.layers)
        if command[0].startswith(HEREDOC_DIR + "/"):
            mounts.scripts[command[0]] = step.heredocs[0].content
        with mounts:
            env.update(mounts.env)
            request = CreateRequest(
                image=f"pallet-build/{stage.label}", command=command, entrypoint="",
                env=[f"{k}={v}" for k, v in env.items()], workdir=state.config.get("WorkingDir") or "",
                user=state.config.get("User") or "", network=network or "host",
                labels={ex.LABEL: self.journal.build_id}, pull="never",
                host_config={**self.request.resources, "Mounts": mounts.mounts, "Runtime": self.request.runtime,
                             "AutoRemove": False, "ExtraHosts": hosts})
            image_config = {k: v for k, v in state.config.items() if k not in ("Cmd", "Entrypoint", "Healthcheck")}

            def output(line: str) -> None:
                self.progress({"type": "log", "id": number, "text": line})

            cid, code, tail = ex.run_container(self.engine, self.journal, request, image_config, top, output)
            try:
                if code != 0:
                    shown = command[-1] if not isinstance(step.command, list) else json.dumps(command)
                    raise StepFailed(f"{self.name}:{step.line}: RUN {shown.splitlines()[0] if shown else ''} "
                                     f"returned a non-zero code: {code}", tail, number, code)
                self.store_layer(stage, state, step, key, self.engine.storage.diff(cid, top), text,
                                 mounts.targets | set(DROPPED_STUBS))
            finally:
                ex.remove_container(self.engine, self.journal, cid)
        return False

    def run_command(self, state: State, step: ins.Run) -> list[str]:
        if isinstance(step.command, list):
            return list(step.command)
        script = step.command
        if step.heredocs:
            words = script.split()
            if len(words) == 1 and len(step.heredocs) == 1 and words[0].lstrip("<-").strip("'\"") == \
                    step.heredocs[0].name:
                doc = step.heredocs[0]
                if doc.content.startswith("#!"):  # a script with its own interpreter runs as a file, as BuildKit's
                    return [f"{HEREDOC_DIR}/{doc.name}"]
                return [*state.shell, doc.content]
            script += "\n" + "".join(doc.content + doc.name + "\n" for doc in step.heredocs)
        return [*state.shell, script]

    def do_copy(self, stage, state, step: ins.Copy, number) -> bool:
        from pallet.kernel.build.copying import copy_step

        return copy_step(self, stage, state, step)

    do_add = do_copy


def _port_specs(port: str, fail) -> list[str]:
    number, _, proto = port.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise fail(f'invalid proto "{proto}" in EXPOSE {port}')
    start, _, end = number.partition("-")
    if not start.isdigit() or (end and not end.isdigit()):
        raise fail(f'invalid port "{port}" in EXPOSE')
    first, last = int(start), int(end or start)
    if not 0 < first <= last <= 65535:
        raise fail(f'invalid port range "{port}" in EXPOSE')
    return [f"{value}/{proto}" for value in range(first, last + 1)]


def final_config(state: State, request, created: str) -> dict:
    """The image config document as stored: labels from ``--label``, rootfs and timestamps."""
    doc = copy.deepcopy(state.doc)
    if request.labels:
        doc.setdefault("config", {}).setdefault("Labels", {})
        doc["config"]["Labels"] = {**(doc["config"]["Labels"] or {}), **request.labels}
    doc["created"] = created
    doc["rootfs"] = {"type": "layers", "diff_ids": [diff_id for _d, diff_id in state.layers]}
    doc.update(mf.host_platform() if "architecture" not in doc else {})
    config = doc.get("config") or {}
    for key in ("Cmd", "Entrypoint", "OnBuild", "Shell", "Healthcheck", "Volumes", "ExposedPorts", "Labels",
                "WorkingDir", "User", "StopSignal"):
        if key in config and not config[key]:
            del config[key]
    return doc
