"""A `Generator` backed by any OpenAI-compatible chat server (vLLM, llama.cpp server, hosted APIs).

Requests go out concurrently over one pooled `requests.Session`.  Transient failures (connection
errors, timeouts, 408/429/5xx) are retried by urllib3's `Retry` on that session: exponential
backoff with jitter, `Retry-After` honoured (capped).  What is still wrong after the last attempt, a
4xx, or a reply that is not a chat completion comes back as a `Generation` carrying the error,
never an exception, so one bad request never fails its batch.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from vtcurate.models.generation import Chat, Generation, Sampling, to_openai_content

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER_S = 60  # a server asking for longer would stall a worker thread for that long
SNIPPET_CHARS = 200


class _Retry(Retry):
    def parse_retry_after(self, retry_after: str) -> float:
        try:  # servers send fractions too, which RFC 9110's delay-seconds and urllib3 do not allow
            seconds = float(retry_after)
        except ValueError:
            return super().parse_retry_after(retry_after)  # an HTTP date
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class OpenAIChatClient:
    """POSTs chats to `{base_url}/chat/completions`, at most `concurrency` in flight."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        extra_body: dict | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("need concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_s >= 0")
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.extra_body = dict(extra_body or {})
        self._session = requests.Session()
        retry = _Retry(
            total=max_retries, status_forcelist=RETRY_STATUSES, allowed_methods=None,  # POST included
            backoff_factor=backoff_s, backoff_jitter=backoff_s,  # jitter spreads a failed batch's retries
            retry_after_max=MAX_RETRY_AFTER_S, raise_on_status=False, redirect=0,
        )  # fmt: skip
        # One pooled connection per worker thread, so concurrent requests never queue on the pool.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        if not chats:
            return []
        # Bodies are built in the workers so at most `concurrency` base64-encoded images are held at once.
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chats))) as pool:
            return list(pool.map(lambda chat: self._request(self._body(chat, sampling)), chats))

    def provenance(self) -> dict:
        return {
            "backend": "openai",
            "base_url": self.base_url,
            "model": self.model_id,
            "random_weights": False,
        }

    def close(self) -> None:
        self._session.close()

    def _body(self, chat: Chat, sampling: Sampling) -> dict[str, Any]:
        # extra_body comes first so the per-call sampling, which is what gets recorded, always wins.
        body: dict[str, Any] = {
            **self.extra_body,
            "model": self.model_id,
            "messages": [{**msg, "content": to_openai_content(msg["content"])} for msg in chat],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        # Not an OpenAI parameter: vLLM accepts it, hosted APIs may reject it, so only send it when used.
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty
        return body

    def _request(self, body: dict[str, Any]) -> Generation:
        """One chat through the session (which retries): its text, or the error that ended it."""
        attempts = self.max_retries + 1
        try:
            resp = self._session.post(f"{self.base_url}/chat/completions", json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            reason = exc.args[0].reason if exc.args and isinstance(exc.args[0], MaxRetryError) else exc
            if isinstance(exc, requests.Timeout) or isinstance(reason, ReadTimeoutError):
                return Generation(text=None, error=f"timeout after {attempts} attempts")
            error = f"{type(exc).__name__} after {attempts} attempts: {_snippet(str(exc))}"
            return Generation(text=None, error=error)
        if not resp.ok:
            tried = len(resp.raw.retries.history) + 1 if resp.status_code in RETRY_STATUSES else 0
            after = f" after {tried} attempts" if tried else ""
            return Generation(text=None, error=f"HTTP {resp.status_code}{after}: {_snippet(resp.text)}")
        return _parse(resp)


def _parse(resp: requests.Response) -> Generation:
    """A chat completion's first choice, or an error when the reply is not one."""
    try:
        payload = resp.json()
    except ValueError:
        return Generation(text=None, error="malformed reply: not JSON")
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        return Generation(text=None, error="malformed reply: no choices")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        return Generation(text=None, error="malformed reply: no choices[0].message.content string")
    usage = payload.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    finish = choice.get("finish_reason")
    return Generation(
        text=content.strip(),
        output_tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0,
        extra={"finish_reason": finish} if isinstance(finish, str) else {},
    )


def _snippet(text: str) -> str:
    return " ".join(text[:SNIPPET_CHARS].split())
