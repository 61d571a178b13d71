"""What the diffusers-format backbones (ModelScope/zeroscope, AnimateDiff) share.

- :class:`ModelSource`: loads components from a local folder in diffusers layout or from the Hugging Face
  hub (local cache first, then download unless ``HF_HUB_OFFLINE`` is set), raising one clear
  :class:`ModelNotAvailableError` when they are missing.
- :class:`DiffusersVideoBackbone`: the adapter behaviour the families share: CLIP text encoding, the
  per-frame UNet call and chunked KL-VAE decoding. A family only says which ``encoder_hidden_states`` its
  UNet expects.
- Tiny random components (CLIP text encoder, VAE, UNet sizes) for offline tests and demos.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers import AutoencoderKL
from diffusers.utils.torch_utils import get_module_execution_device
from huggingface_hub import constants as hub_constants
from huggingface_hub.file_download import repo_folder_name
from transformers import CLIPTextConfig, CLIPTextModel

from vstar.backbones.base import Backbone
from vstar.backbones.clip_tokenizer import VOCAB_SIZE
from vstar.backbones.unet_family import UNetBackbone
from vstar.backbones.weights_identity import LoadedFiles, folder_files, is_recording, record_loaded
from vstar.conditioning import per_frame_context

T = TypeVar("T")

PIPELINE_SUBFOLDERS: tuple[str, ...] = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
MIN_TOKENIZER_SIZE = 256  # a byte-level BPE vocabulary has at least one token per byte


class ModelNotAvailableError(RuntimeError):
    """A model's files are neither in the given folder, nor in the local cache, nor downloadable."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids network access (read now, not when huggingface_hub was imported)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is None:
        return bool(hub_constants.HF_HUB_OFFLINE)
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def default_device(device: str | torch.device | None) -> torch.device:
    """``device``, or the first CUDA GPU when there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class ModelSource:
    """Where the components of one model come from.

    ``repo_id`` names the model (a hub repository); when ``path`` is set the components are read from that
    folder only (diffusers layout: one subfolder per component) and the hub is never contacted.
    """

    repo_id: str
    path: Path | None = None
    cache_dir: str | None = None
    local_copy: str = (
        f"a local copy in diffusers layout ({', '.join(s + '/' for s in PIPELINE_SUBFOLDERS)}) with "
        "--model-path DIR (model_path=DIR in Python)"
    )

    @property
    def where(self) -> str:
        """Where the files were looked up, for error messages."""
        if self.path is not None:
            return f"the folder {self.path}"
        return f"the Hugging Face cache {self.cache_dir or hub_constants.HF_HUB_CACHE}"

    def has_subfolder(self, subfolder: str) -> bool:
        """Whether the local folder has ``subfolder`` (always False for a hub model)."""
        return self.path is not None and (self.path / subfolder).is_dir()

    def require(self, subfolders: Sequence[str]) -> None:
        """For a local folder, raise :class:`ModelNotAvailableError` unless all ``subfolders`` exist."""
        if self.path is None:
            return
        missing = [s for s in subfolders if not self.has_subfolder(s)]
        if missing:
            found = "it does not exist" if not self.path.is_dir() else f"it lacks {', '.join(m + '/' for m in missing)}"
            raise self.not_available(f"no model in diffusers layout in {self.where}: {found}")

    def load(self, loader: Callable[..., T], subfolder: str | None = None, **kwargs: Any) -> T:
        """``loader(location, subfolder=..., **kwargs)`` (a ``from_pretrained``/``load_config``), cache first.

        A hub model is looked up in the local cache and only then downloaded, unless ``HF_HUB_OFFLINE``
        is set. Missing files raise :class:`ModelNotAvailableError`. The files read are reported to
        :func:`vstar.backbones.weights_identity.record_loaded`.
        """
        loaded = self._load(loader, subfolder, **kwargs)
        if is_recording():
            root = self.path if self.path is not None else self.hub_snapshot()
            repo = None if self.path is not None else self.repo_id
            record_loaded(LoadedFiles(None, repo=repo) if root is None
                          else folder_files(root, subfolder or "", kwargs.get("variant"), repo))
        return loaded

    def hub_snapshot(self) -> Path | None:
        """The cached snapshot folder of the hub model's default revision (``.../snapshots/<commit>``), where
        a hub load without ``revision`` reads from; None when it is not cached."""
        cache = Path(self.cache_dir or hub_constants.HF_HUB_CACHE)
        repo = cache / repo_folder_name(repo_id=self.repo_id, repo_type="model")
        ref = repo / "refs" / hub_constants.DEFAULT_REVISION
        snapshot = repo / "snapshots" / ref.read_text().strip() if ref.is_file() else None
        return snapshot if snapshot is not None and snapshot.is_dir() else None

    def _load(self, loader: Callable[..., T], subfolder: str | None = None, **kwargs: Any) -> T:
        what = f"'{subfolder}' of " if subfolder else ""
        if subfolder:
            kwargs["subfolder"] = subfolder
        if self.path is not None:
            try:
                return loader(str(self.path), **kwargs)
            except OSError as error:
                raise self.not_available(f"cannot load {what}{self.where}: {error}") from error
        hub_kwargs = dict(cache_dir=self.cache_dir, **kwargs)
        try:
            return loader(self.repo_id, local_files_only=True, **hub_kwargs)
        except OSError as cached_error:
            if hub_offline():
                raise self.not_available(
                    f"{what}{self.repo_id} is not in {self.where} and HF_HUB_OFFLINE is set, so it was not downloaded"
                ) from cached_error
        try:
            return loader(self.repo_id, **hub_kwargs)
        except OSError as error:
            raise self.not_available(
                f"{what}{self.repo_id} is not in {self.where} and could not be downloaded: {error}"
            ) from error

    def load_tokenizer(self, loader: Callable[..., T], subfolder: str = "tokenizer") -> T:
        """Like :meth:`load`, treating a tokenizer that came back empty as missing.

        ``transformers`` builds an empty tokenizer instead of raising when its vocabulary files are missing.
        """

        def load_checked(*args: Any, **kwargs: Any) -> T:
            tokenizer = loader(*args, **kwargs)
            size = len(tokenizer)  # type: ignore[arg-type]
            if size < MIN_TOKENIZER_SIZE:
                raise OSError(f"no tokenizer vocabulary in '{subfolder}' (got {size} tokens)")
            return tokenizer

        return self.load(load_checked, subfolder)

    def not_available(self, reason: str) -> ModelNotAvailableError:
        """The error for missing files: what is missing, where it was looked up, and how to fix it."""
        return ModelNotAvailableError(
            f"model {self.repo_id!r} is not available: {reason}. Point vstar at {self.local_copy}, or fetch it on "
            f"a machine with network with `huggingface-cli download {self.repo_id}` (`hf download` in newer "
            "huggingface_hub; add --local-dir DIR to get a folder) and run again."
        )


def model_source(repo_id: str, model_path: str | os.PathLike[str] | None, cache_dir: str | None) -> ModelSource:
    """The :class:`ModelSource` of a loader's ``model``/``model_path``/``cache_dir`` arguments."""
    return ModelSource(repo_id, Path(model_path).expanduser() if model_path is not None else None, cache_dir)


