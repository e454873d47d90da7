"""From parsed Dockerfile to a typed plan: stages, global ARGs, base images, stage dependencies, the target.

Only the stages the target needs are kept, in an order where every stage follows what it uses;
a cycle of stages, an unknown ``--target`` or a FROM whose ARG has no value is refused here,
before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pallet.kernel.build import instructions as ins
from pallet.kernel.build.lex import ExpansionError, process_word
from pallet.kernel.build.parser import Dockerfile, DockerfileError
from pallet.kernel.images import manifest as mf

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY",
              "no_proxy", "ALL_PROXY", "all_proxy")


def platform_args() -> dict[str, str]:
    """BuildKit's automatic platform ARGs; builds here are always for the host's platform."""
    plat = mf.host_platform()
    text = f"{plat['os']}/{plat['architecture']}" + (f"/{plat['variant']}" if plat.get("variant") else "")
    values = {}
    for prefix in ("TARGET", "BUILD"):
        values.update({f"{prefix}PLATFORM": text, f"{prefix}OS": plat["os"], f"{prefix}ARCH": plat["architecture"],
                       f"{prefix}VARIANT": plat.get("variant", "")})
    return values


@dataclass
class Stage:
    index: int
    name: str
    from_: ins.From
    base: str                              # the expanded image reference, "scratch", or a stage name
    base_stage: int | None = None
    steps: list[ins.Instruction] = field(default_factory=list)
    deps: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        return self.name or f"stage-{self.index}"


@dataclass
class Plan:
    dockerfile: Dockerfile
    stages: list[Stage]
    global_args: dict[str, str | None]     # declared before the first FROM, with their values
    target: int
    order: list[int]                       # the needed stages, dependencies first

    def stage_by_ref(self, ref: str) -> Stage | None:
        return _find_stage(self.stages, ref, len(self.stages))


def _find_stage(stages: list[Stage], ref: str, before: int) -> Stage | None:
    lowered = ref.lower()
    for stage in stages[:before]:
        if stage.name and stage.name == lowered:
            return stage
    if ref.isdigit() and int(ref) < before:
        return stages[int(ref)]
    return None


class _Tracking(dict):
    """An expansion environment that remembers names looked up but not set."""

    def __init__(self, values):
        super().__init__(values)
        self.missing: list[str] = []

    def get(self, key, default=None):
        if key not in self:
            self.missing.append(key)
        return super().get(key, default)


def expand_global(word: str, args: dict[str, str | None], line: int, what: str, dockerfile: Dockerfile) -> str:
    env = _Tracking({k: v for k, v in args.items() if v is not None})
    try:
        value = process_word(word, env, dockerfile.escape)
    except ExpansionError as exc:
        raise dockerfile.error(str(exc), line) from None
    broken = not value or value.endswith((":", "@", "/")) or "::" in value
    if env.missing and broken:
        names = ", ".join(dict.fromkeys(env.missing))
        raise dockerfile.error(f"{what} uses ARG {names}, which has no value here "
                               f"(declare it with a default before FROM, or pass --build-arg)", line)
    if not value:
        raise dockerfile.error(f"{what} base name ({word}) should not be blank", line)
    return value


def make_plan(dockerfile: Dockerfile, build_args: dict[str, str], target: str = "") -> Plan:
    escape, name = dockerfile.escape, dockerfile.name
    global_args: dict[str, str | None] = dict(platform_args())
    stages: list[Stage] = []
    for node in dockerfile.nodes:
        step = ins.parse_node(node, escape, name)
        if isinstance(step, ins.From):
            image = expand_global(step.image, global_args, step.line, "FROM", dockerfile)
            if step.platform:
                platform = expand_global(step.platform, global_args, step.line, "FROM --platform", dockerfile)
                if mf.parse_platform(platform) != mf.host_platform() and \
                        mf.parse_platform(platform) != {**mf.host_platform(), "variant": ""}:
                    raise dockerfile.error(f'FROM --platform={platform}: only the host\'s platform '
                                           f'({global_args["BUILDPLATFORM"]}) can be built here', step.line)
            if step.name and any(s.name == step.name for s in stages):
                raise dockerfile.error(f'duplicate stage name "{step.name}"', step.line)
            if step.name and (step.name.isdigit() or not step.name[0].isalnum()):
                raise dockerfile.error(f'invalid stage name "{step.name}"', step.line)
            stage = Stage(len(stages), step.name, step, image)
            found = _find_stage(stages, image, len(stages))
            if found is not None and not image.isdigit():
                stage.base_stage = found.index
                stage.deps.add(found.index)
            stages.append(stage)
            continue
        if not stages:
            if isinstance(step, ins.Arg):
                for key, default in step.pairs:
                    if key in build_args:
                        global_args[key] = build_args[key]
                    elif default is not None:
                        global_args[key] = expand_global(default, global_args, step.line, "ARG", dockerfile) \
                            if "$" in default else process_word(default, {}, escape)
                    else:
                        global_args.setdefault(key, None)
                continue
            raise dockerfile.error(f"{step.keyword} before the first FROM (only ARG may come before FROM)",
                                   step.line)
        stages[-1].steps.append(step)
    if not stages:
        raise DockerfileError("the Dockerfile has no FROM instruction (no build stage)", 0, name)
    for stage in stages:
        for step in stage.steps:
            for ref in _references(step):
                ref = expand_global(ref, global_args, step.line, "--from", dockerfile) if "$" in ref else ref
                found = _find_stage(stages, ref, len(stages))
                if found is not None and (not ref.isdigit() or int(ref) < stage.index):
                    if found.index == stage.index:
                        raise dockerfile.error(f'circular dependency detected on stage: {stage.label}', step.line)
                    stage.deps.add(found.index)
    if target:
        chosen = _find_stage(stages, target, len(stages)) if not target.isdigit() else None
        if chosen is None:
            raise DockerfileError(f'target stage "{target}" could not be found', 0, name)
        target_index = chosen.index
    else:
        target_index = len(stages) - 1
    order = _order(stages, target_index, dockerfile)
    return Plan(dockerfile, stages, global_args, target_index, order)


def _references(step: ins.Instruction) -> list[str]:
    if isinstance(step, ins.Copy) and step.from_:
        return [step.from_]
    if isinstance(step, ins.Run):
        return [m.options["from"] for m in step.mounts if m.options.get("from")]
    return []


def _order(stages: list[Stage], target: int, dockerfile: Dockerfile) -> list[int]:
    order: list[int] = []
    state: dict[int, str] = {}

    def visit(index: int, path: list[int]) -> None:
        if state.get(index) == "done":
            return
        if state.get(index) == "active":
            cycle = " -> ".join(stages[i].label for i in [*path[path.index(index):], index])
            raise dockerfile.error(f"circular dependency detected between stages: {cycle}",
                                   stages[index].from_.line)
        state[index] = "active"
        for dep in sorted(stages[index].deps):
            visit(dep, [*path, index])
        state[index] = "done"
        order.append(index)

    visit(target, [])
    return order
