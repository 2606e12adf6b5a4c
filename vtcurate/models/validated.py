"""Generate, validate, retry, cache: the loop rewrite and aux_caption share.

Each request is generated with the configured sampling; outputs that fail validation are tried
again (up to `attempts` in all) with `retry_temperature` and a new seed, since greedy decoding
would repeat the same failure.  The final result of each request, success or failure, is cached
under the request's key, so a rerun never generates it again; only a backend error (server down,
timeout) is left uncached, so a rerun after an outage retries it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from vtcurate.models.gencache import GenerationCache
from vtcurate.models.generation import Chat, Generator, Sampling


@dataclass(frozen=True)
class Request:
    key: str  # cache key: digest of input, model id, prompt and sampling
    chat: Chat


@dataclass(frozen=True)
class Outcome:
    text: str | None  # the validated output; None when every attempt failed
    problem: str | None  # why the last attempt failed (validation rule or backend error)
    attempts: int
    output_tokens: int
    cached: bool

    def as_cache(self) -> dict:
        return {"text": self.text, "problem": self.problem, "attempts": self.attempts,
                "output_tokens": self.output_tokens}  # fmt: skip


def generate_validated(
    generator: Generator,
    requests: list[Request],
    sampling: Sampling,
    check: Callable[[int, str | None], tuple[str, str | None]],
    cache: GenerationCache,
    attempts: int,
    retry_temperature: float,
) -> list[Outcome]:
    """One Outcome per request.  `check(i, raw)` returns (cleaned text, problem or None)."""
    out: list[Outcome | None] = [None] * len(requests)
    for i, req in enumerate(requests):
        hit = cache.get(req.key)
        if hit is not None:
            out[i] = Outcome(hit["text"], hit["problem"], hit["attempts"], hit["output_tokens"], cached=True)
    pending = [i for i, o in enumerate(out) if o is None]
    problems: dict[int, str] = {}
    tokens: dict[int, int] = dict.fromkeys(pending, 0)
    for attempt in range(1, attempts + 1):
        if not pending:
            break
        params = (
            sampling
            if attempt == 1
            else replace(sampling, temperature=retry_temperature, seed=sampling.seed + attempt)
        )
        gens = generator.generate([requests[i].chat for i in pending], params)
        still = []
        for i, gen in zip(pending, gens):
            tokens[i] += gen.output_tokens
            if not gen.ok:
                problems[i] = "backend_error"
                still.append(i)
                continue
            if gen.output_tokens >= params.max_tokens or gen.extra.get("finish_reason") == "length":
                problems[i] = "truncated"  # cut off mid-sentence, whatever it says
                still.append(i)
                continue
            text, problem = check(i, gen.text)
            if problem:
                problems[i] = problem
                still.append(i)
            else:
                out[i] = Outcome(text, None, attempt, tokens[i], cached=False)
        pending = still
    for i in pending:
        out[i] = Outcome(None, problems[i], attempts, tokens[i], cached=False)
    # a backend error (server down, timeout) is not a property of the input: a rerun tries again
    fresh = [(i, o) for i, o in enumerate(out) if o and not o.cached and o.problem != "backend_error"]
    cache.put_many({requests[i].key: o.as_cache() for i, o in fresh})
    return [o for o in out if o is not None]
