"""The openai backend against a real chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from vstar.synopsis import BackendError, OpenAIBackend, ParseError, SynopsisInputError, make_synopsis

KEY = "sk-test-secret-123"


def backend(server, **kw) -> OpenAIBackend:
    options = {"model": "test-model", "base_url": server.base_url, "api_key": KEY, "timeout": 0.5,
               "max_retries": 2, "backoff": 0.001}
    options.update(kw)
    return OpenAIBackend(**options)


def test_request_carries_model_instruction_and_key(chat_server):
    chat_server.answer('["A landscape in winter", "A landscape in spring"]')
    synopsis = make_synopsis("A landscape transitioning from winter to spring", backend=backend(chat_server))

    assert synopsis.states == ["A landscape in winter", "A landscape in spring"]
    assert synopsis.backend == "openai" and synopsis.model == "test-model"
    assert synopsis.raw == '["A landscape in winter", "A landscape in spring"]'
    [seen] = chat_server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body["model"] == "test-model"
    messages = seen.body["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[-1]["content"]
    assert '"A landscape transitioning from winter to spring"' in user
    assert '"a boy is getting old"' in user and '"a young boy" and "an old man"' in user
    assert "Each state is described in only one sentence" in user
    assert "do not use a narrative style" in user
    assert "JSON array" in user


def test_num_states_reaches_the_server(chat_server):
    chat_server.answer('["a", "b", "c"]')
    make_synopsis("A boy is getting old", backend=backend(chat_server), num_states=3)
    assert "exactly 3 states" in chat_server.requests[0].body["messages"][-1]["content"]


def test_no_key_sends_no_authorization_header(chat_server):
    chat_server.answer('["a young boy", "an old man"]')
    make_synopsis("A boy is getting old", backend=backend(chat_server, api_key=None))
    assert "authorization" not in chat_server.requests[0].headers


def test_key_from_environment(chat_server, monkeypatch):
    monkeypatch.setenv("VSTAR_LLM_API_KEY", "env-key")
    chat_server.answer('["a young boy", "an old man"]')
    make_synopsis("A boy is getting old", backend="openai", base_url=chat_server.base_url, model="m")
    assert chat_server.requests[0].headers["authorization"] == "Bearer env-key"


MESSY = {
    "fenced json": 'Sure! Here is the synopsis:\n```json\n["A young boy", "An old man"]\n```\nEnjoy!',
    "numbered": "Here are the states:\n1. A young boy\n2. An old man\n\nLet me know if you want more.",
    "bulleted": "- A young boy\n- An old man",
    "state prefixes": "State 1: A young boy\nState 2: An old man",
    "bold titles": "1. **Childhood:** A young boy\n2. **Old Age:** An old man",
    "duplicates and empties": '["A young boy", "", "a young boy", "  ", "An old man", "An old man"]',
    "object": '{"states": ["A young boy", "An old man"]}',
    "reasoning model": "<think>\nThe user wants states. 1. hmm\n</think>\n[\"A young boy\", \"An old man\"]",
}


@pytest.mark.parametrize("answer", MESSY.values(), ids=MESSY.keys())
def test_messy_answers_parse(chat_server, answer):
    chat_server.answer(answer)
    synopsis = make_synopsis("A boy is getting old", backend=backend(chat_server), cache=False)
    assert synopsis.states == ["A young boy", "An old man"]
    assert synopsis.raw == answer


def test_paper_figure_3_answer(chat_server):
    chat_server.answer(
        "1. **Winter's End:** The landscape is covered in a thick layer of snow, with bare trees.  \n"
        "2. **Thaw's First Touch:** Snow begins to melt, revealing patches of ground and the bases of trees.  \n"
        "3. **Spring's Prelude:** Early signs of greenery emerge as plants start to sprout and trees bud.  \n"
        "4. **Spring's Arrival:** Flowers bloom and trees are adorned with fresh leaves, adding color to the "
        "landscape.  \n"
        "5. **Spring's Full Bloom:** The landscape is fully transformed, vibrant with lush greenery and blooming "
        "flora."
    )
    synopsis = make_synopsis("A landscape transitioning from winter to spring", backend=backend(chat_server))
    assert len(synopsis.states) == 5
    assert synopsis.states[0] == "The landscape is covered in a thick layer of snow, with bare trees."
    assert not any("**" in s or "Winter's End" in s for s in synopsis.states)


def test_too_many_states_are_thinned_keeping_both_ends(chat_server):
    chat_server.answer(json.dumps([f"state {i}" for i in range(12)]))
    synopsis = make_synopsis("x from a to b", backend=backend(chat_server), max_states=4)
    assert synopsis.states == ["state 0", "state 4", "state 7", "state 11"]
    assert any("12 states" in n for n in synopsis.notes)


def test_too_few_states_fail_clearly(chat_server):
    chat_server.answer("I cannot help with that.")
    with pytest.raises(ParseError, match="need at least 2") as info:
        make_synopsis("A boy is getting old", backend=backend(chat_server))
    assert "I cannot help" in str(info.value)


def test_retries_after_500(chat_server):
    slept: list[float] = []
    chat_server.reply(500, {"error": {"message": "boom"}})
    chat_server.reply(502, "bad gateway")
    chat_server.answer('["a young boy", "an old man"]')
    synopsis = make_synopsis("A boy is getting old", backend=backend(chat_server, sleep=slept.append, backoff=0.01))
    assert synopsis.states == ["a young boy", "an old man"]
    assert len(chat_server.requests) == 3
    assert slept == [0.01, 0.02]  # exponential backoff


def test_429_honours_retry_after(chat_server):
    slept: list[float] = []
    chat_server.reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "3"})
    chat_server.answer('["a young boy", "an old man"]')
    make_synopsis("A boy is getting old", backend=backend(chat_server, sleep=slept.append))
    assert slept == [3.0]


def test_retry_after_is_capped(chat_server):
    slept: list[float] = []
    chat_server.reply(503, "", headers={"Retry-After": "3600"})
    chat_server.answer('["a", "b"]')
    make_synopsis("p", backend=backend(chat_server, sleep=slept.append, max_backoff=0.05))
    assert slept == [0.05]


def test_retries_are_bounded(chat_server):
    for _ in range(5):
        chat_server.reply(500, {"error": {"message": "still broken"}})
    with pytest.raises(BackendError, match=r"HTTP 500 \(still broken\) after 3 attempt") as info:
        make_synopsis("A boy is getting old", backend=backend(chat_server, max_retries=2))
    assert info.value.status == 500
    assert len(chat_server.requests) == 3


def test_401_is_not_retried_and_never_echoes_the_key(chat_server):
    chat_server.reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})
    with pytest.raises(BackendError, match="HTTP 401.*OPENAI_API_KEY") as info:
        make_synopsis("A boy is getting old", backend=backend(chat_server))
    assert KEY not in str(info.value)
    assert len(chat_server.requests) == 1


def test_404_names_base_url_and_model(chat_server):
    chat_server.reply(404, {"error": {"message": "model 'nope' not found"}})
    with pytest.raises(BackendError, match="404.*base_url.*'test-model'"):
        make_synopsis("A boy is getting old", backend=backend(chat_server))
    assert len(chat_server.requests) == 1


def test_hanging_server_times_out(chat_server):
    chat_server.reply(hang=True)
    start = time.monotonic()
    with pytest.raises(BackendError, match="no answer .* within 0.3 s"):
        make_synopsis("A boy is getting old", backend=backend(chat_server, timeout=0.3))
    assert time.monotonic() - start < 3


def test_invalid_json_body(chat_server):
    chat_server.reply(200, "<html>this is not an API</html>")
    with pytest.raises(BackendError, match="not JSON.*<html>"):
        make_synopsis("A boy is getting old", backend=backend(chat_server))


def test_body_without_choices(chat_server):
    chat_server.reply(200, {"error": {"message": "model is loading"}})
    with pytest.raises(BackendError, match="no chat completion.*model is loading"):
        make_synopsis("A boy is getting old", backend=backend(chat_server))


def test_empty_answer(chat_server):
    chat_server.reply(200, {"choices": [{"message": {"role": "assistant", "content": "  "}}]})
    with pytest.raises(BackendError, match="empty answer"):
        make_synopsis("A boy is getting old", backend=backend(chat_server))


def test_unreachable_server():
    with pytest.raises(BackendError, match="cannot reach"):
        make_synopsis("p", backend="openai", base_url="http://127.0.0.1:9/v1", model="m", timeout=0.5)


def test_answers_are_cached_and_reparsed(chat_server, tmp_path):
    chat_server.answer('["a young boy", "a man", "an old man"]')
    first = make_synopsis("A boy is getting old", backend=backend(chat_server))
    second = make_synopsis("A boy is getting old", backend=backend(chat_server), max_states=2)
    assert len(chat_server.requests) == 1
    assert not first.cached and second.cached
    assert second.states == ["a young boy", "an old man"]
    cached_files = list((tmp_path / "cache" / "synopsis").glob("*.json"))
    assert len(cached_files) == 1
    assert KEY not in cached_files[0].read_text()


def test_cache_key_covers_model_prompt_states_and_template(chat_server, monkeypatch):
    for _ in range(5):
        chat_server.answer('["a", "b"]')
    make_synopsis("A boy is getting old", backend=backend(chat_server))
    make_synopsis("A boy is getting old", backend=backend(chat_server, model="other"))
    make_synopsis("A girl is getting old", backend=backend(chat_server))
    make_synopsis("A boy is getting old", backend=backend(chat_server), num_states=2)
    monkeypatch.setattr("vstar.synopsis.core.INSTRUCTION_VERSION", "vsp-test")
    make_synopsis("A boy is getting old", backend=backend(chat_server))
    assert len(chat_server.requests) == 5


def test_cache_can_be_disabled(chat_server, tmp_path):
    chat_server.answer('["a", "b"]')
    chat_server.answer('["c", "d"]')
    assert make_synopsis("p", backend=backend(chat_server), cache=False).states == ["a", "b"]
    assert make_synopsis("p", backend=backend(chat_server), cache=False).states == ["c", "d"]
    assert not (tmp_path / "cache").exists()


def test_failed_parse_is_not_cached(chat_server):
    chat_server.answer("no idea")
    chat_server.answer('["a", "b"]')
    with pytest.raises(ParseError):
        make_synopsis("p", backend=backend(chat_server))
    assert make_synopsis("p", backend=backend(chat_server)).states == ["a", "b"]


def test_repr_hides_the_key(chat_server):
    assert KEY not in repr(backend(chat_server))
    assert KEY not in json.dumps(make_synopsis("p", backend="rules").to_dict())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "localhost:11434"}, "http"),
        ({"base_url": "ftp://x/v1"}, "http"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(SynopsisInputError, match=message):
        OpenAIBackend(model="m", **{"base_url": "http://127.0.0.1:1/v1", **kwargs})


def test_openai_without_key_asks_for_one():
    with pytest.raises(SynopsisInputError, match="OPENAI_API_KEY"):
        OpenAIBackend()


@pytest.mark.parametrize("url,shown", [
    ("http://user:hunter2@127.0.0.1:9/v1", "http://***@127.0.0.1:9/v1/chat/completions"),
    ("http://127.0.0.1:9/v1?api_key=hunter2&x=1", "http://127.0.0.1:9/v1?api_key=***&x=1"),
])
def test_credentials_in_the_url_are_masked_in_errors_and_repr(url, shown):
    engine = OpenAIBackend("m", base_url=url, timeout=0.5)
    with pytest.raises(BackendError) as err:
        engine.chat([{"role": "user", "content": "hi"}])
    assert "hunter2" not in str(err.value) and "hunter2" not in repr(engine)
    assert shown.split("?")[0] in str(err.value) + engine.url


def test_url_credentials_become_basic_auth(chat_server):
    chat_server.answer('["a", "b"]')
    url = chat_server.base_url.replace("http://", "http://me:s%40cret@")
    make_synopsis("p", backend=OpenAIBackend("m", base_url=url), cache=False)
    import base64

    assert chat_server.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"me:s@cret").decode()
