"""langid on short captions: lid.176 alone (second opinion off) vs with Lingua's second opinion.

Counts on every real caption of at most six words (Chinese: at most twelve characters, about six
two-character words) in ../shared/data/captions, and on the short captions written in
tests/stages/test_langid.py (English ones that should be kept, other languages that should not);
then Lingua's cost: model load in a fresh process, peak memory, and scoring speed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from bench.common import Row, median_time, ratio_row

CAPTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "captions"
TEST_FILE = Path(__file__).resolve().parents[1] / "tests" / "stages" / "test_langid.py"
LANGUAGE_REASONS = ("lang_not_allowed", "low_lang_confidence")
OFF = "second opinion off (lid.176 + script rule)"


def _short(caption: str, lang: str) -> bool:
    if lang == "zh":
        return sum(ch.isalnum() for ch in caption) <= 12
    return len(caption.split()) <= 6


def real_short_captions() -> list[tuple[str, str]]:
    """(caption, language the file gives) for every short caption of the real caption files."""
    rows = []
    for path in sorted(CAPTIONS.glob("*.jsonl")) if CAPTIONS.is_dir() else []:
        for line in path.read_text("utf-8").splitlines():
            r = json.loads(line) if line.strip() else None
            if r and _short(r["caption"], r["lang"]):
                rows.append((r["caption"], r["lang"]))
    return rows


def test_captions() -> tuple[list[str], list[tuple[str, str]]]:
    """The short English and other-language captions that the langid test writes."""
    spec = importlib.util.spec_from_file_location("_test_langid", TEST_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    other = [(c, lang) for lang, cs in module.SHORT_OTHER.items() for c in cs]
    return module.SHORT_EN, other


def _stage(**keys):
    from vtcurate.config import LangIdConfig
    from vtcurate.stages.langid import LangIdStage

    stage = LangIdStage(LangIdConfig(**keys))
    stage.setup()
    return stage


def _outcomes(stage, rows: list[tuple[str, str]]) -> dict:
    import pyarrow as pa

    table = pa.table({"clip_id": [str(i) for i in range(len(rows))], "caption": [c for c, _ in rows]})
    out = stage(table).to_pylist()
    truth = [lang for _, lang in rows]
    return {
        "rejected_as_language": sum(o["drop_reason"] in LANGUAGE_REASONS for o in out),
        "rejected": sum(o["drop_reason"] is not None for o in out),
        "mislabelled": sum(o["lang"] != t for o, t in zip(out, truth)),
        "kept": sum(o["drop_reason"] is None for o in out),
        "by_lingua": sum(o["lang_rule"] == "lingua" and o["drop_reason"] is None for o in out),
        "examples": sorted(o["caption_raw"] for o, t in zip(out, truth) if o["lang"] != t)[:6],
    }


def _count_row(name: str, key: str, after: dict, before: dict, n: int, note: str = "") -> Row:
    label = f"{name}: {key.replace('_', ' ')} (of {n})"
    return Row("langid", label, after[key], "captions", OFF, before[key], note=note)


_FRESH = """
import json, re, sys, time
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
t0 = time.perf_counter()
from vtcurate.config import LangIdConfig
from vtcurate.stages.langid import LangIdStage
stage = LangIdStage(LangIdConfig(second_opinion_max_words=int(sys.argv[1])))
rss0 = rss()
stage.setup()
setup_s = time.perf_counter() - t0
t1 = time.perf_counter()
for c in json.loads(sys.stdin.read()):
    stage.resolve(stage.score(c))
score_s = time.perf_counter() - t1
out = {"setup_s": setup_s, "lingua_load_s": stage.lingua_load_s, "score_s": score_s, "rss": rss() - rss0}
print(json.dumps(out))
"""


def _fresh(max_words: int, captions: list[str]) -> dict:
    """setup() and one pass over the captions in a new process: load times and peak memory."""
    cmd = [sys.executable, "-c", _FRESH, str(max_words)]
    done = subprocess.run(cmd, input=json.dumps(captions), capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


SETS = (
    ("real captions ≤ 6 words (zh ≤ 12 characters)", ("rejected_as_language", "rejected", "mislabelled")),
    ("short English captions written in the test", ("rejected", "mislabelled")),
    ("short other-language captions written in the test (should all go)", ("kept",)),
)


def short_captions(reps: int) -> list[Row]:
    real = real_short_captions()
    short_en, other = test_captions()
    before, after = _stage(second_opinion_max_words=0), _stage()
    rows = []
    for (name, keys), data in zip(SETS, (real, [(c, "en") for c in short_en], other)):
        b, a = _outcomes(before, data), _outcomes(after, data)
        for key in keys:
            note = f"decided by Lingua: {a['by_lingua']}" if key == keys[0] else ""
            if key == "mislabelled" and a["examples"]:
                note = "still wrong: " + "; ".join(a["examples"])
            rows.append(_count_row(name, key, a, b, len(data), note))
    texts = [c for c, _ in real] + short_en + [c for c, _ in other]
    rate_off = len(texts) / median_time(lambda: [before.resolve(before.score(t)) for t in texts], reps)
    rate_on = len(texts) / median_time(lambda: [after.resolve(after.score(t)) for t in texts], reps)
    max_words = after.config.second_opinion_max_words
    note = f"ratio < 1: Lingua's cost; captions over {max_words} words are not sent to it"
    name = f"scoring the {len(texts)} short captions above"
    rows.append(ratio_row("langid", name, rate_on, "captions/s", OFF, rate_off, note=note))
    on, off = _fresh(max_words, texts), _fresh(0, texts)
    load = "Lingua load in setup() (en + zh models, fresh process)"
    first = "first pass over the short captions, fresh process (reads the rivals' models)"
    rows += [
        Row("langid", load, on["lingua_load_s"], "s", note="rival languages load on first use"),
        Row("langid", first, on["score_s"], "s", OFF, off["score_s"]),
        Row("langid", "memory that setup() and that pass added (RSS)", on["rss"], "MB", OFF, off["rss"]),
    ]
    return rows
