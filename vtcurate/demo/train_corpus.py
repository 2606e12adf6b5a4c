"""A demo corpus to learn from, with noise that curation removes, and a clean held-out set.

    <out>/corpus/manifest.jsonl + videos/   the training corpus (curated by `vtcurate run`)
    <out>/heldout/annotations.jsonl + videos/   clean clips for evaluation (MSR-VTT style)

The training corpus has `per_combo` clips of each of the 48 colour x shape x motion combinations,
captions alternating English and Chinese in varied phrasings, and noise of the kinds web corpora
have:
- `mismatch` of the clips carry the caption of a clip of another combination (same language):
  only a similarity filter can see these;
- foreign-language captions (langid drops them), exact re-uploads (dedup), unreadable files
  (ingest).
The held-out set holds one clip of each combination (a different seed: new sizes, offsets and
backgrounds), so a text query has exactly one right video; chance R@1 is 1/48 overall.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path

from vtcurate.demo.corpus import COLOURS, MOTIONS, SHAPES, ClipSpec, render, write_h264

RADIUS = (18, 28)  # larger shapes than the curation demo's: a small model learns them from scratch on CPU
EN_VERBS = ("moves", "travels", "slides", "glides")
EN_ENDINGS = ("", " across the frame", " over a dark background")
ZH_VERBS = ("移动", "滑动", "运动")

FOREIGN = (
    "un cercle rouge se déplace de gauche à droite",
    "赤い丸が左から右へ移動します",
    "красный квадрат движется сверху вниз",
    "ein blaues Dreieck bewegt sich nach oben",
)


def varied_caption(spec: ClipSpec, lang: str, rng: random.Random) -> str:
    """A caption of the clip in one of several phrasings, as web captions vary."""
    if lang == "zh":
        return spec.caption("zh")[:-2] + rng.choice(ZH_VERBS)
    article, verb, ending = rng.choice(("a", "the")), rng.choice(EN_VERBS), rng.choice(EN_ENDINGS)
    return f"{article} {spec.colour} {spec.shape} {verb} {spec.motion}{ending}"


def combos() -> list[ClipSpec]:
    return [ClipSpec(*c) for c in itertools.product(COLOURS, SHAPES, MOTIONS)]


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def generate_training_corpus(
    out: str | Path, per_combo: int = 8, mismatch: float = 0.2, seed: int = 0, seconds: float = 2.0
) -> dict:
    out = Path(out)
    corpus, heldout = out / "corpus", out / "heldout"
    for d in (corpus / "videos", heldout / "videos"):
        d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    specs = combos()
    rows, mismatched = [], 0
    for i in range(per_combo * len(specs)):
        spec = specs[i % len(specs)]
        lang = "en" if (i // len(specs) + i) % 2 == 0 else "zh"  # each combo gets both languages
        name = f"c{i:05d}"
        write_h264(corpus / "videos" / f"{name}.mp4", render(spec, rng, seconds, RADIUS))
        caption_of = spec
        if rng.random() < mismatch:
            caption_of = rng.choice([s for s in specs if s != spec])
            mismatched += 1
        caption = varied_caption(caption_of, lang, rng)
        rows.append({"id": name, "video": f"videos/{name}.mp4", "caption": caption})
    for j, text in enumerate(FOREIGN * 4):
        name = f"foreign{j:02d}"
        write_h264(corpus / "videos" / f"{name}.mp4", render(rng.choice(specs), rng, seconds, RADIUS))
        rows.append({"id": name, "video": f"videos/{name}.mp4", "caption": text})
    for j in range(8):  # re-uploads: the same file under another id, with its own caption
        src = rows[rng.randrange(per_combo * len(specs))]
        name = f"reupload{j:02d}"
        shutil.copyfile(corpus / src["video"], corpus / "videos" / f"{name}.mp4")
        rows.append({"id": name, "video": f"videos/{name}.mp4", "caption": src["caption"]})
    for j in range(4):
        name = f"broken{j:02d}"
        (corpus / "videos" / f"{name}.mp4").write_bytes(b"\x00" * 512)
        rows.append({"id": name, "video": f"videos/{name}.mp4", "caption": specs[j].caption("en")})
    rng.shuffle(rows)
    _write_jsonl(rows, corpus / "manifest.jsonl")

    held_rng = random.Random(seed + 10_000)
    annotations = []
    for i, spec in enumerate(specs):
        lang = "en" if i % 2 == 0 else "zh"
        name = f"h{i:03d}"
        write_h264(heldout / "videos" / f"{name}.mp4", render(spec, held_rng, seconds, RADIUS))
        annotations.append({"clip_id": name, "text": spec.caption(lang), "lang": lang})
    _write_jsonl(annotations, heldout / "annotations.jsonl")
    return {
        "manifest": str(corpus / "manifest.jsonl"),
        "rows": len(rows),
        "clean_clips": per_combo * len(specs) - mismatched,
        "mismatched": mismatched,
        "heldout": str(heldout),
        "heldout_clips": len(annotations),
    }
