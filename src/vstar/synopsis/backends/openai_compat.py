"""The ``openai`` backend: any OpenAI-compatible chat-completions server, over plain ``urllib``.

Works with OpenAI itself and with local servers that speak the same protocol (Ollama, vLLM, llama.cpp
server, LM Studio): point ``base_url`` at the server's ``/v1``. The API key comes from ``api_key``,
``VSTAR_LLM_API_KEY`` or ``OPENAI_API_KEY``; it is sent in the Authorization header and nowhere else (not in
errors, logs, reprs, the cache or sidecars).
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from ..errors import BackendError, SynopsisInputError
from .base import LLMBackend

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


class OpenAIBackend(LLMBackend):
    """Chat completions from an OpenAI-compatible server.

    ``timeout`` bounds each request (seconds). HTTP 429/5xx are retried up to ``max_retries`` times, waiting
    ``backoff * 2**attempt`` seconds (or the server's Retry-After), at most ``max_backoff`` each time.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        temperature: float | None = 0.2,
        max_tokens: int | None = 1024,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._model = model or os.environ.get("VSTAR_LLM_MODEL") or DEFAULT_MODEL
        base = base_url or os.environ.get("VSTAR_LLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        self.base_url = (base or DEFAULT_BASE_URL).strip().rstrip("/")
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SynopsisInputError(
                f"base_url must be an http(s) URL such as http://localhost:11434/v1, got {mask_url(self.base_url)!r}"
            )
        endpoint = self.base_url if self.base_url.endswith("/chat/completions") else f"{self.base_url}/chat/completions"
        self._endpoint, self._basic_auth = _split_credentials(endpoint)
        self.url = mask_url(endpoint)  # what messages show: credentials in the URL are masked
        self._api_key = api_key or os.environ.get("VSTAR_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None
        if self._api_key is None and parts.hostname == "api.openai.com":
            raise SynopsisInputError(
                "no API key for api.openai.com: set OPENAI_API_KEY or VSTAR_LLM_API_KEY, or point base_url at "
                "a local server (e.g. Ollama at http://localhost:11434/v1)"
            )
        if timeout <= 0:
            raise SynopsisInputError(f"timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise SynopsisInputError(f"max_retries must be >= 0, got {max_retries}")
        if backoff < 0 or max_backoff < 0:
            raise SynopsisInputError(f"backoff and max_backoff must be >= 0, got {backoff} and {max_backoff}")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._sleep = sleep
        proxies = {} if parts.hostname in _LOOPBACK else None  # never send local traffic through a proxy
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self._model!r}, base_url={mask_url(self.base_url)!r})"

    @property
    def model(self) -> str:
        return self._model

    def cache_identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self._model, "base_url": self.base_url, "temperature": self.temperature}

    def chat(self, messages: list[dict[str, str]]) -> str:
        payload: dict[str, Any] = {"model": self._model, "messages": messages}
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        body = json.dumps(payload).encode("utf-8")
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            status, headers, data = self._post(body)
            if status == 200:
                return self._content(data)
            if status in RETRY_STATUSES and attempt < attempts - 1:
                delay = self._delay(attempt, headers.get("Retry-After"))
                log.warning("%s answered HTTP %s; retrying in %.2f s (%d/%d)", self.url, status, delay,
                            attempt + 1, self.max_retries)
                self._sleep(delay)
                continue
            raise self._http_error(status, data, attempts if status in RETRY_STATUSES else 1)
        raise AssertionError("unreachable")

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _post(self, body: bytes) -> tuple[int, Any, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "vstar-synopsis"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        elif self._basic_auth:
            headers["Authorization"] = f"Basic {self._basic_auth}"
        request = urllib.request.Request(self._endpoint, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read()
            except (OSError, TimeoutError):
                data = b""
            return exc.code, exc.headers, data
        except TimeoutError:
            raise self._timeout() from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._timeout() from None
            raise BackendError(
                f"cannot reach {self.url}: {self._scrub(str(exc.reason))}; is the server running and base_url right?"
            ) from None
        except OSError as exc:
            raise BackendError(f"connection to {self.url} failed: {self._scrub(str(exc))}") from None

    def _timeout(self) -> BackendError:
        return BackendError(
            f"no answer from {self.url} within {self.timeout:g} s; the server may be busy or loading the model. "
            "Raise timeout or check the server"
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff * (2**attempt)
        if retry_after:
            parsed = _parse_retry_after(retry_after)
            if parsed is not None:
                delay = parsed
        return max(0.0, min(delay, self.max_backoff))

    def _content(self, data: bytes) -> str:
        try:
            answer = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BackendError(
                f"{self.url} returned a response that is not JSON: {self._snippet(data)!r}; is base_url an "
                "OpenAI-compatible /v1 endpoint?"
            ) from None
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            error = answer.get("error") if isinstance(answer, dict) else None
            detail = _error_message(error) if error else self._snippet(data)
            raise BackendError(f"{self.url} returned no chat completion: {detail!r}") from None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content.strip():
            raise BackendError(f"{self.url} returned an empty answer for model {self._model!r}; try another model")
        return content

    def _http_error(self, status: int, data: bytes, attempts: int) -> BackendError:
        detail = self._server_message(data)
        if status in (401, 403):
            msg = (
                f"{self.url} refused the request (HTTP {status}: {detail}); check the API key in "
                "VSTAR_LLM_API_KEY or OPENAI_API_KEY"
            )
        elif status == 404:
            msg = (
                f"{self.url} answered HTTP 404 ({detail}); check base_url (most servers expect it to end in /v1, "
                f"e.g. http://localhost:11434/v1) and that the model {self._model!r} exists on the server"
            )
        elif status in RETRY_STATUSES:
            msg = f"{self.url} kept failing with HTTP {status} ({detail}) after {attempts} attempt(s); try again later"
        else:
            msg = f"{self.url} rejected the request (HTTP {status}: {detail})"
        return BackendError(msg, status=status)

    def _server_message(self, data: bytes) -> str:
        try:
            answer = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._snippet(data) or "no details"
        if isinstance(answer, dict) and "error" in answer:
            return self._scrub(_error_message(answer["error"]))
        return self._snippet(data)

    def _snippet(self, data: bytes, limit: int = 200) -> str:
        text = " ".join(data.decode("utf-8", "replace").split())
        return self._scrub(text[:limit] + ("..." if len(text) > limit else ""))

    def _scrub(self, text: str) -> str:
        """``text`` without the API key or the URL's credentials."""
        text = text.replace(self.base_url, mask_url(self.base_url))
        return text.replace(self._api_key, "***") if self._api_key else text


SECRET_QUERY_KEYS = ("key", "token", "secret", "password", "sig", "auth")


def mask_url(url: str) -> str:
    """``url`` with the user info and secret-looking query values replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = f"***@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc else parts.netloc
        query = urllib.parse.urlencode(
            [(k, "***" if any(word in k.lower() for word in SECRET_QUERY_KEYS) else v)
             for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    except ValueError:
        return "<an unreadable URL>"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _split_credentials(url: str) -> tuple[str, str | None]:
    """``(url without user info, base64 'user:password' for HTTP basic auth or None)``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    credentials = base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode()
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), credentials


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or error)[:300]
    return str(error)[:300]


def _parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a Retry-After header (a number of seconds or an HTTP date)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
