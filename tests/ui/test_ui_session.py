"""Per-session output folders under the vstar cache, and the cleaning of old ones."""

import os
import time

import pytest

from vstar.ui.session import MAX_AGE_S, clean_sessions, session_dir, ui_root


def test_session_folders_live_under_the_vstar_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VSTAR_CACHE_DIR", str(tmp_path / "cache"))
    folder = session_dir("k3x9a_b-2")
    assert folder == tmp_path / "cache" / "ui" / "k3x9a_b-2" and folder.is_dir()
    assert ui_root(tmp_path / "elsewhere") == tmp_path / "elsewhere" / "ui"


@pytest.mark.parametrize("session_id", ["", "../escape", "a/b", "x" * 65])
def test_a_session_id_cannot_name_another_folder(session_id, tmp_path):
    with pytest.raises(ValueError, match="a session id is 1-64 letters, digits, '-' or '_'"):
        session_dir(session_id, tmp_path)


def test_cleaning_removes_only_sessions_untouched_for_a_day(tmp_path):
    old, recent, touched = (session_dir(name, tmp_path) for name in ("old", "recent", "touched"))
    now = time.time()
    for folder, age in ((old, MAX_AGE_S + 60), (recent, 60), (touched, MAX_AGE_S + 60)):
        video = folder / "001-clip.mp4"
        video.write_bytes(b"video")
        os.utime(video, (now - age, now - age))
        os.utime(folder, (now - age, now - age))
    os.utime(touched / "001-clip.mp4", (now, now))  # a file written today keeps its folder
    assert clean_sessions(tmp_path, now=now) == [old]
    assert sorted(p.name for p in ui_root(tmp_path).iterdir()) == ["recent", "touched"]


def test_cleaning_a_cache_without_sessions_does_nothing(tmp_path):
    assert clean_sessions(tmp_path / "never-made") == []
