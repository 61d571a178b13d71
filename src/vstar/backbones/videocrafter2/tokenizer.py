"""The OpenCLIP text tokenizer (CLIP byte-level BPE) as a ``transformers.CLIPTokenizer``, built offline.

``bpe_simple_vocab_16e6.txt.gz`` next to this file is the byte-pair vocabulary released with OpenAI's CLIP and
redistributed by open_clip (MIT licence, Copyright (c) 2021 OpenAI and the OpenCLIP authors). It holds a
version line followed by merges in priority order; the vocabulary is derived from it the way CLIP does.

:func:`tokenize` matches ``open_clip.tokenize``: ``<|startoftext|>`` (49406), the BPE tokens, ``<|endoftext|>``
(49407), then zeros up to 77. Id 0 is the byte token ``"!"``; it is padded in by hand rather than declared the
pad token (as the SD 2 tokenizer does), because a special ``"!"`` would also split ``"!!"`` in the text.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch
from transformers import CLIPTokenizer

from .config import TEXT_MAX_LENGTH

BPE_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
NUM_MERGES = 49152 - 256 - 2  # CLIP uses the first 48894 merges of the file
START, END = "<|startoftext|>", "<|endoftext|>"


def byte_symbols() -> list[str]:
    """One printable unicode character per byte value 0..255, in CLIP's vocabulary order.

    Bytes that are printable latin-1 characters stand for themselves and come first; the others are mapped to
    ``chr(256 + k)`` in byte order and come after them.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + k) for k in range(len(others))]


def clip_bpe_vocab(bpe_file: Path = BPE_FILE) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP vocabulary (49408 tokens) and its merges, from the gzipped merges file."""
    lines = gzip.open(bpe_file, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START, END]
    return {token: i for i, token in enumerate(tokens)}, merges


def openclip_tokenizer(bpe_file: Path = BPE_FILE) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` with the OpenCLIP (= OpenAI CLIP) vocabulary; use it through :func:`tokenize`."""
    vocab, merges = clip_bpe_vocab(bpe_file)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TEXT_MAX_LENGTH)


def tokenize(tokenizer: CLIPTokenizer, texts: list[str], length: int = TEXT_MAX_LENGTH) -> torch.Tensor:
    """Token ids ``(K, length)`` int64 as ``open_clip.tokenize``: truncated to ``length`` (ending in
    ``<|endoftext|>``) and zero-padded."""
    ids = tokenizer(list(texts), truncation=True, max_length=length).input_ids
    out = torch.zeros(len(ids), length, dtype=torch.long)
    for row, seq in zip(out, ids, strict=True):
        row[: len(seq)] = torch.tensor(seq)
    return out
