"""Video and sidecar writing: formats, frame counts, atomicity, overwrite protection."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import vstar.io as io
from vstar.io import (
    FRAMES_MARKER,
    claim_outputs,
    lock_path,
    read_sidecar,
    read_video,
    sidecar_path,
    to_uint8,
    write_sidecar,
    write_video,
)


@pytest.fixture
def frames():
    """A smooth moving gradient, so that lossy codecs stay close to the input."""
    t, y, x = np.meshgrid(np.arange(12), np.arange(32), np.arange(48), indexing="ij")
    video = np.stack([(x + 2 * t) / 72, y / 32, np.full_like(y, 0.5, dtype=float)], axis=-1)
    return video.astype(np.float32)


@pytest.mark.parametrize("name,tolerance", [("clip.mp4", 6.0), ("clip.gif", 12.0), ("frames", 0.0)])
def test_round_trip_keeps_frame_count_and_content(tmp_path, frames, name, tolerance):
    path = write_video(frames, tmp_path / name, fps=8)
    back = read_video(path)
    assert back.shape == (12, 32, 48, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(float) - to_uint8(frames).astype(float)).mean() <= tolerance
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary files left


def test_png_folder_is_exact_and_numbered(tmp_path, frames):
    write_video(frames, tmp_path / "out", fps=8)
    names = sorted(os.listdir(tmp_path / "out"))
    assert names[:3] == [FRAMES_MARKER, "frame_00000.png", "frame_00001.png"] and len(names) == len(frames) + 1
    np.testing.assert_array_equal(read_video(tmp_path / "out"), to_uint8(frames))


def test_mp4_bytes_are_reproducible(tmp_path, frames):
    a = write_video(frames, tmp_path / "a.mp4").read_bytes()
    b = write_video(frames, tmp_path / "b.mp4").read_bytes()
    assert a == b


def test_existing_output_is_kept_without_overwrite(tmp_path, frames):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_video(frames, path)
    assert path.read_bytes() == b"precious"
    write_video(frames, path, overwrite=True)
    assert read_video(path).shape[0] == 12


def test_failed_write_leaves_nothing_behind(tmp_path, frames):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(ValueError, match=r"shape \(F, H, W, 3\)"):
        write_video(frames[..., :2], path, overwrite=True)
    assert path.read_bytes() == b"precious" and os.listdir(tmp_path) == ["clip.mp4"]


@pytest.mark.parametrize("name,message", [("clip.avi", "unsupported output"), ("clip.mp4", "fps must be >= 1")])
def test_bad_output_arguments(tmp_path, frames, name, message):
    with pytest.raises(ValueError, match=message):
        write_video(frames, tmp_path / name, fps=0 if name.endswith("mp4") else 8)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder(tmp_path, frames):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="cannot write"):
        write_video(frames, locked / "clip.mp4")


def test_unwritable_parent_is_a_file(tmp_path, frames):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="not a writable folder"):
        write_video(frames, tmp_path / "file" / "clip.mp4")


def test_sidecar_round_trip_and_errors(tmp_path):
    assert sidecar_path("out/clip.mp4").name == "clip.json" and sidecar_path("out/frames").name == "frames.json"
    meta = {"prompt": "a cat", "seed": 3, "synopsis": ["a", "b"]}
    path = write_sidecar(meta, tmp_path / "clip.json")
    assert read_sidecar(path) == meta and json.loads(path.read_text())["seed"] == 3
    with pytest.raises(FileExistsError):
        write_sidecar(meta, path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_sidecar(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_sidecar(tmp_path / "list.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sidecar(tmp_path / "missing.json")


def test_upscale_repeats_pixels(tmp_path, frames):
    write_video(frames, tmp_path / "big", upscale=3)
    big = read_video(tmp_path / "big")
    assert big.shape == (12, 96, 144, 3)
    np.testing.assert_array_equal(big[:, ::3, ::3], to_uint8(frames))
    with pytest.raises(ValueError, match="upscale must be >= 1"):
        write_video(frames, tmp_path / "x.mp4", upscale=0)


def test_written_files_get_the_usual_permissions(tmp_path, frames):
    old = os.umask(0o022)
    try:
        path = write_video(frames, tmp_path / "clip.gif")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_overwrite_replaces_only_vstars_own_frames_folder(tmp_path, frames):
    out = tmp_path / "frames"
    write_video(frames[:2], out)
    write_video(frames[:3], out, overwrite=True)  # our own folder: replaced
    assert len(list(out.glob("frame_*.png"))) == 3
    (out / "notes.txt").write_text("mine")  # the user put a file in it: no longer only ours
    with pytest.raises(FileExistsError, match="did not write"):
        write_video(frames[:2], out, overwrite=True)
    mywork = tmp_path / "mywork"
    mywork.mkdir()
    (mywork / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="only replaces vstar's own outputs"):
        write_video(frames[:2], mywork, overwrite=True)
    assert (mywork / "thesis.tex").read_text() == "years of work" and (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "mywork"]


def test_overwrite_replaces_only_a_vstar_sidecar(tmp_path):
    theirs = tmp_path / "clip.json"
    theirs.write_text('{"their": "data"}')
    with pytest.raises(FileExistsError, match="not a vstar sidecar"):
        write_sidecar({"vstar_version": "0.2.0"}, theirs, overwrite=True)
    theirs.write_text('{"vstar_version": "0.2.0"}')
    write_sidecar({"vstar_version": "0.2.0", "x": 1}, theirs, overwrite=True)
    assert read_sidecar(theirs)["x"] == 1


@pytest.mark.parametrize("case,message", [
    ("symlink", "symbolic link"),
    ("long", "shorter name"),
    ("folder-for-file", "is a folder"),
    ("file-for-folder", "not a folder of PNG frames"),
])
def test_unusable_output_paths_fail_before_writing(tmp_path, frames, case, message):
    if case == "symlink":
        (tmp_path / "target.mp4").write_bytes(b"keep")
        path = tmp_path / "link.mp4"
        path.symlink_to(tmp_path / "target.mp4")
    elif case == "long":
        path = tmp_path / ("x" * 250 + ".gif")
    elif case == "folder-for-file":
        path = tmp_path / "clip.gif"
        path.mkdir()
    else:
        path = tmp_path / "frames"
        path.write_bytes(b"keep")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises((ValueError, OSError), match=message):
        write_video(frames, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_full_disk_leaves_no_temporary_file(tmp_path, frames, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.iio, "imwrite", full)
    with pytest.raises(OSError, match="No space"):
        write_video(frames, tmp_path / "clip.gif")
    assert list(tmp_path.iterdir()) == []


def test_claims_stop_a_second_writer_and_stale_claims_are_taken_over(tmp_path):
    out = tmp_path / "clip.mp4"
    with claim_outputs(out, tmp_path / "clip.json"):
        assert lock_path(out).read_text() == str(os.getpid())
        with pytest.raises(FileExistsError, match=f"process {os.getpid()}"):
            with claim_outputs(out):
                pass
        assert lock_path(out).exists()  # the failed claim did not remove the holder's lock
    assert list(tmp_path.iterdir()) == []
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(out).write_text(finished.stdout.strip())  # a claim whose process has ended
    with claim_outputs(out):
        assert lock_path(out).read_text() == str(os.getpid())
    assert list(tmp_path.iterdir()) == []


SLOW_WRITER = """
import sys, time
import numpy as np
import vstar.io as io
from vstar.cli import _terminate
import signal
signal.signal(signal.SIGTERM, _terminate)

def slow(path, *args, **kwargs):
    open(path, "wb").write(b"partial")
    print("writing", flush=True)
    time.sleep(30)

io.iio.imwrite = slow
with io.claim_outputs(io.Path(sys.argv[1])):
    io.write_video(np.zeros((2, 8, 8, 3), np.uint8), sys.argv[1])
"""


def test_sigterm_mid_write_leaves_nothing(tmp_path):
    out = tmp_path / "clip.mp4"
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.iterdir())) == 2  # the hidden temporary file and the claim
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=20) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
