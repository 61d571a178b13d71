"""Fixtures for the synopsis tests: an isolated cache dir and a scripted chat-completions server."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# The paper's 30 prompts with their synopses, next to the repository (read-only shared data).
PROMPT_LIST = (Path(__file__).parent / "../../../shared/data/vstar_prompt_list.json").resolve()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Every test gets its own cache dir and no LLM configuration from the environment."""
    monkeypatch.setenv("VSTAR_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("VSTAR_LLM_BASE_URL", "VSTAR_LLM_API_KEY", "VSTAR_LLM_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def prompt_list_path() -> Path:
    if not PROMPT_LIST.is_file():
        pytest.skip(f"the paper's prompt list is not available at {PROMPT_LIST}")
    return PROMPT_LIST


@pytest.fixture
def prompt_list(prompt_list_path) -> list[dict]:
    return json.loads(prompt_list_path.read_text(encoding="utf-8"))


def completion(content: str, model: str = "test-model") -> dict[str, Any]:
    """A chat-completions response body carrying ``content``."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON, str/bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (until the server stops)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


class ChatServer:
    """A real HTTP server on 127.0.0.1 that answers POSTs with scripted replies and records the requests."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                server.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                reply = server.replies.popleft() if server.replies else Reply(500, {"error": {"message": "no reply"}})
                if reply.hang:
                    server.release.wait(10)
                    return
                data = reply.body
                if isinstance(data, dict | list):
                    data = json.dumps(data)
                if isinstance(data, str):
                    data = data.encode("utf-8")
                data = data or b""
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, content: str, **kw: Any) -> None:
        self.replies.append(Reply(200, completion(content), **kw))

    def reply(self, status: int = 200, body: Any = None, **kw: Any) -> None:
        self.replies.append(Reply(status, body, **kw))

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server():
    server = ChatServer()
    yield server
    server.close()
