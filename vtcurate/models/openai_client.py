"""A `Generator` backed by any OpenAI-compatible chat server (vLLM, llama.cpp server, hosted APIs).

Requests go out concurrently over one pooled `requests.Session`.  Every failure mode is handled in
`_request`: transient ones (connection errors, timeouts, 408/429/5xx, replies that are not a chat
completion) are retried with jittered exponential backoff; other 4xx are the caller's fault and are
returned at once.  Either way the caller gets a `Generation` carrying the error, never an exception,
so one bad request never fails its batch.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from vtcurate.models.generation import Chat, Generation, Sampling, to_openai_content

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER_S = 60.0  # a server asking for longer would stall a worker thread for that long
SNIPPET_CHARS = 200


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not (raised and caught inside `_request`)."""

    def __init__(self, kind: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


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
        self._rng = random.Random()
        self._session = requests.Session()
        # One pooled connection per worker thread, so concurrent requests never queue on the pool.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
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
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._attempt(body)
            except _Retryable as exc:
                failure = exc
                if attempt + 1 < attempts:
                    delay = self._delay(attempt, exc.retry_after)
                    log.debug("%s (attempt %d/%d), retrying in %.2fs", exc.kind, attempt + 1, attempts, delay)
                    time.sleep(delay)
        error = f"{failure.kind} after {attempts} attempts"
        return Generation(text=None, error=f"{error}: {failure.detail}" if failure.detail else error)

    def _attempt(self, body: dict[str, Any]) -> Generation:
        """One POST: a `Generation` (text, or a non-retryable error), or `_Retryable`."""
        try:
            resp = self._session.post(f"{self.base_url}/chat/completions", json=body, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise _Retryable("timeout") from exc
        except requests.RequestException as exc:
            raise _Retryable(type(exc).__name__, _snippet(str(exc))) from exc
        if resp.status_code in RETRY_STATUSES:
            retry_after = _retry_after(resp) if resp.status_code in (429, 503) else None
            raise _Retryable(f"HTTP {resp.status_code}", _snippet(resp.text), retry_after)
        if not resp.ok:
            return Generation(text=None, error=f"HTTP {resp.status_code}: {_snippet(resp.text)}")
        return _parse(resp)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        # Jitter spreads the retries of a whole batch that failed together (e.g. a server restart).
        delay = self.backoff_s * 2**attempt * self._rng.uniform(0.5, 1.5)
        return max(delay, min(retry_after, MAX_RETRY_AFTER_S)) if retry_after is not None else delay


def _parse(resp: requests.Response) -> Generation:
    """A chat completion's first choice, or `_Retryable` when the reply is not one."""
    try:
        payload = resp.json()
    except ValueError as exc:
        raise _Retryable("malformed reply", "not JSON") from exc
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        raise _Retryable("malformed reply", "no choices")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise _Retryable("malformed reply", "no choices[0].message.content string")
    usage = payload.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    finish = choice.get("finish_reason")
    return Generation(
        text=content.strip(),
        output_tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0,
        extra={"finish_reason": finish} if isinstance(finish, str) else {},
    )


def _retry_after(resp: requests.Response) -> float | None:
    """`Retry-After` in seconds; the HTTP-date form is ignored (servers in practice send seconds)."""
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _snippet(text: str) -> str:
    return " ".join(text[:SNIPPET_CHARS].split())