def token_states(tokenizer: Any, text_encoder: torch.nn.Module, texts: Sequence[str]) -> torch.Tensor:
    """Per-token last hidden states ``(K, S, D)`` of ``texts`` padded to the tokenizer's max length S, on the
    encoder's device (the conditioning a model trains and samples with)."""
    tokens = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    return text_encoder(tokens.input_ids.to(get_module_execution_device(text_encoder)))[0]


class DiffusersVideoBackbone(UNetBackbone):
    """A backbone made of diffusers/transformers parts: CLIP text encoder, KL VAE, a video UNet.

    Subclasses only implement :meth:`unet_encoder_hidden_states`, the text input their UNet's ``forward``
    expects; the per-frame context reaches every spatial cross-attention through
    :func:`vstar.conditioning.per_frame_context`, installed once per generation by :meth:`per_frame_text`.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._installed_context: tuple[torch.Tensor, torch.Tensor] | None = None  # (given, on the UNet's device)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Last hidden state of the CLIP text encoder, ``(K, S, D)`` (S = tokenizer max length) on the UNet's
        device and dtype."""
        if not texts:
            raise ValueError("encode_text needs at least one text, got an empty list")
        return token_states(self.tokenizer, self.text_encoder, texts).to(device=self.device, dtype=self.dtype)

    def unet_encoder_hidden_states(self, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The ``encoder_hidden_states`` to pass to ``unet.forward`` for a ``(B*F, S, D)`` per-frame context."""
        raise NotImplementedError

    @contextlib.contextmanager
    def per_frame_text(self, context: torch.Tensor) -> Iterator[None]:
        """Wrap every spatial cross-attention so that it sees ``context`` ``(B*F, S, D)``; restored on exit."""
        on_device = context.to(device=self.device, dtype=self.dtype)
        with per_frame_context(self.unet, on_device):
            self._installed_context = (context, on_device)
            try:
                yield
            finally:
                self._installed_context = None

    def model_output(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor,
                     fps: int | None = None) -> torch.Tensor:
        """The UNet's output ``(B, C, F, h, w)`` with frame f of video b attending to ``context[b*F + f]``.

        latents: ``(B, C, F, h, w)``; timestep: scalar or ``(B,)``; context: ``(B*F, S, D)``, frame fastest
        (under guidance: negative branch videos first, see :func:`vstar.conditioning.cfg_context`).
        Outside :meth:`per_frame_text` (or with another context) the processors are installed for this call.
        ``fps`` is ignored: these UNets are not conditioned on frame rate.
        """
        self.check_context(latents, context)
        installed = self._installed_context
        if installed is not None and installed[0] is context:
            return self._call_unet(latents, timestep, installed[1])
        with self.per_frame_text(context):
            return self._call_unet(latents, timestep, self._installed_context[1])

    def _call_unet(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor) -> torch.Tensor:
        encoder_hidden_states = self.unet_encoder_hidden_states(context, latents.shape[2])
        return self.unet(latents.to(self.dtype), timestep, encoder_hidden_states=encoder_hidden_states).sample


def save_backbone(backbone: Backbone, directory: str | os.PathLike[str]) -> Path:
    """Write a backbone's components in diffusers layout (``unet/``, ``vae/``, ``text_encoder/``,
    ``tokenizer/``, ``scheduler/``) so that its loader reads it back with ``model_path=directory``."""
    directory = Path(directory)
    for name in PIPELINE_SUBFOLDERS:
        getattr(backbone, name).save_pretrained(directory / name)
    return directory


# --- tiny random components -------------------------------------------------------------------------

TINY_HIDDEN = 32  # text embedding width D = UNet cross-attention width
TINY_SIZE = 64  # pixels; the tiny VAE downsamples by 8 to 8x8 latents
TINY_UNET_KWARGS: dict[str, Any] = dict(  # 4 levels like SD-style UNets, so every TAR level exists
    sample_size=TINY_SIZE // 8, in_channels=4, out_channels=4, block_out_channels=(32, 32, 32, 32),
    layers_per_block=1, norm_num_groups=8, cross_attention_dim=TINY_HIDDEN, attention_head_dim=4,
)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block and restore the caller's generator state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_clip_text_encoder() -> CLIPTextModel:
    """A 2-layer CLIP text encoder with the real 49408-token vocabulary and width :data:`TINY_HIDDEN`."""
    config = CLIPTextConfig(vocab_size=VOCAB_SIZE, hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                            projection_dim=TINY_HIDDEN)
    return CLIPTextModel(config).eval()


def tiny_vae() -> AutoencoderKL:
    """A KL autoencoder with 4 latent channels and spatial factor 8, like Stable Diffusion's, at 8 channels wide."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=TINY_SIZE, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), norm_num_groups=4, scaling_factor=0.18215,
    ).eval()
