"""ModelSource: local cache first, then download unless HF_HUB_OFFLINE; one clear error otherwise."""

import pytest

from vstar.backbones.loading import ModelNotAvailableError, ModelSource, hub_offline


class FakeHub:
    """A ``from_pretrained`` stand-in: cached files answer ``cached``, downloads answer ``remote``."""

    def __init__(self, cached=None, remote=None):
        self.cached, self.remote, self.calls = cached, remote, []

    def __call__(self, location, local_files_only=False, **kwargs):
        self.calls.append((location, local_files_only, kwargs))
        answer = self.cached if local_files_only else self.remote
        if answer is None:
            raise OSError(f"{location} has no files ({'cache' if local_files_only else 'download'})")
        return answer


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("ON", True), ("true", True), ("0", False), ("", False)])
def test_hub_offline_reads_the_environment_now(monkeypatch, value, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline


def test_cache_hit_does_not_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub = FakeHub(cached="weights")
    assert ModelSource("org/model").load(hub, "unet") == "weights"
    assert hub.calls == [("org/model", True, {"cache_dir": None, "subfolder": "unet"})]


def test_cache_miss_downloads_when_online(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub = FakeHub(remote="weights")
    assert ModelSource("org/model", cache_dir="/cache").load(hub, "vae") == "weights"
    assert [local for _, local, _ in hub.calls] == [True, False]


def test_cache_miss_offline_raises_without_downloading(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = FakeHub(remote="weights")
    with pytest.raises(ModelNotAvailableError, match=r"'vae' of org/model is not in the Hugging Face cache /cache"):
        ModelSource("org/model", cache_dir="/cache").load(hub, "vae")
    assert [local for _, local, _ in hub.calls] == [True]


def test_failed_download_is_reported_with_its_cause(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(ModelNotAvailableError, match=r"could not be downloaded: org/model has no files \(download\)"):
        ModelSource("org/model").load(FakeHub(), "unet")


def test_empty_tokenizer_from_the_cache_falls_back_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    vocabulary = ["tok"] * 300
    assert ModelSource("org/model").load_tokenizer(FakeHub(cached=[], remote=vocabulary)) == vocabulary
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="HF_HUB_OFFLINE is set"):
        ModelSource("org/model").load_tokenizer(FakeHub(cached=[], remote=vocabulary))


def test_local_folder_never_touches_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    (tmp_path / "unet").mkdir()
    hub = FakeHub(cached="cached", remote="remote")
    source = ModelSource("org/model", tmp_path)
    source.require(["unet"])
    assert source.load(hub, "unet") == "remote" and hub.calls == [(str(tmp_path), False, {"subfolder": "unet"})]
    with pytest.raises(ModelNotAvailableError, match=r"lacks vae/, scheduler/"):
        source.require(["unet", "vae", "scheduler"])
