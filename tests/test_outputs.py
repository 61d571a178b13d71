"""What vstar may replace, claims, and all-or-nothing results (vstar.outputs)."""

import errno
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from vstar import outputs
from vstar.io import sidecar_path, write_sidecar, write_video
from vstar.outputs import (
    FRAMES_MARKER,
    authorship_problem,
    check_sidecar_of,
    check_writable,
    claim_outputs,
    file_sha256,
    lock_path,
    remove_leftovers,
    staged_result,
    temp_name,
)

FRAMES = np.zeros((4, 8, 8, 3), np.uint8)


def ended_pid():
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def vstar_result(folder, name="clip.mp4", frames=FRAMES):
    """A video and the sidecar that names it with its sha256, as vstar generate writes them."""
    out = folder / name
    with staged_result() as staged:
        written = write_video(frames, out, result=staged)
        sidecar = {"vstar_version": "0.3.0", "kind": "generation", "model": "toy-shapes", "synopsis": ["a cat"],
                   "output": out.name, "files": {out.name: file_sha256(written)}}
        write_sidecar(sidecar, sidecar_path(out), result=staged)
    return out


# --- authorship ---------------------------------------------------------------------------------------------
def test_a_video_is_replaced_only_when_its_sidecar_names_it_with_its_hash(tmp_path):
    out = vstar_result(tmp_path)
    check_writable(out, True, "video", sidecar_path(out))  # vstar's own: may be replaced
    with pytest.raises(FileExistsError, match="already exists; pass --overwrite"):
        check_writable(out, False, "video", sidecar_path(out))
    out.write_bytes(out.read_bytes() + b"edited")  # the user changed it since
    with pytest.raises(FileExistsError, match="sha256 differs"):
        check_writable(out, True, "video", sidecar_path(out))
    mine = tmp_path / "holiday.mp4"
    mine.write_bytes(b"a user's video")
    with pytest.raises(FileExistsError, match="no vstar record beside it"):
        check_writable(mine, True, "video", sidecar_path(mine))
    sidecar_path(mine).write_text(json.dumps({"vstar_version": "0.2.0", "model": "m", "synopsis": ["x"],
                                              "output": "holiday.mp4"}))
    with pytest.raises(FileExistsError, match="not named by holiday.json"):  # a 0.2.0 sidecar has no hashes
        check_writable(mine, True, "video", sidecar_path(mine))


@pytest.mark.parametrize("kind,content,expected", [
    ("sidecar", {"vstar_version": "0.2.0", "model": "m", "synopsis": ["x"]}, None),  # 0.2.0: no kind
    ("sidecar", {"vstar_version": "0.3.0", "kind": "generation", "model": "m", "synopsis": ["x"]}, None),
    ("sidecar", {"vstar_version": "0.3.0", "kind": "analysis"}, "is a vstar analysis record"),
    ("sidecar", {"model": "m", "synopsis": ["x"]}, "is not a file vstar wrote"),
    ("analysis", {"vstar_version": "0.3.0", "kind": "analysis"}, None),
    ("analysis", {"vstar_version": "0.2.0", "settings": {}, "videos": {}}, "is not a file vstar wrote"),
    ("evaluation", {"vstar_version": "0.3.0", "kind": "evaluation"}, None),
    ("evaluation", {"vstar_version": "0.3.0", "kind": "generation"}, "is a vstar generation record"),
    ("evaluation", {"videos": []}, "is not a file vstar wrote"),
])
def test_json_records_are_replaced_only_by_a_command_of_their_kind(tmp_path, kind, content, expected):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(content))
    problem = authorship_problem(path, kind)
    assert problem == expected if expected is None else expected in problem


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_figures_carry_a_marker_and_only_marked_ones_are_replaced(tmp_path, suffix):
    from matplotlib.figure import Figure

    from vstar.analysis.plots import save_figure

    figure = Figure()
    figure.add_subplot().plot([0, 1])
    ours = save_figure(figure, tmp_path / f"ours{suffix}")
    assert authorship_problem(ours, "figure") is None
    save_figure(figure, ours, overwrite=True)
    theirs = tmp_path / f"theirs{suffix}"
    figure.savefig(theirs, format=suffix[1:])  # matplotlib's own metadata
    assert "metadata does not name vstar" in authorship_problem(theirs, "figure")
    with pytest.raises(FileExistsError, match="only replaces what vstar can show it wrote"):
        save_figure(figure, theirs, overwrite=True)


