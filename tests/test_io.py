"""Video and sidecar writing and reading: formats, frame counts, atomicity, overwrite protection, bad input."""

import json
import os
import signal
import subprocess
import sys
from traceback import format_exception

import numpy as np
import pytest

import vstar.io as io
from vstar.io import (
    read_sidecar,
    read_video,
    sidecar_path,
    to_uint8,
    write_sidecar,
    write_video,
)
from vstar.outputs import FRAMES_MARKER


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
    with pytest.raises(FileExistsError, match="only replaces what vstar can show it wrote"):
        write_video(frames, path, overwrite=True)  # no sidecar names it: not vstar's to replace
    assert path.read_bytes() == b"precious"


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
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
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
    with pytest.raises(FileExistsError, match="only replaces what vstar can show it wrote"):
        write_video(frames[:2], mywork, overwrite=True)
    assert (mywork / "thesis.tex").read_text() == "years of work" and (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "mywork"]


def test_overwrite_replaces_only_a_vstar_sidecar(tmp_path):
    theirs = tmp_path / "clip.json"
    theirs.write_text('{"their": "data"}')
    with pytest.raises(FileExistsError, match="is not a file vstar wrote"):
        write_sidecar({"vstar_version": "0.2.0"}, theirs, overwrite=True)
    theirs.write_text('{"vstar_version": "0.2.0", "model": "toy-shapes", "synopsis": ["a cat"]}')  # a 0.2.0 sidecar
    write_sidecar({"vstar_version": "0.3.0", "kind": "generation", "x": 1}, theirs, overwrite=True)
    assert read_sidecar(theirs)["x"] == 1


