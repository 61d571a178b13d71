"""The ``transformers`` backend: a local Hugging Face causal LM that has a chat template.

``transformers`` (and with it torch) is imported only when the model is first used.
"""

from __future__ import annotations

from typing import Any

from ..errors import BackendError, SynopsisInputError
from .base import LLMBackend


class TransformersBackend(LLMBackend):
    """Generates the synopsis with a local instruction-tuned model, e.g. ``Qwen/Qwen2.5-1.5B-Instruct``.

    ``model`` is a Hub id or a local path (loaded on first use), or an already loaded model object, in which
    case ``tokenizer`` must be given too. Decoding is greedy unless ``temperature > 0``.
    """

    name = "transformers"

    def __init__(
        self,
        model: Any = None,
        *,
        tokenizer: Any = None,
        device: str | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        trust_remote_code: bool = False,
    ) -> None:
        if model is None or (isinstance(model, str) and not model.strip()):
            raise SynopsisInputError(
                "the transformers backend needs a model id or path, e.g. model='Qwen/Qwen2.5-1.5B-Instruct'"
            )
        if not isinstance(model, str) and tokenizer is None:
            raise SynopsisInputError("a preloaded model needs its tokenizer: pass tokenizer=...")
        if max_new_tokens < 1:
            raise SynopsisInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self._model_ref = model
        self._tokenizer = tokenizer
        self._loaded = None if isinstance(model, str) else model
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.trust_remote_code = trust_remote_code

    @property
    def model(self) -> str:
        if isinstance(self._model_ref, str):
            return self._model_ref
        return str(getattr(self._model_ref, "name_or_path", None) or type(self._model_ref).__name__)

    def cache_identity(self) -> dict[str, Any] | None:
        if not isinstance(self._model_ref, str):
            return None  # an in-memory model has no stable identity
        return {"backend": self.name, "model": self._model_ref, "temperature": self.temperature}

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is not None and self._tokenizer is not None:
            return self._tokenizer, self._loaded
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise BackendError("the transformers backend needs transformers: pip install transformers") from None
        name = self._model_ref
        try:
            if self._tokenizer is None:
                self._tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=self.trust_remote_code)
            if self._loaded is None:
                model = AutoModelForCausalLM.from_pretrained(
                    name, torch_dtype="auto", trust_remote_code=self.trust_remote_code
                )
                self._loaded = model.to(self.device) if self.device else model
        except (OSError, ValueError) as exc:
            detail = " ".join(str(exc).split()).rstrip(". ")
            raise BackendError(
                f"cannot load the model {name!r}: {detail}; check the model id or path (download it first when "
                "offline)"
            ) from None
        return self._tokenizer, self._loaded

    def chat(self, messages: list[dict[str, str]]) -> str:
        tokenizer, model = self._load()
        if not getattr(tokenizer, "chat_template", None):
            raise BackendError(
                f"the model {self.model!r} has no chat template; use an instruction-tuned (chat) model, "
                "e.g. Qwen/Qwen2.5-1.5B-Instruct"
            )
        try:
            inputs = _encode(tokenizer, messages)
        except Exception:  # some templates (e.g. Gemma) reject a system message: fold it into the user turn
            inputs = _encode(tokenizer, _merge_system(messages))
        if hasattr(inputs, "to") and hasattr(model, "device"):
            inputs = inputs.to(model.device)
        options: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.temperature > 0}
        if self.temperature > 0:
            options["temperature"] = self.temperature
        pad = getattr(tokenizer, "pad_token_id", None)
        options["pad_token_id"] = pad if pad is not None else getattr(tokenizer, "eos_token_id", None)
        output = model.generate(**inputs, **options)
        prompt_length = len(inputs["input_ids"][0])
        answer = tokenizer.decode(output[0][prompt_length:], skip_special_tokens=True)
        if not answer.strip():
            raise BackendError(f"the model {self.model!r} returned an empty answer; try a larger chat model")
        return answer


def _encode(tokenizer: Any, messages: list[dict[str, str]]) -> Any:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)


def _merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest:
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest
