"""OpenCLIP's ``tokenize`` on top of the shared offline CLIP tokenizer.

OpenCLIP (ViT-H-14) uses OpenAI CLIP's byte-level BPE, so the vocabulary is the shared one of
:mod:`vstar.backbones.clip_tokenizer`; only the padding differs. :func:`tokenize` matches ``open_clip.tokenize``:
``<|startoftext|>`` (49406), the BPE tokens, ``<|endoftext|>`` (49407), then zeros up to 77. Id 0 is the byte
token ``"!"``; it is padded in by hand rather than declared the pad token (as the SD 2 tokenizer does), because a
special ``"!"`` would also split ``"!!"`` in the text.
"""

from __future__ import annotations

import torch
from transformers import CLIPTokenizer

from ..clip_tokenizer import offline_clip_tokenizer
from .config import TEXT_MAX_LENGTH


def openclip_tokenizer() -> CLIPTokenizer:
    """The CLIP tokenizer of OpenCLIP's text towers, built offline; use it through :func:`tokenize`."""
    return offline_clip_tokenizer(TEXT_MAX_LENGTH)


def tokenize(tokenizer: CLIPTokenizer, texts: list[str], length: int = TEXT_MAX_LENGTH) -> torch.Tensor:
    """Token ids ``(K, length)`` int64 as ``open_clip.tokenize``: truncated to ``length`` (ending in
    ``<|endoftext|>``) and zero-padded."""
    ids = tokenizer(list(texts), truncation=True, max_length=length).input_ids
    out = torch.zeros(len(ids), length, dtype=torch.long)
    for row, seq in zip(out, ids, strict=True):
        row[: len(seq)] = torch.tensor(seq)
    return out
