"""`vtcurate models fetch` against a fake hub (a folder, its downloads counted): the store holds
the weights in the Hugging Face cache layout, workers load from it with the hub off, a remote store
is copied once per node, and run.json records the sha256 of what the run loaded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from helpers import CONFIGS
from vtcurate.config import ClipModelSpec, load_config
from vtcurate.models import store as model_store

REPO = "vtcurate-test/tiny-clip"
TAG = "fakehub"  # open_clip cleans tags: lower case, "-" -> "_"
WEIGHTS = "open_clip_model.safetensors"


@pytest.fixture
def hub_state(monkeypatch):
    """The process-wide hub settings use_store changes, restored after the test."""
    from huggingface_hub import constants

    from vtcurate.models.availability import hub_reachable

    monkeypatch.setattr(constants, "HF_HUB_CACHE", constants.HF_HUB_CACHE)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    hub_reachable.cache_clear()
    yield
    hub_reachable.cache_clear()


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, hub_state):
    """One repo holding weights of the bundled tiny CLIP architecture (seed 7), known to open_clip
    as `vtc-tiny-vit` pretrained=fakehub; every download is counted."""
    import huggingface_hub
    import open_clip
    import open_clip.pretrained as pretrained
    from safetensors.torch import save_file

    from vtcurate.models.clip import _register_bundled

    _register_bundled()
    torch.manual_seed(7)
    model = open_clip.create_model("vtc-tiny-vit")
    hub = tmp_path / "hub" / REPO
    hub.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, hub / WEIGHTS)
    monkeypatch.setitem(pretrained._PRETRAINED, "vtc-tiny-vit", {TAG: {"hf_hub": f"{REPO}/", "url": ""}})
    downloads = []

    def hf_hub_download(repo_id, filename, cache_dir=None, **_):  # the real cache layout
        source = tmp_path / "hub" / repo_id / filename
        if not source.is_file():
            raise FileNotFoundError(f"{repo_id} has no {filename}")
        downloads.append((repo_id, filename))
        folder = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text("0123abcd")
        snapshot = folder / "snapshots" / "0123abcd"
        snapshot.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, snapshot / filename)
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return {"downloads": downloads, "weights": hub / WEIGHTS, "state": model.state_dict()}


MODELS = f"clip_filter.models={{'*': {{name: vtc-tiny-vit, pretrained: {TAG}}}}}"


def _config(*overrides: str):
    stages = "stages=[ingest, langid, keyframes, clip_filter]"
    return load_config(CONFIGS / "demo.yaml", [stages, MODELS, *overrides])


def test_fetched_weights_load_with_the_hub_off(tmp_path, fake_hub, monkeypatch):
    from vtcurate.models.availability import clip_problem
    from vtcurate.models.clip import ClipModel

    store = tmp_path / "store"
    listing = model_store.fetch(_config(), str(store))
    sha = hashlib.sha256(fake_hub["weights"].read_bytes()).hexdigest()
    assert listing[REPO]["files"] == {WEIGHTS: sha} and listing[REPO]["key"] == "clip_filter.models.*"
    assert fake_hub["downloads"] == [(REPO, WEIGHTS)]  # the safetensors file, the first candidate
    assert json.loads((store / model_store.LISTING).read_text()) == listing

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = ClipModelSpec(name="vtc-tiny-vit", pretrained=TAG)
    assert "not in the local Hugging Face cache" in clip_problem(spec)  # the hub off, no store yet
    model_store.use_store(str(store))
    assert clip_problem(spec) is None
    loaded = ClipModel(spec).model.state_dict()  # open_clip's own download path, served by the store
    assert all(torch.equal(loaded[k], v) for k, v in fake_hub["state"].items())
    assert fake_hub["downloads"] == [(REPO, WEIGHTS)]  # nothing downloaded again


def test_a_remote_store_is_copied_once_per_node(tmp_path, fake_hub, monkeypatch):
    import fsspec

    model_store.fetch(_config(), "memory://vtc-store")
    copies = []
    real_get = fsspec.implementations.memory.MemoryFileSystem.get
    monkeypatch.setattr(fsspec.implementations.memory.MemoryFileSystem, "get",
                        lambda self, *a, **k: copies.append(a) or real_get(self, *a, **k))  # fmt: skip
    first = model_store.use_store("memory://vtc-store", str(tmp_path / "node"))
    second = model_store.use_store("memory://vtc-store", str(tmp_path / "node"))
    assert first == second and len(copies) == 1
    assert (first / f"models--{REPO.replace('/', '--')}" / "snapshots" / "0123abcd" / WEIGHTS).is_file()


def test_a_store_without_a_listing_is_refused(tmp_path, hub_state):
    from vtcurate.errors import UserError

    with pytest.raises(UserError, match="run `vtcurate models fetch` into it first"):
        model_store.use_store(str(tmp_path))


@pytest.mark.slow
def test_a_run_loads_from_the_store_and_records_it(tmp_path, fake_hub, demo_corpus, monkeypatch):
    from vtcurate.cli import main
    from vtcurate.pipeline.executor import run_pipeline

    store = tmp_path / "store"
    assert main(["models", "fetch", str(CONFIGS / "demo.yaml"), "--cache", str(store), "--set",
                 "stages=[ingest, langid, keyframes, clip_filter]", "--set", MODELS]) == 0  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _config(f"models.store={store}", "report.enabled=false")
    run_pipeline(config, str(demo_corpus / "manifest.jsonl"), tmp_path / "run", runner="local")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    sha = hashlib.sha256(fake_hub["weights"].read_bytes()).hexdigest()
    assert info["models"]["clip_filter.models.*"]["files"] == {WEIGHTS: sha}
    assert len(fake_hub["downloads"]) == 1  # fetched once, never by a worker
    stats = json.loads(next((tmp_path / "run" / "stages").glob("*clip_filter/stats.json")).read_text())
    assert stats["kept"] + stats["rejected"] == stats["rows_in"] > 0
