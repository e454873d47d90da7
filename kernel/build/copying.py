"""The COPY and ADD steps: sources from the context, a stage, an image, a URL or a heredoc; their cache key
from exactly the content used; the copy into a scratch layer over the stage's chain."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pallet.kernel.build import files
from pallet.kernel.build import instructions as ins
from pallet.kernel.build.cache import step_key
from pallet.kernel.build.context import Ignore, parse_ignore
from pallet.kernel.build.executor import Workspace
from pallet.kernel.build.lex import process_word
from pallet.kernel.errors import PalletError
from pallet.kernel.rootpath import resolve_in_root


@dataclass
class Source:
    kind: str             # context | fs | url | heredoc
    rel: str = ""         # context-relative (context), absolute in the other root (fs)
    path: Path | None = None
    data: bytes = b""
    name: str = ""


def _walk_fs(root: Path, rel: str):
    """``(path relative to root, lstat)`` of ``rel`` and everything under it, parents first."""
    host = resolve_in_root(root, rel)
    base = str(host.relative_to(root)) if host != root else ""
    st = os.lstat(host)
    yield base, st
    if stat.S_ISDIR(st.st_mode):
        for directory, dirs, names in os.walk(host):
            dirs.sort()
            for name in sorted(dirs + names):
                full = os.path.join(directory, name)
                yield os.path.relpath(full, root), os.lstat(full)


def fs_digest(root: Path, pattern: str) -> str:
    """A content hash of what ``pattern`` names in a stage's or image's filesystem: names, types, modes,
    owners (a COPY --from keeps them), symlink targets and contents; ``missing`` when nothing matches
    (the copy itself then reports it)."""
    import hashlib

    if any(c in pattern for c in "*?["):
        rels = [os.path.relpath(p, root) for p in sorted(glob.glob(str(root) + "/" + pattern.lstrip("/")))]
    else:
        rels = [pattern] if os.path.lexists(resolve_in_root(root, pattern, follow_last=False)) else []
    if not rels:
        return "missing"
    hasher = hashlib.sha256()
    for rel in rels:
        hasher.update(b"\0root\0" + rel.encode())
        for name, st in _walk_fs(root, rel):
            hasher.update(f"\0{name}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0"
                          f"{st.st_uid}:{st.st_gid}\0".encode())
            path = root / name
            if stat.S_ISLNK(st.st_mode):
                hasher.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    hasher.update(hashlib.file_digest(handle, "sha256").digest())
    return "sha256:" + hasher.hexdigest()


class FsDigests:
    """:func:`fs_digest` results remembered per (layer chain, pattern) under ``<root>/build/digests``: a
    chain of diff ids fixes the content, so a cached rebuild keys ``COPY --from`` without mounting the source."""

    def __init__(self, engine):
        self.dir = Path(engine.root) / "build" / "digests"

    def _path(self, layers, pattern: str) -> Path:
        import hashlib
        import json

        name = json.dumps([[diff_id for _descriptor, diff_id in layers], pattern])
        return self.dir / hashlib.sha256(name.encode()).hexdigest()

    def get(self, layers, pattern: str) -> str | None:
        try:
            return self._path(layers, pattern).read_text() or None
        except FileNotFoundError:
            return None

    def put(self, layers, pattern: str, digest: str) -> None:
        from pallet.kernel.fsutil import atomic_write

        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path(layers, pattern), digest.encode(), durable=False)


def copy_step(solver, stage, state, step: ins.Copy) -> bool:
    source_ws: list = []   # the source stage's or image's filesystem, mounted once when first needed
    try:
        return _copy_step(solver, stage, state, step, source_ws)
    finally:
        for workspace in source_ws:
            workspace.close()


def _copy_step(solver, stage, state, step: ins.Copy, source_ws: list) -> bool:
    line = step.line
    is_add = isinstance(step, ins.Add)
    keyword = "ADD" if is_add else "COPY"
    dest = solver.expand(step.dest, state, line)
    workdir = state.config.get("WorkingDir") or "/"
    dest_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
    if not dest.startswith("/"):
        dest = os.path.join(workdir, dest)
    dest = os.path.normpath(dest) if dest != "/" else "/"
    words = [w for source in step.sources for w in solver.expand_words(source, state, line)]
    chown = solver.expand(step.chown, state, line) if step.chown else ""
    mode = solver.expand(step.chmod, state, line) if step.chmod else ""
    ins.check_chmod(mode, lambda message: solver.error(message, line))
    chmod = int(mode, 8) if mode else None
    checksum = solver.expand(step.checksum, state, line) if getattr(step, "checksum", "") else ""
    ins.check_checksum(checksum, lambda message: solver.error(message, line))
    excludes = Ignore(parse_ignore("\n".join(step.exclude))) if step.exclude else None
    sources: list[Source] = []
    # a --link layer owes nothing to its base, not even the timestamp clamp taken from the base's date
    clamp = (solver.epoch if solver.epoch is not None else 0) if step.link else state.clamp
    key_parts: list = [keyword, dest, dest_dir, chown, mode, step.exclude, step.parents, clamp]
    parent_key = state.key
    fs_root_layers = None
    ref = solver.expand(step.from_, state, line) if step.from_ else ""
    if ref:
        # keyed by the content of exactly the files used, not by the source: a rebuilt stage that yields
        # the same files keeps the COPY (and what follows) cached, as BuildKit's content cache does
        source_stage = solver.plan.stage_by_ref(ref)
        if source_stage is not None:
            fs_root_layers = solver.results[source_stage.index].layers
        else:
            fs_root_layers = solver.image_layers(solver.resolve_source_image(ref, line))
    digests = FsDigests(solver.engine)

    def source_root() -> Path:
        if not source_ws:
            source_ws.append(Workspace(solver.engine, solver.journal, solver.store.ensure_chain(fs_root_layers)))
        return source_ws[0].root

    for word in words:
        if is_add and word.startswith(("http://", "https://")):
            path, digest = files.download(word, checksum, Path(solver.journal.scratch_dir()))
            sources.append(Source("url", path=path, name=files.url_basename(word)))
            key_parts.append(["url", word, digest])
        elif fs_root_layers is not None:
            sources.append(Source("fs", rel=word))
            digest = digests.get(fs_root_layers, word)
            if digest is None:
                digest = fs_digest(source_root(), word)
                digests.put(fs_root_layers, word, digest)
            key_parts.append(["fs", word, digest])
        else:
            rels = solver.context.matches(word)
            for rel in rels:
                sources.append(Source("context", rel=rel))
            key_parts.append(["context", word, solver.context.digest(rels)])
    for doc in step.heredocs:
        text = process_word(doc.content, state.env(), "\x00") if doc.expand and "$" in doc.content else doc.content
        sources.append(Source("heredoc", data=text.encode(), name=doc.name))
        key_parts.append(["heredoc", doc.name, text])
    if checksum and not any(s.kind == "url" for s in sources):
        raise PalletError("ADD --checksum needs an http(s) URL source")
    if not sources:
        raise PalletError(f"{keyword} has no source")
    many = len(sources) > 1 or any(c in w for w in words for c in "*?[")
    if many and not dest_dir:
        raise PalletError(f"when using {keyword} with more than one source file, the destination must be a "
                          "directory and end with a /")
    owner = None
    if step.link:
        # --link: the layer is made on an empty base and keyed without the parent, so a change of the
        # base image keeps the COPY cached (BuildKit's rule). Only a user name needs the parent's
        # /etc/passwd; its numeric resolution goes into the key instead of the whole parent.
        if chown and not all(part.isdigit() for part in chown.split(":")):
            with Workspace(solver.engine, solver.journal, solver.store.ensure_chain(state.layers)) as parent_ws:
                owner = files.lookup_owner(parent_ws.root, chown)
        elif chown:
            owner = files.lookup_owner(None, chown)
        key = step_key("link", owner, *key_parts)
    else:
        key = step_key(state.key, *key_parts)
    entry = solver.lookup(stage, key)
    if entry is not None:
        solver.apply_entry(state, step, entry)
        if step.link:
            state.key = step_key(parent_key, key)
        return True
    base = None if step.link else solver.store.ensure_chain(state.layers)
    with Workspace(solver.engine, solver.journal, base) as workspace:
        if owner is None:
            owner = files.lookup_owner(workspace.root, chown) if chown else (0, 0)
        copier = files.Copier(workspace.root, owner, chmod, clamp, keep_owners=bool(ref) and not chown)
        into_dir = dest_dir or (not step.link and copier.is_dir(dest))
        root = source_root() if fs_root_layers is not None else None
        for source in sources:
            _copy_one(solver, copier, source, root, dest, into_dir, step, is_add, excludes)
        with tempfile.TemporaryFile() as layer:
            non_empty = copier.write(layer)  # reads the sources: before their mount goes away
            layer.seek(0)
            solver.store_tar(stage, state, step, key, layer, non_empty)
    if step.link:
        state.key = step_key(parent_key, key)  # what follows still depends on the parent
    return False


def _copy_one(solver, copier, source: Source, source_root: Path | None, dest: str, into_dir: bool, step,
              is_add: bool, excludes) -> None:
    if source.kind == "heredoc":
        copier.write_file(dest, source.data, into_dir, source.name)
        return
    if source.kind == "url":
        copier.write_file(dest, source.path.read_bytes(), into_dir, source.name, 0o600)
        return
    if source.kind == "context":
        root = solver.context.root
        entries = list(solver.context.tree(source.rel))
        matched = [(source.rel, entries)]
    else:
        root = source_root
        pattern = source.rel
        if any(c in pattern for c in "*?["):
            found = sorted(glob.glob(str(root) + "/" + pattern.lstrip("/")))
            rels = [os.path.relpath(p, root) for p in found]
            if not rels:
                raise PalletError(f'"{pattern}": no matching files in the source stage or image')
        else:
            if not os.path.lexists(resolve_in_root(root, pattern, follow_last=False)):
                raise PalletError(f'"{pattern}": not found in the source stage or image')
            rels = [pattern]
        matched = []
        for rel in rels:
            walked = list(_walk_fs(root, rel))
            matched.append((walked[0][0], walked))
    for rel, entries in matched:
        if excludes is not None:
            entries = [e for e in entries if not excludes.ignored(e[0][len(rel):].lstrip("/") or e[0])]
            if not entries:
                continue
        head_rel, head_st = entries[0]
        host = root / head_rel if head_rel else root
        if stat.S_ISDIR(head_st.st_mode):
            if step.parents and head_rel:
                copier.copy_tree(entries, root, "", dest)
            else:
                copier.copy_tree(entries, root, head_rel, dest)
        elif is_add and source.kind == "context" and stat.S_ISREG(head_st.st_mode) and files.is_archive(host):
            files.extract_archive(copier, host, dest)
        else:
            target = dest
            if step.parents and "/" in head_rel:
                copier.copy_file(host, head_st, os.path.join(dest, os.path.dirname(head_rel)), True)
            else:
                copier.copy_file(host, head_st, target, into_dir)


def workdir_layer(solver, stage, state, step, key: str, text: str) -> None:
    """WORKDIR's directory, made (owned by USER, as BuildKit does) when the stage lacks it; a step
    that changes nothing makes no layer."""
    with Workspace(solver.engine, solver.journal, solver.store.ensure_chain(state.layers)) as workspace:
        owner = (0, 0)
        if state.config.get("User"):
            with contextlib.suppress(PalletError):
                owner = files.lookup_owner(workspace.root, state.config["User"])
        copier = files.Copier(workspace.root, owner, None, state.clamp)
        copier.make_dirs(state.config["WorkingDir"])
        with tempfile.TemporaryFile() as layer:
            non_empty = copier.write(layer)
            layer.seek(0)
            solver.store_tar(stage, state, step, key, layer, non_empty, text)
