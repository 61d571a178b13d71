"""The CLIP text tokenizer, built offline from the BPE vocabulary shipped with vstar.

Every backbone here encodes text with a CLIP text encoder, whose tokenizer is fixed: OpenAI's 49408-token
byte-level BPE. Loading it from a model repository needs the network or a cache; this module builds the
same tokenizer from ``data/bpe_simple_vocab_16e6.txt.gz`` (see ``data/NOTICE``) so that tiny test models
and offline runs tokenize exactly like the real ones.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer

BPE_VOCAB_PATH = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48894 merges of the file
VOCAB_SIZE = 49408  # 256 bytes + 256 end-of-word bytes + merges + start/end tokens
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE, in vocabulary order.

    Bytes that are already printable (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves and come
    first; the remaining 68 bytes get the code points 256, 257, ... in increasing byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def clip_vocab_and_merges(path: Path = BPE_VOCAB_PATH) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (token -> id, 49408 entries) and ranked BPE merges from the gzipped merges file."""
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]  # line 0 is a version header
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{path} is not a CLIP BPE merges file ({len(merges)} usable merge lines)")
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges), START_TOKEN, END_TOKEN]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"{path} gives {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab, merges  # type: ignore[return-value]


def offline_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A ``transformers.CLIPTokenizer`` identical to OpenAI CLIP's, built without network access.

    Texts are lower-cased, wrapped in ``<|startoftext|>`` (49406) ... ``<|endoftext|>`` (49407) and, with
    ``padding="max_length"``, padded with ``<|endoftext|>`` to ``model_max_length`` tokens. Cached: every call
    with the same length returns the same object, so do not mutate it.
    """
    return _cached_tokenizer(int(model_max_length))


@lru_cache(maxsize=4)
def _cached_tokenizer(model_max_length: int) -> CLIPTokenizer:
    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