@pytest.mark.parametrize("case,message", [
    ("symlink", "symbolic link"),
    ("long", "shorter name"),
    ("folder-for-file", "is a folder"),
    ("file-for-folder", "is a file, not a folder"),
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
        write_video(frames, tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


SLOW_WRITER = """
import sys, time
import numpy as np
import vstar.io as io
from vstar.cli import _terminate
from vstar.outputs import claim_outputs
import signal
signal.signal(signal.SIGTERM, _terminate)

def slow(path, *args, **kwargs):
    open(path, "wb").write(b"partial")
    print("writing", flush=True)
    time.sleep(30)

io.iio.imwrite = slow
with claim_outputs(io.Path(sys.argv[1])):
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


# --- reading: bad input is one line naming the file; PNG folders of any mode; every written frame kept ---

def bad_input(tmp_path, case):
    """A path in a new folder of ``tmp_path`` that is not a readable video, of the kind ``case`` names."""
    folder = tmp_path / case.replace(" ", "_")
    folder.mkdir()
    path = folder / {"pdf": "paper.pdf", "text gif": "x.gif", "empty gif": "x.gif", "truncated gif": "x.gif",
                       "no pngs": "frames", "broken png": "frames"}.get(case, "x.mp4")
    moving = np.random.default_rng(0).random((24, 64, 64, 3), dtype=np.float32)
    if case in ("text", "text gif"):
        path.write_text("not a video at all\n")
    elif case in ("empty", "empty gif"):
        path.write_bytes(b"")
    elif case == "pdf":
        path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")
    elif case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif case in ("truncated", "truncated gif"):
        whole = write_video(moving, folder / f"whole{path.suffix}").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif case == "no frames":  # a well-formed mp4 whose video stream has no frames
        import imageio_ffmpeg

        source = write_video(moving[:4], folder / "source.mp4")
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(source), "-frames:v", "0",
                        "-c", "copy", str(path)], check=True)
    elif case == "no pngs":
        path.mkdir()
        (path / "notes.txt").write_text("frames come later")
    elif case == "broken png":
        write_video(moving[:3], path)
        (path / "frame_00001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return path


BAD_INPUTS = ["text", "empty", "pdf", "random bytes", "truncated", "no frames", "text gif", "empty gif",
              "truncated gif", "no pngs", "broken png"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_a_one_line_value_error_naming_the_file(tmp_path, case):
    path = bad_input(tmp_path, case)
    with pytest.raises(ValueError) as caught:
        read_video(path)
    message = str(caught.value)
    assert message.startswith(f"could not read {path}: ") and message.endswith(io.VIDEO_HINT), message
    assert "\n" not in message and "ffmpeg" not in message.lower() and len(message) < 250, message
    traceback = "".join(format_exception(caught.value))
    assert "ffmpeg" not in traceback.lower() and "stderr" not in traceback  # not in a chained error either


def test_bad_input_messages_say_what_is_wrong(tmp_path):
    assert "the file is empty (0 bytes)" in str(pytest.raises(ValueError, read_video, bad_input(tmp_path, "empty")).value)
    assert "holds no PNG frames" in str(pytest.raises(ValueError, read_video, bad_input(tmp_path, "no pngs")).value)
    broken = pytest.raises(ValueError, read_video, bad_input(tmp_path, "broken png")).value
    assert "frame_00001.png is not a PNG image" in str(broken)
    with pytest.raises(ValueError, match="could not read the TAR reference .*x.mp4: not a video"):
        read_video(bad_input(tmp_path, "text"), f"the TAR reference {tmp_path / 'x.mp4'}")


def test_a_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gone\.mp4 does not exist; give an \.mp4, a \.gif or a folder"):
        read_video(tmp_path / "gone.mp4")


def test_a_file_without_read_permission(tmp_path, frames, monkeypatch):
    path = write_video(frames, tmp_path / "clip.mp4")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: refuse the open as the kernel does for everyone else
        real_open = io.Path.open

        def denied(self, *args, **kwargs):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(io.Path, "open", denied)
    with pytest.raises(ValueError, match=f"could not read {path}: permission denied; give an .mp4"):
        read_video(path)


def write_png(path, array, mode=None, palette=None):
    from PIL import Image

    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette)
    image.save(path)


def test_png_frames_of_every_mode_read_as_their_rgb_values(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    gray, alpha = rng.integers(0, 256, (2, 6, 5), dtype=np.uint8)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    cases = {  # what is written -> the RGB values expected back
        "L": (lambda p: write_png(p, gray), np.repeat(gray[..., None], 3, -1)),
        "LA": (lambda p: write_png(p, np.stack([gray, alpha], -1), "LA"), np.repeat(gray[..., None], 3, -1)),
        "P": (lambda p: write_png(p, index, "P", palette.ravel().tolist()), palette[index]),
        "RGBA": (lambda p: write_png(p, np.dstack([rgb, alpha])), rgb),
        "I;16": (lambda p: write_png(p, gray.astype(np.uint16) * 257), np.repeat(gray[..., None], 3, -1)),
        "RGB 16-bit": (lambda p: cv2.imwrite(str(p), rgb[..., ::-1].astype(np.uint16) * 257), rgb),
    }
    for mode, (write, want) in cases.items():
        folder = tmp_path / mode.replace(" ", "_").replace(";", "")
        folder.mkdir()
        for i in range(2):
            write(folder / f"frame_{i}.png")
        back = read_video(folder)
        assert back.shape == (2, 6, 5, 3) and back.dtype == np.uint8, mode
        np.testing.assert_array_equal(back, np.stack([want, want]), err_msg=mode)


def test_png_frames_are_in_natural_order_and_other_files_are_skipped(tmp_path):
    for number in (10, 2, 1):
        write_png(tmp_path / f"frame_{number}.png", np.full((4, 4, 3), number, np.uint8))
    write_png(tmp_path / "frame_3.PNG", np.full((4, 4, 3), 3, np.uint8))
    write_png(tmp_path / ".frame_0.png", np.full((4, 4, 3), 99, np.uint8))  # hidden: skipped
    (tmp_path / "notes.txt").write_text("not a frame")
    assert read_video(tmp_path)[:, 0, 0, 0].tolist() == [1, 2, 3, 10]


def test_png_frames_of_different_sizes_are_refused(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 6, 3), np.uint8))
    write_png(tmp_path / "b.png", np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(ValueError, match=r"PNG frames differ in size \(a.png is 6x4, b.png is 6x5\); give PNG frames of"):
        read_video(tmp_path)


@pytest.mark.parametrize("name", ["clip.gif", "clip.mp4", "frames"])
@pytest.mark.parametrize("order", [[0] * 8, [0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 2, 2, 2, 3, 0, 0], [0]])
def test_every_written_frame_is_kept(tmp_path, frames, name, order):
    video = frames[order]  # all identical, identical pairs, a still middle, one frame
    back = read_video(write_video(video, tmp_path / name))
    assert back.shape == (len(order), 32, 48, 3)
    assert np.abs(back.astype(float) - to_uint8(video).astype(float)).mean() <= 12


@pytest.mark.parametrize("fps,delays", [(8, [120, 130]), (10, [100]), (24, [40, 50])])
def test_gif_loops_and_keeps_the_video_length(tmp_path, frames, fps, delays):
    from PIL import Image

    path = write_video(frames[[0] * 12], tmp_path / "still.gif", fps=fps)
    with Image.open(path) as gif:
        assert gif.n_frames == 12 and gif.info["loop"] == 0
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert set(durations) <= set(delays) and abs(sum(durations) - 12 * 1000 / fps) <= 5


def test_gif_frames_that_change_in_part_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    background = colours[rng.integers(0, 30, (24, 32))]  # few colours: each GIF palette holds them exactly
    video = np.repeat(background[None], 6, axis=0)
    for f in (1, 2, 4):  # a block moves in frames 1, 2 and 4; frames 3 and 5 repeat the one before
        video[f:, 5:9, 3 * f:3 * f + 5] = colours[30 + f]
    np.testing.assert_array_equal(read_video(write_video(video, tmp_path / "block.gif")), video)


@pytest.mark.parametrize("name", ["empty.gif", "empty.mp4", "empty"])
def test_a_video_without_frames_is_not_written(tmp_path, name):
    with pytest.raises(ValueError, match=r"shape \(F, H, W, 3\) with F, H, W >= 1, got \(0, 8, 8, 3\)"):
        write_video(np.zeros((0, 8, 8, 3), np.float32), tmp_path / name)
    assert list(tmp_path.iterdir()) == []
