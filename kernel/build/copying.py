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


def copy_step(solver, stage, state, step: ins.Copy) -> bool:
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
    chmod = int(step.chmod, 8) if step.chmod else None
    excludes = Ignore(parse_ignore("\n".join(step.exclude))) if step.exclude else None
    sources: list[Source] = []
    # a --link layer owes nothing to its base, not even the timestamp clamp taken from the base's date
    clamp = (solver.epoch if solver.epoch is not None else 0) if step.link else state.clamp
    key_parts: list = [keyword, dest, dest_dir, chown, step.chmod, step.exclude, step.parents, clamp]
    parent_key = state.key
    fs_root_layers = None
    ref = solver.expand(step.from_, state, line) if step.from_ else ""
    if ref:
        source_stage = solver.plan.stage_by_ref(ref)
        if source_stage is not None:
            fs_root_layers = solver.results[source_stage.index].layers
            key_parts.append(["stage", solver.results[source_stage.index].key])
        else:
            image = solver.resolve_source_image(ref, line)
            fs_root_layers = solver.image_layers(image)
            key_parts.append(["image", image.id])
    for word in words:
        if is_add and word.startswith(("http://", "https://")):
            path, digest = files.download(word, getattr(step, "checksum", ""), Path(solver.journal.scratch_dir()))
            sources.append(Source("url", path=path, name=files.url_basename(word)))
            key_parts.append(["url", word, digest])
        elif fs_root_layers is not None:
            sources.append(Source("fs", rel=word))
            key_parts.append(["fs", word])
        else:
            rels = solver.context.matches(word)
            for rel in rels:
                sources.append(Source("context", rel=rel))
            key_parts.append(["context", word, solver.context.digest(rels)])
    for doc in step.heredocs:
        text = process_word(doc.content, state.env(), "\x00") if doc.expand and "$" in doc.content else doc.content
        sources.append(Source("heredoc", data=text.encode(), name=doc.name))
        key_parts.append(["heredoc", doc.name, text])
    if getattr(step, "checksum", "") and not any(s.kind == "url" for s in sources):
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
        copier = files.Copier(workspace.root, owner, chmod, clamp)
        into_dir = dest_dir or (not step.link and copier.is_dir(dest))
        source_ws = Workspace(solver.engine, solver.journal, solver.store.ensure_chain(fs_root_layers)) \
            if fs_root_layers is not None else None
        try:
            for source in sources:
                _copy_one(solver, copier, source, source_ws, dest, into_dir, step, is_add, excludes)
            with tempfile.TemporaryFile() as layer:
                non_empty = copier.write(layer)  # reads the sources: before their mount goes away
                layer.seek(0)
                solver.store_tar(stage, state, step, key, layer, non_empty)
        finally:
            if source_ws is not None:
                source_ws.close()
    if step.link:
        state.key = step_key(parent_key, key)  # what follows still depends on the parent
    return False


def _copy_one(solver, copier, source: Source, source_ws, dest: str, into_dir: bool, step, is_add: bool,
              excludes) -> None:
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
        root = source_ws.root
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
