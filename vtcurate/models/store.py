"""Model weights fetched once into a store that every worker reads, instead of each worker calling
a model hub (`vtcurate models fetch CONFIG`, config key `models.store`).

The store is a Hugging Face cache folder, the layout huggingface_hub, open_clip and transformers
already read, at any fsspec location, plus `vtcurate-models.json`: the sha256 of every file fetched.
A worker of a run with `models.store` set points the hub library at it before loading a model:
a local or shared folder directly, a remote one (`s3://...`) copied once per node into
`models.node_cache` (under a lock, like NeMo Curator's `setup_on_node`); it then runs with the hub
offline, so a weight missing from the store fails at once instead of being downloaded by each worker.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vtcurate.config import TRAIN, ClipModelSpec, PipelineConfig
from vtcurate.errors import UserError

log = logging.getLogger(__name__)

LISTING = "vtcurate-models.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's order
TOKENIZER_PATTERNS = ["tokenizer*", "special_tokens_map.json", "vocab*", "merges.txt", "*.model",
                      "sentencepiece*", "config.json"]  # fmt: skip
HF_HUB_MODEL_PATTERNS = ["open_clip_config.json", "open_clip_model.safetensors", *TOKENIZER_PATTERNS]


@dataclass(frozen=True)
class HubItem:
    """Files of one hub repository that a config key needs: the first of `candidates` that the
    repo has (weights), or every file matching `patterns` (tokenizers, whole models)."""

    key: str
    repo: str
    candidates: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


def _clip_items(key: str, spec: ClipModelSpec) -> list[HubItem]:
    import open_clip

    from vtcurate.models.clip import _register_bundled

    _register_bundled()
    if spec.name.startswith("hf-hub:"):
        return [HubItem(key, spec.name.removeprefix("hf-hub:"), patterns=tuple(HF_HUB_MODEL_PATTERNS))]
    items = []
    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained) if spec.pretrained else {}
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        safe = [f"{filename[:-4]}.safetensors"] if filename.endswith((".bin", ".pth")) else []
        items.append(HubItem(key, repo, candidates=(*safe, filename) if filename else WEIGHT_FILES))
    elif spec.pretrained and not Path(spec.pretrained).is_file() and cfg:
        raise UserError(f"{key}: {spec.name} pretrained={spec.pretrained} downloads from a URL, not a hub: "
                        "give the downloaded file as `pretrained`")  # fmt: skip
    tokenizer = (open_clip.get_model_config(spec.name) or {}).get("text_cfg", {}).get("hf_tokenizer_name")
    if tokenizer:
        items.append(HubItem(f"{key} (tokenizer)", tokenizer, patterns=tuple(TOKENIZER_PATTERNS)))
    return items


def needs(config: PipelineConfig) -> list[HubItem]:
    """The hub files the config's stages load (CLIP weights and tokenizers)."""
    specs: list[tuple[str, ClipModelSpec]] = []
    if "clip_filter" in config.stages:
        specs += [(f"clip_filter.models.{lang}", spec) for lang, spec in config.clip_filter.models.items()]
    if "aux_caption" in config.stages and config.aux_caption.backend == "retrieval":
        specs.append(("aux_caption.clip", config.aux_caption.clip))
    if TRAIN in config.stages:
        specs.append(("train.model.clip", config.train.model.clip))
    return [item for key, spec in specs for item in _clip_items(key, spec)]


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _download(item: HubItem, cache: Path) -> Path:
    """Fetch `item` into the HF cache folder `cache`; the snapshot folder holding its files."""
    import huggingface_hub as hub

    if item.patterns:
        return Path(hub.snapshot_download(item.repo, allow_patterns=list(item.patterns), cache_dir=cache))
    errors = []
    for name in item.candidates:
        try:
            return Path(hub.hf_hub_download(item.repo, name, cache_dir=cache)).parent
        except Exception as err:  # noqa: BLE001 - the next candidate, then all errors named
            errors.append(f"{name}: {type(err).__name__}: {str(err)[:200]}")
    raise UserError(f"{item.key}: cannot fetch {item.repo}: " + "; ".join(errors))


def fetch(config: PipelineConfig, store: str) -> dict:
    """Download every hub file the config needs into `store`; return (and write) its listing."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, root = fsspec.core.url_to_fs(store)
    local = isinstance(fs, LocalFileSystem)
    with tempfile.TemporaryDirectory(prefix="vtcurate-fetch-") as tmp:
        cache = Path(root) if local else Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        listing = json.loads(fs.cat_file(f"{root}/{LISTING}")) if fs.exists(f"{root}/{LISTING}") else {}
        for item in needs(config):
            folder = _download(item, cache)
            files = {p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
            listing[item.repo] = {"key": item.key, "revision": folder.name, "files": files}
            log.info("%s: %s (%d files)", item.key, item.repo, len(files))
        if not local:
            fs.put(str(cache) + "/", root, recursive=True)
        fs.pipe_file(f"{root}/{LISTING}", json.dumps(listing, indent=1, sort_keys=True).encode())
    return listing


def _node_copy(store: str, node_cache: str) -> Path:
    """A local copy of a remote store, made once per node (other workers wait on the lock)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(store)
    local = Path(node_cache).expanduser() / hashlib.sha1(store.encode()).hexdigest()[:16]
    local.mkdir(parents=True, exist_ok=True)
    done = local / ".complete"
    with open(local / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            log.info("copying the model store %s to %s", store, local)
            fs.get(root.rstrip("/") + "/", str(local), recursive=True)
            done.touch()
    return local


def use_store(store: str, node_cache: str = "~/.cache/vtcurate/models") -> Path:
    """Point the hub libraries of this process at the store (a node-local copy if it is remote)
    and turn the hub off; the folder they now read."""
    from huggingface_hub import constants

    is_local = "://" not in store or store.startswith("file://")
    folder = Path(store.removeprefix("file://")).expanduser() if is_local else _node_copy(store, node_cache)
    if not (folder / LISTING).is_file():
        raise UserError(f"models.store {store} holds no {LISTING}: run `vtcurate models fetch` into it first")
    os.environ.update(HF_HUB_CACHE=str(folder), HF_HUB_OFFLINE="1")
    constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(folder), True
    from vtcurate.models.availability import hub_reachable

    hub_reachable.cache_clear()
    return folder


def weights_listing(config: PipelineConfig, folder: Path) -> dict:
    """{config key: {repo, revision, files: {name: sha256}}} of what this run loads (run.json)."""
    listing = json.loads((folder / LISTING).read_text("utf-8"))
    items = [item for item in needs(config) if item.repo in listing]
    return {item.key: {**listing[item.repo], "repo": item.repo} for item in items}

