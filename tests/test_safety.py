"""Nothing untrusted is unpickled or evaluated: the package never calls a loader that can run code
from data (manifests, configs, shards, caches and checkpoints are all data)."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vtcurate"
UNSAFE = {
    "pickle / dill / cloudpickle load": re.compile(r"\b(c?pickle|dill|cloudpickle|marshal)\.loads?\("),
    "eval / exec": re.compile(r"(?<![\w.])(eval|exec)\("),
    "yaml.load (not safe_load)": re.compile(r"\byaml\.(unsafe_)?load\("),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only=True)"),
    "numpy allow_pickle": re.compile(r"allow_pickle\s*=\s*True"),
}


def test_no_code_runs_from_data():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {what}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text("utf-8").splitlines(), start=1)
        for what, pattern in UNSAFE.items()
        if pattern.search(line)
    ]
    assert not found, found


def test_the_patterns_catch_what_they_name():
    samples = {
        "pickle / dill / cloudpickle load": "obj = pickle.loads(blob)",
        "eval / exec": "value = eval(text)",
        "yaml.load (not safe_load)": "cfg = yaml.load(fh)",
        "torch.load without weights_only=True": "sd = torch.load(path, map_location='cpu')",
        "numpy allow_pickle": "np.load(f, allow_pickle=True)",
    }
    for what, line in samples.items():
        assert UNSAFE[what].search(line), what
    assert not UNSAFE["torch.load without weights_only=True"].search("torch.load(p, weights_only=True)")
    assert not UNSAFE["eval / exec"].search("model.eval()")
