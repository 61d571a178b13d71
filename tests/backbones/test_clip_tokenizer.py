"""The offline CLIP tokenizer gives OpenAI CLIP's token ids."""

import pytest

from vstar.backbones.clip_tokenizer import (
    VOCAB_SIZE,
    byte_symbols,
    clip_vocab_and_merges,
    offline_clip_tokenizer,
)

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def tokenizer():
    return offline_clip_tokenizer()


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("a photo of a cat", [BOS, 320, 1125, 539, 320, 2368, EOS]),
        ("a photo of a dog", [BOS, 320, 1125, 539, 320, 1929, EOS]),
        ("hello world", [BOS, 3306, 1002, EOS]),
        ("A Photo  of a CAT", [BOS, 320, 1125, 539, 320, 2368, EOS]),  # lower-cased, whitespace collapsed
        ("", [BOS, EOS]),
    ],
)
def test_known_token_ids(tokenizer, text, ids):
    assert tokenizer(text).input_ids == ids


def test_vocabulary_layout():
    vocab, merges = clip_vocab_and_merges()
    symbols = byte_symbols()
    assert len(vocab) == VOCAB_SIZE == 49408 and len(merges) == 48894
    assert len(set(symbols)) == 256 and symbols[0] == "!" and vocab["a"] == 64 and vocab["a</w>"] == 256 + 64
    assert vocab["<|startoftext|>"] == BOS and vocab["<|endoftext|>"] == EOS
    assert vocab["".join(merges[0])] == 512  # merged tokens follow the 512 byte tokens in rank order


def test_special_tokens(tokenizer):
    assert len(tokenizer) == VOCAB_SIZE
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (BOS, EOS, EOS)


def test_padding_and_truncation_to_77(tokenizer):
    batch = tokenizer(["a photo of a cat", "word " * 100], padding="max_length",
                      max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    assert tokenizer.model_max_length == 77 and tuple(batch.shape) == (2, 77)
    assert batch[0, :7].tolist() == [BOS, 320, 1125, 539, 320, 2368, EOS]
    assert (batch[0, 7:] == EOS).all()
    assert batch[1, 0] == BOS and batch[1, -1] == EOS


def test_decode_roundtrip(tokenizer):
    ids = tokenizer("a ferrari driving on the road, starts to snow").input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a ferrari driving on the road , starts to snow"


def test_cached_per_length():
    assert offline_clip_tokenizer() is offline_clip_tokenizer(77)
    assert offline_clip_tokenizer(32).model_max_length == 32
