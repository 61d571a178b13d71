"""The transformers backend: wiring with stand-in objects, then a tiny real model built offline."""

from __future__ import annotations

import pytest

from vstar.synopsis import (
    BackendError,
    SynopsisInputError,
    TransformersBackend,
    build_messages,
    make_synopsis,
)


class FakeBatch(dict):
    def to(self, device):
        self["moved_to"] = device
        return self


class FakeTokenizer:
    chat_template = "{{ messages }}"
    pad_token_id = None
    eos_token_id = 0

    def __init__(self, answer: str, reject_system: bool = False) -> None:
        self.answer = answer
        self.reject_system = reject_system
        self.seen: list[list[dict]] = []
        self.decoded: list[list[int]] = []

    def apply_chat_template(self, messages, **kwargs):
        assert kwargs["add_generation_prompt"] is True
        if self.reject_system and any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        self.seen.append(messages)
        return FakeBatch(input_ids=[[5, 6, 7]])

    def decode(self, ids, skip_special_tokens=False):
        self.decoded.append(list(ids))
        return self.answer


class FakeModel:
    device = "cpu"
    name_or_path = "fake/chat-model"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def generate(self, **kwargs):
        self.calls.append(kwargs)
        return [[5, 6, 7, 8, 9]]


def test_generation_wiring():
    tokenizer, model = FakeTokenizer('["a young boy", "an old man"]'), FakeModel()
    synopsis = make_synopsis("A boy is getting old", backend=TransformersBackend(model, tokenizer=tokenizer))
    assert synopsis.states == ["a young boy", "an old man"]
    assert synopsis.backend == "transformers" and synopsis.model == "fake/chat-model"
    [messages] = tokenizer.seen
    assert '"A boy is getting old"' in messages[-1]["content"] and "a young boy" in messages[-1]["content"]
    [call] = model.calls
    assert call["input_ids"] == [[5, 6, 7]] and call["moved_to"] == "cpu"
    assert call["do_sample"] is False and call["max_new_tokens"] == 512 and call["pad_token_id"] == 0
    assert tokenizer.decoded == [[8, 9]]  # only the new tokens


def test_sampling_options():
    tokenizer, model = FakeTokenizer("1. a\n2. b"), FakeModel()
    TransformersBackend(model, tokenizer=tokenizer, temperature=0.7, max_new_tokens=20).chat(build_messages("p"))
    assert model.calls[0]["do_sample"] is True and model.calls[0]["temperature"] == 0.7
    assert model.calls[0]["max_new_tokens"] == 20


def test_system_message_is_folded_in_when_the_template_rejects_it():
    tokenizer = FakeTokenizer("1. a\n2. b", reject_system=True)
    TransformersBackend(FakeModel(), tokenizer=tokenizer).chat(build_messages("a boy is getting old"))
    [messages] = tokenizer.seen
    assert [m["role"] for m in messages] == ["user"]
    assert "video synopses" in messages[0]["content"] and "a boy is getting old" in messages[0]["content"]


def test_model_without_chat_template():
    tokenizer = FakeTokenizer("x")
    tokenizer.chat_template = None
    with pytest.raises(BackendError, match="no chat template"):
        TransformersBackend(FakeModel(), tokenizer=tokenizer).chat(build_messages("p"))


def test_empty_generation():
    with pytest.raises(BackendError, match="empty answer"):
        TransformersBackend(FakeModel(), tokenizer=FakeTokenizer("   ")).chat(build_messages("p"))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [((), {}, "needs a model id"), (("  ",), {}, "needs a model id"), ((FakeModel(),), {}, "tokenizer"),
     (("m",), {"max_new_tokens": 0}, "max_new_tokens")],
)
def test_bad_options(args, kwargs, message):
    with pytest.raises(SynopsisInputError, match=message):
        TransformersBackend(*args, **kwargs)


def test_in_memory_models_are_not_cached():
    assert TransformersBackend(FakeModel(), tokenizer=FakeTokenizer("x")).cache_identity() is None
    assert TransformersBackend("org/model").cache_identity()["model"] == "org/model"


def test_tiny_real_model_and_a_missing_one(tmp_path):
    """Real transformers objects: a word-level tokenizer with a chat template and a 1-layer random Llama."""
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>", "a", "young", "boy", "an", "old", "man", "system", "user", "assistant"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant {% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048)
    backend = TransformersBackend(LlamaForCausalLM(config).eval(), tokenizer=tokenizer, max_new_tokens=6)
    answer = backend.chat(build_messages("a boy is getting old"))
    assert isinstance(answer, str) and answer.strip()
    assert set(answer.split()) <= set(words)  # decoded from the new tokens only

    with pytest.raises(BackendError, match="cannot load the model"):  # a local path that does not exist
        TransformersBackend(str(tmp_path / "no" / "such-model")).chat(build_messages("p"))
