"""What vstar may write and replace, and how a result's files reach the disk: claims, proof of authorship,
and all-or-nothing commits.

- **Claims.** :func:`claim_outputs` creates ``.NAME.vstar-lock`` beside each output before any work, so a
  second run writing the same output fails at once. A claim records the process id, its start time and the
  host; a claim whose process has ended (or whose id now belongs to a process started later) is taken over.
- **Authorship.** ``--overwrite`` replaces only what vstar can show it wrote (:func:`check_writable`): a
  folder of PNG frames with its marker file; a converted model folder with vstar's ``model_index.json``; a vstar JSON of the same kind (``vstar_version`` and ``kind``);
  a figure whose metadata names vstar; a video or noise file that its record (the sidecar beside it, or the
  analysis JSON) names together with its sha256. Nothing else is ever replaced or deleted.
- **Results.** The files of one result (a video, its sidecar and its noise file; an analysis's JSON and
  figures) are written under hidden temporary names and renamed into place together by
  :meth:`StagedResult.commit`: a full disk, Ctrl-C or SIGTERM (see :func:`vstar.cli.main`) leaves the
  previous result or nothing, never half of one. Temporary names carry the writer's process id and start
  time, so what a killed run left behind is removed by the next run that claims the same output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

OutputKind = Literal["video", "noise", "frames", "model", "sidecar", "analysis", "evaluation", "figure", "batch",
                     "gallery", "table"]
FOLDER_KINDS = ("frames", "model")  # written as folders
# The kinds proven by a JSON record that names the file with its sha256 (the sidecar, the analysis JSON).
RECORDED_KINDS = ("video", "noise", "table")
# The kinds that are vstar JSON files, by the ``kind`` they hold.
JSON_KINDS = {"sidecar": "generation", "analysis": "analysis", "evaluation": "evaluation", "batch": "batch"}
FRAMES_MARKER = ".vstar-frames"  # inside every PNG folder vstar writes
FRAME_NAME = re.compile(r"^frame_\d{5}\.png$")
# A converted model folder (`vstar convert-videocrafter2`): its model_index.json names this class, and it holds
# nothing but these entries.
MODEL_CLASS = "VideoCrafter2Backbone"
MODEL_ENTRIES = frozenset({"unet", "vae", "text_encoder", "tokenizer", "scheduler", "model_index.json"})
FIGURE_CREATOR = "vstar"  # the start of the creator/software entry in the metadata of vstar's figures
GALLERY_MARKER = '<meta name="generator" content="vstar'  # in the head of every gallery page vstar writes
# ".NAME." + "PID-START." + 8 random hex + ".vstar-tmp" + suffix: the hidden names beside an output
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<start>\d+)\.[0-9a-f]{8}\.vstar-(?P<role>tmp|old|lock)")
TEMP_OVERHEAD = 48  # bytes a temporary name adds to an output's name (at most)


# --- processes ---------------------------------------------------------------------------------------------
def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in whole seconds since the epoch; None when it does not exist."""
    try:
        return int(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:  # e.g. access denied: it exists
        return -1


def run_alive(pid: int, start: int | None) -> bool:
    """Whether the run of process ``pid`` started at ``start`` (None: unknown, then any process ``pid``) runs."""
    if pid <= 0:
        return False
    now = process_start(pid)
    if now is None:
        return False
    return start is None or now == -1 or abs(now - start) <= 1


def _this_run() -> tuple[int, int]:
    pid = os.getpid()
    return pid, process_start(pid) or 0


def temp_name(path: Path, role: Literal["tmp", "old", "lock"] = "tmp") -> Path:
    """A hidden name beside ``path`` that says which run made it: ``.NAME.PID-START.RANDOM.vstar-ROLE[SUFFIX]``."""
    pid, start = _this_run()
    return path.with_name(f".{path.name}.{pid}-{start}.{secrets.token_hex(4)}.vstar-{role}{path.suffix}")


def remove_leftovers(path: Path) -> list[Path]:
    """Clean up what runs that have ended left beside ``path``: their temporary files and folders are removed,
    and a previous output that a run killed mid-commit had set aside is put back when ``path`` is missing.
    Returns the temporary paths handled."""
    handled = []
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return handled
    for entry in folder.iterdir():
        match = TEMP_NAME.match(entry.name)
        if not match or match["name"] != path.name or run_alive(int(match["pid"]), int(match["start"])):
            continue
        if match["role"] == "old" and not path.exists() and not path.is_symlink():
            os.replace(entry, path)
        else:
            _remove(entry)
        handled.append(entry)
    return handled


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- claims -------------------------------------------------------------------------------------------------
def lock_path(path: Path) -> Path:
    """The claim file of an output: ``.NAME.vstar-lock`` beside it."""
    return path.with_name(f".{path.name}.vstar-lock")


def _read_claim(lock: Path) -> dict[str, Any]:
    """A claim's holder: ``pid``, ``start`` (None when unknown) and ``host``; pid 0 when unreadable or empty
    (a claim of an older vstar holds the bare process id)."""
    try:
        text = lock.read_text().strip()
    except OSError:
        return {"pid": 0, "start": None, "host": None}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return {"pid": int(data.get("pid") or 0), "start": data.get("start"), "host": data.get("host")}
    return {"pid": int(text) if text.isdigit() else 0, "start": None, "host": None}


def _create_claim(lock: Path) -> bool:
    """Create ``lock`` holding this run, whole or not at all; False when another claim exists."""
    pid, start = _this_run()
    text = json.dumps({"pid": pid, "start": start, "host": socket.gethostname()})
    staged = temp_name(lock, "lock")
    try:
        staged.write_text(text)
        try:
            os.link(staged, lock)  # atomic: the claim appears with its content or not at all
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, removed again if writing fails
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
            except BaseException:
                lock.unlink(missing_ok=True)
                raise
        return True
    finally:
        staged.unlink(missing_ok=True)


@contextmanager
def claim_outputs(*paths: Path) -> Iterator[None]:
    """Claim outputs before the work starts, so a second run writing them fails at once instead of at the end.

    A claim held by a live run is an error naming its process; one left by a run that has ended is taken over,
    and that run's temporary files are removed. Claims are removed when the block ends (also on Ctrl-C and
    SIGTERM). A full disk while claiming leaves no claim behind.
    """
    taken: list[Path] = []
    try:
        for path in paths:
            lock = lock_path(path)
            lock.parent.mkdir(parents=True, exist_ok=True)
            while not _create_claim(lock):
                holder = _read_claim(lock)
                elsewhere = holder["host"] not in (None, socket.gethostname())
                if elsewhere or run_alive(holder["pid"], holder["start"]):
                    where = f" on {holder['host']}" if elsewhere else ""
                    raise FileExistsError(f"another vstar run (process {holder['pid']}{where}) is writing {path}; "
                                          f"wait for it or choose another --out (or delete {lock} if it has ended)")
                lock.unlink(missing_ok=True)  # a stale claim of a run that has ended
            taken.append(lock)
            remove_leftovers(path)
        yield
    finally:
        for lock in taken:
            lock.unlink(missing_ok=True)


def slug(text: str, limit: int = 40) -> str:
    """``"A red circle!"`` -> ``"a-red-circle"``: a name for an output made from text (lower-case letters, digits
    and dashes, at most ``limit`` characters)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "video"


# --- authorship ---------------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is not readable text holding one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def json_kind(data: dict[str, Any]) -> str | None:
    """The kind of a vstar JSON (``generation``, ``analysis``, ``evaluation``), None for other JSON. Sidecars
    of vstar 0.1.0 and 0.2.0 carry no ``kind``: a ``model`` and a ``synopsis`` make them generation records."""
    if "vstar_version" not in data:
        return None
    if isinstance(data.get("kind"), str):
        return data["kind"]
    return "generation" if "synopsis" in data and "model" in data else None


def recorded_files(record: dict[str, Any]) -> dict[str, str]:
    """The files a vstar JSON names with their sha256: its ``files`` and, in sidecars, its noise entry."""
    files = {k: v for k, v in (record.get("files") or {}).items() if isinstance(v, str)} \
        if isinstance(record.get("files"), dict) else {}
    noise = record.get("noise")
    if isinstance(noise, dict) and isinstance(noise.get("file"), str) and isinstance(noise.get("sha256"), str):
        files.setdefault(noise["file"], noise["sha256"])
    return files


def figure_marked(path: Path) -> bool:
    """Whether the figure at ``path`` names vstar as its creator in its metadata (see :func:`figure_metadata`)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                image.load()
                return str(getattr(image, "text", {}).get("Software", "")).startswith(FIGURE_CREATOR)
        data = path.read_bytes()
    except (OSError, ValueError, SyntaxError):
        return False
    if suffix == ".pdf":
        return f"/Creator ({FIGURE_CREATOR}".encode() in data
    if suffix == ".svg":
        return f"<dc:title>{FIGURE_CREATOR}".encode() in data
    return False


def figure_metadata(suffix: str, version: str) -> dict[str, str]:
    """The matplotlib ``savefig`` metadata that marks a figure as vstar's (``Software`` in PNG, ``Creator``
    in PDF and SVG)."""
    return {("Software" if suffix.lower() == ".png" else "Creator"): f"{FIGURE_CREATOR} {version}"}


def authorship_problem(path: Path, kind: OutputKind, record: Path | None = None) -> str | None:
    """Why vstar cannot show that it wrote ``path`` (an existing output of ``kind``); None when it can.

    ``record``: for videos and noise files, the vstar JSON that must name ``path`` with its sha256.
    """
    if kind == "frames":
        marked = path.is_dir() and (path / FRAMES_MARKER).is_file()
        if marked and all(e.name == FRAMES_MARKER or FRAME_NAME.match(e.name) for e in path.iterdir()):
            return None
        return f"holds files vstar did not write (no {FRAMES_MARKER} marker, or more than frame_*.png)"
    if kind == "model":
        index = read_json_object(path / "model_index.json")
        if index is not None and index.get("_class_name") == MODEL_CLASS and \
                {e.name for e in path.iterdir()} <= MODEL_ENTRIES:
            return None
        return f"holds files vstar did not write (no vstar model_index.json, or more than {', '.join(sorted(MODEL_ENTRIES))})"
    if kind in JSON_KINDS:
        data = read_json_object(path)
        found = json_kind(data) if data is not None else None
        if found == JSON_KINDS[kind]:
            return None
        return f"is a vstar {found} record, not a {JSON_KINDS[kind]} one" if found else "is not a file vstar wrote"
    if kind == "figure":
        return None if figure_marked(path) else "is not a figure vstar wrote (its metadata does not name vstar)"
    if kind == "gallery":
        try:
            marked = GALLERY_MARKER in path.read_text(encoding="utf-8", errors="replace")[:2000]
        except OSError:
            marked = False
        return None if marked else "is not a gallery page vstar wrote (no generator tag naming vstar)"
    data = read_json_object(record) if record is not None else None
    if data is None or json_kind(data) is None:
        return f"has no vstar record beside it that names it ({record.name if record else 'none'})"
    expected = recorded_files(data).get(path.name)
    if expected is None:
        return f"is not named by {record.name}"
    if not path.is_file() or file_sha256(path) != expected:
        return f"has changed since vstar wrote it (its sha256 differs from the one in {record.name})"
    return None


def name_limit(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` accepts (255 where it cannot tell)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_writable(path: Path, overwrite: bool, kind: OutputKind = "video", record: Path | None = None) -> None:
    """Fail before any work when vstar may not write ``path``: it exists and ``overwrite`` is off or vstar
    cannot show it wrote it (:func:`authorship_problem`, with ``record`` for videos and noise files), it is a
    symbolic link or the wrong kind of thing (a folder, a FIFO, a device), its name is too long, or its
    folder cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {parent}: {existing} is not a writable folder")
    limit = name_limit(existing)
    if len(path.name.encode()) + TEMP_OVERHEAD > limit:
        raise ValueError(f"the output name {path.name[:40]}... is {len(path.name.encode())} bytes; this file system "
                         f"allows {limit} (vstar needs {TEMP_OVERHEAD} of them for its temporary names): choose "
                         "a shorter name")
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link; vstar does not write through links: give the real path")
    if not path.exists() or (kind in FOLDER_KINDS and path.is_dir() and not any(path.iterdir())):
        return  # nothing there, or an empty folder: nothing of anyone's is replaced
    if kind in FOLDER_KINDS and not path.is_dir():
        raise FileExistsError(f"{path} is a file, not a folder; choose another output folder")
    if kind not in FOLDER_KINDS and path.is_dir():
        example = f" (e.g. {path.name}.mp4)" if kind == "video" else ""
        raise IsADirectoryError(f"{path} is a folder; give a file name{example} or another path")
    if kind not in FOLDER_KINDS and not path.is_file():
        raise ValueError(f"{path} is not a regular file (a pipe, socket or device); vstar writes files: choose "
                         "another --out")
    if not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite (overwrite=True) or choose another path")
    problem = authorship_problem(path, kind, record)
    if problem:
        raise FileExistsError(f"{path} {problem}; --overwrite only replaces what vstar can show it wrote: choose "
                              "another --out or move it away yourself")


def check_sidecar_of(sidecar: Path, output: Path) -> None:
    """Refuse to write ``sidecar`` for ``output`` while it is the sidecar of another output that still exists
    (``x.gif`` would take over ``x.json`` of ``x.mp4`` and leave that video without one)."""
    data = read_json_object(sidecar) if sidecar.is_file() else None
    named = data.get("output") if data is not None and json_kind(data) == "generation" else None
    if isinstance(named, str) and named != output.name and (sidecar.parent / named).exists():
        raise FileExistsError(f"{sidecar} is the sidecar of {sidecar.parent / named}; writing {output.name} would "
                              f"leave that video without one: choose another --out (e.g. {output.stem}-2{output.suffix})")


# --- all-or-nothing results ---------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class _Staged:
    final: Path
    tmp: Path
    kind: OutputKind
    record: Path | None


@dataclass
class StagedResult:
    """The files of one result, written under temporary names and renamed into place together.

    :meth:`stage` checks that a path may be written and returns the temporary path to write it to (a folder
    for ``kind="frames"``, with the frames marker, and ``"model"``; an empty file otherwise); :meth:`commit` checks again and
    renames every staged file into place, restoring the previous files if a rename fails; :meth:`discard`
    removes the temporary files. Use :func:`staged_result`.
    """

    overwrite: bool = False
    staged: list[_Staged] = field(default_factory=list)
    created_folders: list[Path] = field(default_factory=list)

    def stage(self, path: Path, kind: OutputKind, record: Path | None = None) -> Path:
        check_writable(path, self.overwrite, kind, record)
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.created_folders += missing
        tmp = temp_name(path)
        if kind in FOLDER_KINDS:
            tmp.mkdir()
        if kind == "frames":
            (tmp / FRAMES_MARKER).write_text("frames written by vstar; --overwrite may replace this folder\n")
        elif kind != "model":
            tmp.touch(exist_ok=False)
        self.staged.append(_Staged(path, tmp, kind, record))
        return tmp

    def commit(self) -> None:
        """Rename every staged file into place (with the usual permissions under the umask), all or none."""
        for item in self.staged:
            check_writable(item.final, self.overwrite, item.kind, item.record)
        mask = _umask()
        for item in self.staged:
            item.tmp.chmod((0o777 if item.tmp.is_dir() else 0o666) & ~mask)
        done: list[tuple[_Staged, Path | None]] = []
        try:
            for item in self.staged:
                backup = _set_aside(item.final) if item.final.exists() else None
                done.append((item, backup))
                os.replace(item.tmp, item.final)
        except BaseException:
            for item, backup in reversed(done):
                _restore(item.final, backup)
            self.discard()
            raise
        for _, backup in done:
            if backup is not None:
                _remove(backup)
        self.staged.clear()

    def discard(self) -> None:
        for item in self.staged:
            _remove(item.tmp)
        self.staged.clear()
        for folder in sorted(set(self.created_folders), key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()  # only what this result created, and only when empty
            except OSError:
                continue


def _set_aside(final: Path) -> Path:
    """Keep the previous ``final`` under a temporary name until the commit is done: a hard link for a file
    (``final`` never goes missing), a rename for a folder."""
    backup = temp_name(final, "old")
    if final.is_file():
        try:
            os.link(final, backup)
            return backup
        except OSError:
            pass
    os.replace(final, backup)
    return backup


def _restore(final: Path, backup: Path | None) -> None:
    """Undo one rename of :meth:`StagedResult.commit`: the previous file back, or the new one removed."""
    if backup is None:
        _remove(final)
        return
    if final.exists() and os.path.samefile(backup, final):  # never replaced: the backup is a second link
        backup.unlink()
        return
    if backup.is_dir():
        _remove(final)
    os.replace(backup, final)


@contextmanager
def staged_result(overwrite: bool = False) -> Iterator[StagedResult]:
    """Stage the files of one result in the block; they are committed together when it ends, and discarded
    on any error or signal that raises inside it."""
    result = StagedResult(overwrite)
    try:
        yield result
    except BaseException:
        result.discard()
        raise
    result.commit()


@contextmanager
def staging(result: StagedResult | None, overwrite: bool) -> Iterator[StagedResult]:
    """``result`` when the caller stages a larger result, else a new one committed when the block ends."""
    if result is not None:
        yield result
        return
    with staged_result(overwrite) as own:
        yield own


@contextmanager
def atomic_path(path: Path, overwrite: bool, kind: OutputKind = "video", record: Path | None = None) -> Iterator[Path]:
    """A result of one file: yield its temporary path; it replaces ``path`` when the block ends, or is removed
    on any error."""
    with staged_result(overwrite) as result:
        yield result.stage(path, kind, record)
