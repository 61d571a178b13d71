"""Which weights a backbone was loaded with: a JSON-ready identity for sidecars, and how two identities differ.

Loaders report the files they read through :func:`record_loaded` (:class:`vstar.backbones.loading.ModelSource`
does so for every component it loads); :func:`vstar.backbones.registry.load_backbone` collects the reports
with :func:`recording_loads` and stores the identity on the backbone, where :func:`weights_identity` reads it.

What is read to fingerprint a file (:func:`file_digest`):

- a file of at most :data:`WHOLE_FILE_LIMIT` (64 MiB; every shipped file of vstar, configs, small models):
  all of it; its digest is its plain sha256 (``sha256sum`` prints the same hex);
- a larger file: its size, its header (a safetensors file: the 8-byte length and the JSON header with every
  tensor's name, dtype, shape and offsets; a zip checkpoint as ``torch.save`` writes ``.ckpt``/``.bin``/``.pt``:
  the central directory with every record's name, size and CRC-32) and :data:`SAMPLE_BLOCKS` blocks of
  :data:`SAMPLE_BLOCK_BYTES` spread evenly over the data, the first and the last included: about 17 MiB of
  a multi-GB file. A fine-tune changes nearly every tensor and so the sampled bytes, and a re-saved zip
  checkpoint with any changed tensor has a changed CRC-32; an edit confined to bytes outside the sampled
  blocks of a safetensors file or a legacy (non-zip) pickle, or an in-place edit of a zip record that leaves
  its CRC-32 as it was, is *not* detected.

Models built in code from a seed are fingerprinted from their state dict (names, dtypes, shapes and bytes of
every tensor, a few MB), before any dtype cast.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypedDict

import torch
from torch import nn

WHOLE_FILE_LIMIT = 64 * 2**20  # bytes: files up to this size are hashed whole
SAMPLE_BLOCKS = 17  # odd, so that one block is centred on the middle of the data
SAMPLE_BLOCK_BYTES = 2**20
MAX_SAFETENSORS_HEADER = 100_000_000  # bytes: the safetensors format's own limit on its JSON header
CHECKPOINT_SUFFIXES = frozenset({".safetensors", ".bin", ".ckpt", ".pt", ".pth"})
# diffusers' and transformers' weight file names, in the order they prefer them
STANDARD_WEIGHTS = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
                    "pytorch_model.bin")
HUB_REVISION = re.compile(r"[0-9a-f]{40}")

Source = Literal["hub", "path", "shipped", "built", "unknown"]


class WeightsIdentity(TypedDict):
    """The identity of a backbone's weights, as stored in a sidecar (JSON-ready).

    ``model``: the registry name (the backbone's ``model_id`` for one not loaded by name). ``source``: where the
    weights came from: ``"hub"``, ``"path"`` (a local copy), ``"shipped"`` (files installed with vstar),
    ``"built"`` (random weights built in code from ``seed``) or ``"unknown"``. ``repos``: hub repository id ->
    commit hash (None when unknown) of every hub snapshot read. ``path``: the local copy as given (``"path"``
    only). ``seed``: the weight seed (``"built"`` only). ``files``: file name relative to the folder it was
    loaded from -> its :func:`file_digest`. ``fingerprint``: ``"sha256:<hex>"`` over ``files`` (over the state
    dict for ``"built"``), None when no file is known.
    """

    model: str | None
    source: Source
    repos: dict[str, str | None]
    path: str | None
    seed: int | None
    files: dict[str, str]
    fingerprint: str | None


# --- what the loaders read ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedFiles:
    """Files one loader call read: ``files`` lie under ``root`` (a local copy, a hub snapshot, a package folder)
    and are named relative to it; ``repo`` is the hub repository read, if any (``root`` is None when its
    snapshot folder could not be found)."""

    root: Path | None
    files: tuple[Path, ...] = ()
    repo: str | None = None


_LOADS: ContextVar[list[LoadedFiles] | None] = ContextVar("vstar_loaded_weights", default=None)


@contextlib.contextmanager
def recording_loads() -> Iterator[list[LoadedFiles]]:
    """Collect what loaders report with :func:`record_loaded` inside the block (in this thread/task only)."""
    loads: list[LoadedFiles] = []
    token = _LOADS.set(loads)
    try:
        yield loads
    finally:
        _LOADS.reset(token)


def is_recording() -> bool:
    """Whether a :func:`recording_loads` block is open, so that reporting a load is worth the look-ups."""
    return _LOADS.get() is not None


def record_loaded(loaded: LoadedFiles) -> None:
    """Report files a loader read; nothing happens outside :func:`recording_loads`."""
    loads = _LOADS.get()
    if loads is not None:
        loads.append(loaded)


def _with_variant(name: str, variant: str | None) -> str:
    """diffusers' and transformers' variant naming: ``model.safetensors`` -> ``model.fp16.safetensors``."""
    if not variant:
        return name
    stem, suffix = name.rsplit(".", 1)
    return f"{stem}.{variant}.{suffix}"


def weight_files(folder: Path, variant: str | None = None) -> list[Path]:
    """The weight files a diffusers/transformers ``from_pretrained`` of ``folder`` reads: the first of
    :data:`STANDARD_WEIGHTS` (with ``variant``, e.g. ``"fp16"``) present as one file or as the shards of its
    ``.index.json``; an empty list when there is none."""
    for name in STANDARD_WEIGHTS:
        single = folder / _with_variant(name, variant)
        if single.is_file():
            return [single]
        index = folder / _with_variant(f"{name}.index.json", variant)
        if index.is_file():
            shards = json.loads(index.read_text())["weight_map"].values()
            return [folder / shard for shard in sorted(set(shards))]
    return []


def folder_files(root: Path, folder: str = "", variant: str | None = None, repo: str | None = None) -> LoadedFiles:
    """What a loader reads from the component folder ``root/folder``: its :func:`weight_files` (else every
    checkpoint file in it, e.g. an original ``model.ckpt``) and its ``config.json``."""
    directory = root / folder
    if not directory.is_dir():
        return LoadedFiles(root, (), repo)
    weights = weight_files(directory, variant) or sorted(
        path for path in directory.iterdir() if path.suffix in CHECKPOINT_SUFFIXES and path.is_file())
    config = directory / "config.json"
    return LoadedFiles(root, (*weights, *([config] if config.is_file() else [])), repo)


def hub_origin(path: Path) -> tuple[str, str] | None:
    """``(repo id, commit hash)`` when ``path`` lies in a Hugging Face cache snapshot
    (``.../models--org--name/snapshots/<40 hex>/...``), else None."""
    parts = path.parts
    for i in range(len(parts) - 2):
        if (parts[i].startswith("models--") and parts[i + 1] == "snapshots"
                and HUB_REVISION.fullmatch(parts[i + 2])):
            return parts[i].removeprefix("models--").replace("--", "/"), parts[i + 2]
    return None


# --- fingerprints -----------------------------------------------------------------------------------------------


def sample_offsets(start: int, size: int) -> list[int]:
    """Where the :data:`SAMPLE_BLOCKS` blocks of the data ``[start, size)`` begin: evenly spaced, the first at
    ``start``, the last ending at ``size``."""
    span = max(size - start - SAMPLE_BLOCK_BYTES, 0)
    return sorted({start + i * span // (SAMPLE_BLOCKS - 1) for i in range(SAMPLE_BLOCKS)})


def _hash_header(handle: BinaryIO, path: Path, size: int, digest: Any) -> int:
    """Feed the header of a large weight file to ``digest``; return where its data begins."""
    if path.suffix == ".safetensors":
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little")
        if len(prefix) == 8 and 0 < length <= min(size - 8, MAX_SAFETENSORS_HEADER):
            digest.update(prefix + handle.read(length))
            return 8 + length
    elif zipfile.is_zipfile(handle):
        with zipfile.ZipFile(handle) as archive:
            for info in archive.infolist():
                digest.update(f"{info.filename}\t{info.file_size}\t{info.CRC:08x}\n".encode())
    return 0


def file_digest(path: Path) -> str:
    """``"sha256:<hex>"`` of the whole file up to :data:`WHOLE_FILE_LIMIT` bytes, else ``"sampled-sha256:<hex>"``
    over its size, header and sampled blocks (the module docstring says what that detects)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= WHOLE_FILE_LIMIT:
            return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
        digest = hashlib.sha256(f"size {size}\n".encode())
        start = _hash_header(handle, path, size, digest)
        for offset in sample_offsets(start, size):
            handle.seek(offset)
            digest.update(handle.read(SAMPLE_BLOCK_BYTES))
    return "sampled-sha256:" + digest.hexdigest()


def state_fingerprint(module: nn.Module) -> str:
    """``"sha256:<hex>"`` over the name, dtype, shape and bytes of every tensor of ``module``'s state dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}\t{flat.dtype}\t{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return "sha256:" + digest.hexdigest()


# --- identities -------------------------------------------------------------------------------------------------


def files_identity(model: str, source: Source, loads: Sequence[LoadedFiles],
                   path: str | Path | None = None) -> WeightsIdentity:
    """The identity of weights read from files, ``loads`` as the loaders reported them (``path``: the local copy
    as the user gave it). Reads each distinct file as :func:`file_digest` says.

    Files are named relative to the folder they were loaded from; vstar's loaders never read two files of the
    same relative name (each component comes from one folder).
    """
    repos: dict[str, str | None] = {}
    files: dict[str, str] = {}
    seen: set[Path] = set()  # a file several loads read (a UNet's config, read for its class, then to load it)
    for loaded in loads:
        origin = hub_origin(loaded.root) if loaded.root is not None else None
        if origin is not None:
            repos[origin[0]] = origin[1]
        elif loaded.repo is not None:
            repos.setdefault(loaded.repo, None)
        for file in loaded.files:
            if file not in seen:
                seen.add(file)
                files[file.relative_to(loaded.root).as_posix()] = file_digest(file)
    fingerprint = None
    if files:
        lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(files.items()))
        fingerprint = "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    return WeightsIdentity(model=model, source=source, repos=repos, path=None if path is None else str(path),
                           seed=None, files=dict(sorted(files.items())), fingerprint=fingerprint)


def built_identity(model: str, seed: int, module: nn.Module) -> WeightsIdentity:
    """The identity of random weights built in code from ``seed`` (``module``'s state dict, hashed whole)."""
    return WeightsIdentity(model=model, source="built", repos={}, path=None, seed=seed, files={},
                           fingerprint=state_fingerprint(module))


def weights_identity(backbone: nn.Module) -> WeightsIdentity:
    """The identity of ``backbone``'s weights: a copy of what :func:`vstar.backbones.load_backbone` recorded
    (in its ``weights_identity`` attribute) when it loaded them, so nothing is read here. A backbone built
    by hand has source ``"unknown"`` and no fingerprint."""
    recorded = getattr(backbone, "weights_identity", None)
    if recorded is not None:
        return copy.deepcopy(recorded)
    return WeightsIdentity(model=getattr(backbone, "model_id", None), source="unknown", repos={}, path=None,
                           seed=None, files={}, fingerprint=None)


# --- comparing --------------------------------------------------------------------------------------------------

NO_IDENTITY = ("the sidecar records no weights identity (vstar 0.2.0 or older wrote it), so whether these are "
               "the same weights cannot be checked")


@dataclass(frozen=True)
class WeightsComparison:
    """How the loaded weights compare with recorded ones.

    ``differs``: one line per reason the weights differ (model, source, hub revision, seed, fingerprint and the
    files behind it), empty when they are the same or sameness is unknown. ``unknown``: why sameness cannot
    be checked (the record has no identity, or a side has no fingerprint and nothing else differs), else None.
    """

    differs: tuple[str, ...] = ()
    unknown: str | None = None

    @property
    def same(self) -> bool:
        """Whether the weights are known to be the same."""
        return not self.differs and self.unknown is None


def _short(value: Any) -> str:
    """A hash shortened to 12 hex digits after its scheme (``sha256:1a2b3c4d5e6f``), other values as they are."""
    text = str(value)
    if HUB_REVISION.fullmatch(text):
        return text[:12]
    scheme, _, hexdigits = text.rpartition(":")
    return f"{scheme}:{hexdigits[:12]}" if scheme and len(hexdigits) == 64 else text


def identity_differences(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> WeightsComparison:
    """Compare a recorded identity (from a sidecar; None when it has none) with the current one.

    Equal fingerprints mean the same weights whatever else differs (e.g. a hub copy and a local copy of the
    same files). Otherwise each difference becomes a line ``"<what>: recorded <x>, loaded <y>"``.
    """
    if recorded is None:
        return WeightsComparison(unknown=NO_IDENTITY)
    old, new = recorded.get("fingerprint"), current.get("fingerprint")
    if old is not None and old == new:
        return WeightsComparison()
    reasons = [f"{what}: recorded {_short(recorded.get(key))}, loaded {_short(current.get(key))}"
               for key, what in (("model", "model"), ("source", "source"), ("path", "local copy"),
                                 ("seed", "weight seed"))
               if recorded.get(key) != current.get(key)]
    old_repos, new_repos = recorded.get("repos") or {}, current.get("repos") or {}
    reasons += [f"revision of {repo}: recorded {_short(old_repos[repo])}, loaded {_short(new_repos[repo])}"
                for repo in sorted(set(old_repos) & set(new_repos))
                if old_repos[repo] and new_repos[repo] and old_repos[repo] != new_repos[repo]]
    if old is not None and new is not None:
        old_files, new_files = recorded.get("files") or {}, current.get("files") or {}
        changed = sorted(name for name in set(old_files) | set(new_files) if old_files.get(name) != new_files.get(name))
        detail = f" (files that differ: {', '.join(changed)})" if changed else ""
        reasons.append(f"fingerprint: recorded {_short(old)}, loaded {_short(new)}{detail}")
    if reasons:
        return WeightsComparison(differs=tuple(reasons))
    side = "the sidecar's" if old is None else "the loaded"
    return WeightsComparison(unknown=f"{side} weights of {current.get('model')!r} have no fingerprint, so whether "
                                     "they are the same cannot be checked")
