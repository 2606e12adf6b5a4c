"""What the in-process transformers generators (`hf_chat`, `hf_caption`) share: the process's model
cache, the generation config, the one batched generate loop, and provenance.

Models load once per process: loaded models are cached by (kind, path, device), so building a second
generator for the same weights is free.  `generate_batches` gives one `Generation` per request, in
order: a sub-batch that fails as a whole (e.g. out of memory) is split and retried, so it never loses
other requests.

Sampling: temperature 0 is greedy; otherwise multinomial sampling with temperature/top_p (top_k off,
as in the OpenAI API) from torch's RNG seeded with `Sampling.seed` once per group of requests,
inside `torch.random.fork_rng` so the global RNG is untouched.  A call is reproducible given the same
requests in the same order and batch size (a request's tokens depend on its batch neighbours, as
padding and the shared RNG stream change the numerics).

A model directory carrying `RANDOM_MARKER` holds randomly initialised weights (the tests' tiny
models); provenance reports `random_weights: True` for it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtcurate.checksums import file_sha256
from vtcurate.models.devices import DTYPES, precision
from vtcurate.models.generation import Generation, Sampling

log = logging.getLogger(__name__)

RANDOM_MARKER = "vtcurate_random_init.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str, str], Loaded] = {}


@dataclass
class Loaded:
    """A model with what runs it, as the process cache holds it."""

    model: Any
    tokenizer: Any
    image_processor: Any
    device: str
    dtype: str  # torch dtype name: float32, bfloat16
    load_s: float = 0.0

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def dtype_name(device: str) -> str:
    """The dtype a generator's weights are loaded in on `device` (bf16 on CUDA, fp32 elsewhere)."""
    return DTYPES[precision(device)]


def is_random_init(path: Path) -> bool:
    """True when `path` (a model directory, or a file inside one) carries the random-init marker."""
    marker = (path if path.is_dir() else path.parent) / RANDOM_MARKER
    try:
        return bool(json.loads(marker.read_text()).get("random_weights"))
    except (OSError, ValueError, AttributeError):
        return False


def weights_sha256(path: Path) -> str:
    """A file's sha256; for a directory, the sha256 of {name: sha256} over its weight files and
    config.json (tokenizer files are left out: they do not change what the weights compute)."""
    if path.is_file():
        return file_sha256(path)
    files = sorted(
        p for p in path.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    )
    listing = {p.name: file_sha256(p) for p in files}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def load_cached(kind: str, path: Path, device: str, load: Callable[[str], Loaded]) -> Loaded:
    """`load(device)` once per process for (kind, path, device)."""
    key = (kind, str(path), device)
    with _LOCK:  # held while loading: two threads asking for the same weights load them once
        if key not in _MODELS:
            start = time.monotonic()
            loaded = load(device)
            loaded.load_s = time.monotonic() - start
            log.info("loaded %s %s on %s (%s) in %.1fs", kind, path, device, loaded.dtype, loaded.load_s)
            _MODELS[key] = loaded
        return _MODELS[key]


class CachedModel:
    """What both generators share: a model from the process cache, released by close()."""

    _loaded: Loaded | None

    @property
    def loaded(self) -> Loaded:
        if self._loaded is None:
            raise RuntimeError("generator is closed")
        return self._loaded

    def close(self) -> None:
        # The weights stay in the process cache: loading is the expensive part.
        self._loaded = None


def generation_config(base: Any, sampling: Sampling) -> Any:
    """The model's generation config (special token ids) with the request's sampling laid over it."""
    if sampling.max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {sampling.max_tokens}")
    gc = copy.deepcopy(base)
    sample = sampling.temperature > 0
    gc.update(
        do_sample=sample,
        temperature=sampling.temperature if sample else 1.0,
        top_p=sampling.top_p if sample else 1.0,
        top_k=0 if sample else 50,  # sampling: no top-k cut, as in the OpenAI API; greedy: the default
        repetition_penalty=sampling.repetition_penalty,
        max_new_tokens=sampling.max_tokens,
        max_length=None,  # min_new_tokens / min_length stay as the checkpoint sets them
        num_beams=1,
        num_return_sequences=1,
    )
    return gc


@contextmanager
def _seeded(seed: int, device: str) -> Iterator[None]:
    import torch

    devices = [torch.cuda.current_device()] if device == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def eos_ids(*values: Any) -> set[int]:
    """Token ids from ints and lists of ints (a config's eos_token_id is either); others ignored."""
    out: set[int] = set()
    for v in values:
        if isinstance(v, int):
            out.add(v)
        elif isinstance(v, list | tuple):
            out.update(i for i in v if isinstance(i, int))
    return out


def decoded(tokenizer: Any, new_ids: list[int], eos: set[int]) -> Generation:
    """The text of one row's new tokens.  `output_tokens` counts them up to and including the first
    EOS (what the model produced; the rest is padding)."""
    n = next((i + 1 for i, t in enumerate(new_ids) if t in eos), None)
    finish = "length" if n is None else "stop"
    n = len(new_ids) if n is None else n
    text = tokenizer.decode(new_ids[:n], skip_special_tokens=True).strip()
    return Generation(text=text, output_tokens=n, extra={"finish_reason": finish})


def error_text(exc: BaseException) -> str:
    """An exception as a row's error: its type and first 300 characters, on one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _run_split(
    items: list[int], run: Callable[[list[int]], list[Generation]], on_error: Callable[[BaseException], None]
) -> list[Generation]:
    """`run(items)`; when that raises, halve and retry, so a batch-wide failure (OOM) or one poisonous
    request costs only the requests that fail on their own."""
    try:
        return run(items)
    except Exception as exc:  # noqa: BLE001 - one failed sub-batch must not lose the others
        on_error(exc)
        if len(items) == 1:
            return [Generation(text=None, error=error_text(exc))]
        mid = len(items) // 2
        return _run_split(items[:mid], run, on_error) + _run_split(items[mid:], run, on_error)


def _on_error(device: str) -> Callable[[BaseException], None]:
    def handle(exc: BaseException) -> None:
        log.warning("generation sub-batch failed (%s); splitting it", error_text(exc))
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()

    return handle


def generate_batches(
    results: list[Generation | None],
    groups: Iterable[Sequence[int]],
    run: Callable[[list[int]], list[Generation]],
    *,
    batch_size: int,
    seed: int,
    device: str,
) -> list[Generation]:
    """The one generate loop: `run(indices)` over each group of request indices, `batch_size` at a
    time, with torch's RNG seeded with `seed` at the start of each group; `results[i]` is set for
    every index run (requests that failed before, e.g. a bad image, are already set).  Returns the
    results, with an error for any index left unset."""
    for group in groups:
        with _seeded(seed, device):
            for start in range(0, len(group), batch_size):
                part = list(group[start : start + batch_size])
                for i, gen in zip(part, _run_split(part, run, _on_error(device))):
                    results[i] = gen
    return [r if r is not None else Generation(text=None, error="no result") for r in results]


def provenance(backend: str, path: Path, loaded: Loaded) -> dict:
    """What every transformers generator records about its weights and runtime."""
    import torch
    import transformers

    return {
        "backend": backend,
        "path": str(path),
        "sha256": weights_sha256(path),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "random_weights": is_random_init(path),
    }