def test_frames_folders_need_the_marker_and_only_frames(tmp_path):
    out = tmp_path / "frames"
    write_video(FRAMES, out)
    assert authorship_problem(out, "frames") is None
    write_video(FRAMES[:2], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [FRAMES_MARKER, "frame_00000.png", "frame_00001.png"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write"):
        write_video(FRAMES, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_sidecar_of_another_existing_output_is_not_taken_over(tmp_path):
    vstar_result(tmp_path, "x.mp4")
    with pytest.raises(FileExistsError, match="is the sidecar of .*x.mp4"):
        check_sidecar_of(tmp_path / "x.json", tmp_path / "x.gif")
    check_sidecar_of(tmp_path / "x.json", tmp_path / "x.mp4")
    (tmp_path / "x.mp4").unlink()  # an orphan sidecar may go
    check_sidecar_of(tmp_path / "x.json", tmp_path / "x.gif")


def test_pipes_and_links_are_refused(tmp_path):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        check_writable(fifo, True, "video")
    link = tmp_path / "link.mp4"
    link.symlink_to(tmp_path / "elsewhere.mp4")
    with pytest.raises(ValueError, match="symbolic link"):
        check_writable(link, True, "video")


# --- all-or-nothing -----------------------------------------------------------------------------------------
def test_a_failing_file_leaves_the_previous_result_whole(tmp_path, monkeypatch):
    out = vstar_result(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        with staged_result(overwrite=True) as staged:
            write_video(FRAMES[:2], out, result=staged)
            monkeypatch.setattr(type(tmp_path), "write_text", full_disk)
            write_sidecar({"vstar_version": "0.3.0"}, sidecar_path(out), result=staged)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_failing_rename_restores_what_was_replaced(tmp_path, monkeypatch):
    out = vstar_result(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace
    calls = []

    def replace(source, target):
        calls.append(target)
        if str(target).endswith(".json") and ".vstar-tmp" in str(source):  # the sidecar's rename into place
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(source, target)

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(OSError, match="Input/output"):
        with staged_result(overwrite=True) as staged:
            write_video(FRAMES[:2], out, result=staged)
            write_sidecar({"vstar_version": "0.3.0", "kind": "generation", "model": "m", "synopsis": ["x"]},
                          sidecar_path(out), result=staged)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the new video was taken back
    assert any(str(c).endswith(".mp4") for c in calls)


def test_outputs_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        frames = write_video(FRAMES, tmp_path / "frames")
        with staged_result() as staged:
            tmp = staged.stage(tmp_path / "noise.safetensors", "noise")
            os.chmod(tmp, 0o600)  # as a library writing a file of its own might leave it
    finally:
        os.umask(old)
    assert stat.S_IMODE(frames.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "noise.safetensors").stat().st_mode) == 0o644


def test_created_folders_are_removed_when_nothing_is_written(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_result() as staged:
            staged.stage(tmp_path / "a" / "b" / "clip.mp4", "video")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


# --- claims and leftovers -----------------------------------------------------------------------------------
def test_claims_stop_a_second_writer_and_stale_claims_are_taken_over(tmp_path):
    out = tmp_path / "clip.mp4"
    with claim_outputs(out, tmp_path / "clip.json"):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
        with pytest.raises(FileExistsError, match=f"process {os.getpid()}"):
            with claim_outputs(out):
                pass
        assert lock_path(out).exists()  # the failed claim did not remove the holder's lock
    assert list(tmp_path.iterdir()) == []
    for stale in (str(ended_pid()), "", json.dumps({"pid": ended_pid(), "start": 1})):
        lock_path(out).write_text(stale)  # an ended run's claim (bare pid of vstar 0.2.0, empty, this format)
        with claim_outputs(out):
            assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
        assert list(tmp_path.iterdir()) == []


def test_a_claim_whose_pid_now_belongs_to_another_process_is_stale(tmp_path):
    out = tmp_path / "clip.mp4"
    started = outputs.process_start(os.getpid())
    lock_path(out).write_text(json.dumps({"pid": os.getpid(), "start": started - 1000}))  # same id, older run
    with claim_outputs(out):
        assert json.loads(lock_path(out).read_text())["start"] == started


def test_a_full_disk_while_claiming_leaves_no_claim(tmp_path, monkeypatch):
    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_text", full_disk)
    with pytest.raises(OSError, match="No space"):
        with claim_outputs(tmp_path / "clip.mp4"):
            pass
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_ended_runs_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "clip.mp4"
    live = temp_name(out)
    live.write_bytes(b"being written")
    dead_file = tmp_path / f".clip.mp4.{ended_pid()}-1700000000.0123abcd.vstar-tmp.mp4"
    dead_file.write_bytes(b"half")
    dead_folder = tmp_path / f".frames.{ended_pid()}-1700000000.0123abcd.vstar-tmp"
    dead_folder.mkdir()
    other = tmp_path / f".other.mp4.{ended_pid()}-1700000000.0123abcd.vstar-tmp.mp4"
    other.write_bytes(b"another output's")
    assert remove_leftovers(out) == [dead_file]
    assert remove_leftovers(tmp_path / "frames") == [dead_folder]
    assert live.exists() and other.exists()


def test_a_previous_output_set_aside_by_a_killed_commit_is_put_back(tmp_path):
    out = tmp_path / "frames"
    set_aside = tmp_path / f".frames.{ended_pid()}-1700000000.0123abcd.vstar-old"
    set_aside.mkdir()
    (set_aside / "frame_00000.png").write_bytes(b"the previous result")
    assert remove_leftovers(out) == [set_aside]
    assert (out / "frame_00000.png").read_bytes() == b"the previous result" and not set_aside.exists()
    again = tmp_path / f".frames.{ended_pid()}-1700000000.4567abcd.vstar-old"
    again.mkdir()  # the new output is in place: the set-aside one goes
    assert remove_leftovers(out) == [again] and not again.exists() and out.exists()


KILLED_WRITER = """
import sys, time
import numpy as np
import vstar.io as io
from vstar.outputs import claim_outputs

def slow(path, *args, **kwargs):
    open(path / "frame_00000.png" if path.is_dir() else path, "wb").write(b"partial")
    print("writing", flush=True)
    time.sleep(60)

io.iio.imwrite = slow
out = io.Path(sys.argv[1])
with claim_outputs(out):
    io.write_video(np.zeros((2, 8, 8, 3), np.uint8), out)
"""


@pytest.mark.parametrize("name", ["clip.mp4", "frames"])
def test_sigkill_mid_write_then_a_rerun_cleans_up_and_writes(tmp_path, name):
    out = tmp_path / name
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.kill()
    child.wait(timeout=20)
    assert len(list(tmp_path.iterdir())) == 2  # what SIGKILL leaves: the claim and the temporary file/folder
    with claim_outputs(out):
        write_video(FRAMES, out)
    assert [p.name for p in tmp_path.iterdir()] == [name]
