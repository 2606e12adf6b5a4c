"""A demo corpus to learn from, noisy as web corpora are, with its answer key and a clean held-out set.

    <out>/corpus/manifest.jsonl + videos/ + answer_key.jsonl   the training corpus (`vtcurate run`)
    <out>/heldout/annotations.jsonl + videos/                   clean clips for evaluation (MSR-VTT style)
    <out>/summary.json                                          what was written (the summary below)

A clip shows one or two shapes crossing the frame; seven attributes vary: colour (8), shape (5),
size (2), count (2), direction (4), speed (2) and background (3), 3,840 combinations, so retrieval
over hundreds of held-out clips is far from saturated.  Captions say all seven, in English or
Chinese, in one of several phrasings (`caption`).

Noise of the kinds web corpora have, at web-corpus levels, each planted row listed in
`answer_key.jsonl` (format: vtcurate/report/answer_key.py) with the stage and reason expected to
drop it in the train-demo flow (`NOISE`; clean rows have no entry):
- `mismatch`: the caption of another clip (only a similarity filter can see it);
- `partly_wrong`: the clip's caption with one attribute wrong (`wrong` in the key names it);
- `boilerplate_tags`: stock-site tags only ("stock footage 4K clip 12345678"): normalised to nothing;
- `boilerplate_cta`: calls to action only ("like and subscribe 点赞关注"): no rule removes them,
  they read as English or Chinese, so only a similarity filter can see them;
- `foreign`: a right caption in another language (French, German, Spanish, Russian, Japanese);
- `reupload`: an earlier clip again, re-encoded smaller, under another id and phrasing;
- `static`: one picture for the whole clip, `blank`: mostly black, both captioned as moving;
- `unreadable`: bytes that are not a video.
The held-out set has `heldout` clean clips of distinct attribute combinations (so distinct
captions: a text query has one right video; chance R@1 is 1/heldout), rendered with a seed of
its own; each annotation row carries its `attributes` and `phrasing`, from which
`reversed_captions` rebuilds the captions with the direction reversed.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from vtcurate.demo.corpus import FPS, MOTIONS, SIZE, background, draw_shape, write_h264

COLOURS = {
    "red": ("红色", (220, 40, 40)),
    "green": ("绿色", (40, 190, 60)),
    "blue": ("蓝色", (50, 90, 230)),
    "yellow": ("黄色", (235, 210, 40)),
    "orange": ("橙色", (245, 140, 20)),
    "purple": ("紫色", (150, 60, 210)),
    "white": ("白色", (235, 235, 235)),
    "pink": ("粉色", (245, 130, 190)),
}
SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "diamond": "菱形", "star": "星形"}
SIZES = {"small": ("小", (9, 13)), "large": ("大", (19, 25))}  # radius range, px
COUNTS = {1: ("a", "一个"), 2: ("two", "两个")}
SPEEDS = {"slow": ("slowly", "slow", "缓慢"), "fast": ("quickly", "fast", "快速")}
TRAVEL = {"slow": 0.3, "fast": 1.0}  # share of the edge-to-edge path crossed in the clip
BACKGROUNDS = {
    "plain": ("a plain dark background", "深色背景"),
    "striped": ("a striped background", "条纹背景"),
    "checkered": ("a checkered background", "格子背景"),
}
REVERSED = {"from left to right": "from right to left", "from top to bottom": "from bottom to top"}
REVERSED |= {v: k for k, v in REVERSED.items()}

EN_VERBS = (("moves", "move", "moving"), ("slides", "slide", "sliding"), ("glides", "glide", "gliding"),
            ("travels", "travel", "travelling"))  # fmt: skip
EN_TEMPLATES = (
    "{n} {size} {colour} {shape} {verb} {adv} {dir} on {bg}",
    "{n} {size} {colour} {shape} {ing} {dir} {adv} over {bg}",
    "{Dir}, {n} {adj} {size} {colour} {shape} {verb} across {bg}",
    "video of {n} {size} {colour} {shape} {ing} {adv} {dir}, {bg} behind",
    "{Bg} with {n} {size} {colour} {shape} {ing} {dir} {adv}",
)
ZH_VERBS = ("移动", "滑动", "运动")
ZH_TEMPLATES = (
    "{n}{size}的{colour}{shape}在{bg}上{dir}{speed}{verb}",
    "{bg}上，{n}{colour}的{size}{shape}{speed}地{dir}{verb}",
    "画面中{n}{size}{colour}{shape}{dir}{speed}{verb}，衬着{bg}",
    "{n}{colour}{size}{shape}{speed}{dir}{verb}（{bg}）",
)


@dataclass(frozen=True)
class Clip:
    """What a clip shows: one value of each attribute."""

    colour: str
    shape: str
    size: str
    count: int
    direction: str
    speed: str
    background: str

    def caption(self, lang: str, phrasing: int) -> str:
        """The clip in `lang`; `phrasing` (any int) picks the template and verb, so a caption can be
        rebuilt from its attributes (see `reversed_captions`)."""
        pick = random.Random(phrasing)
        if lang == "zh":
            return pick.choice(ZH_TEMPLATES).format(
                n=COUNTS[self.count][1], size=SIZES[self.size][0], colour=COLOURS[self.colour][0],
                shape=SHAPES[self.shape], dir=MOTIONS[self.direction][0], speed=SPEEDS[self.speed][2],
                verb=pick.choice(ZH_VERBS), bg=BACKGROUNDS[self.background][1],
            )  # fmt: skip
        template, (verb, verb_plural, ing) = pick.choice(EN_TEMPLATES), pick.choice(EN_VERBS)
        adv, adj, _ = SPEEDS[self.speed]
        bg = BACKGROUNDS[self.background][0]
        return template.format(
            n=COUNTS[self.count][0], size=self.size, colour=self.colour,
            shape=self.shape + ("s" if self.count > 1 else ""), verb=verb if self.count == 1 else verb_plural,
            ing=ing, adv=adv, adj=adj, dir=self.direction, Dir=self.direction.capitalize(), bg=bg,
            Bg=bg.capitalize(),
        )  # fmt: skip

    def render(self, rng: random.Random, seconds: float) -> list[np.ndarray]:
        """RGB frames: the shape(s) crossing the frame along the direction, at the speed, over the
        background; size, offsets and the background's pattern drawn from `rng`."""
        _, start, end = MOTIONS[self.direction]
        radius = rng.randint(*SIZES[self.size][1])
        half, span = SIZE / 2, SIZE / 2 - radius - 4
        travel = TRAVEL[self.speed]
        t0 = rng.uniform(0, 1 - travel)
        gap = radius + 3 + rng.randint(0, 6) if self.count == 2 else 0  # the pair side by side
        room = max(0.0, min(25.0, half - radius - 4 - gap))
        base = rng.uniform(-room, room)
        offsets = [base - gap, base + gap] if self.count == 2 else [base]
        backdrop = _backdrop(self.background, rng)
        colour = COLOURS[self.colour][1]
        frames = []
        n = max(1, round(seconds * FPS))
        for i in range(n):
            a = t0 + travel * i / max(1, n - 1)
            img = backdrop.copy()
            for off in offsets:  # off-axis offset: across the direction of motion
                cx = half + span * (start[0] + (end[0] - start[0]) * a) + (off if start[0] == end[0] else 0)
                cy = half + span * (start[1] + (end[1] - start[1]) * a) + (off if start[1] == end[1] else 0)
                draw_shape(img, self.shape, colour, cx, cy, radius)
            frames.append(img)
        return frames


ALL_CLIPS = [Clip(*c) for c in itertools.product(COLOURS, SHAPES, SIZES, COUNTS, MOTIONS, SPEEDS,
                                                  BACKGROUNDS)]  # fmt: skip


def _backdrop(kind: str, rng: random.Random) -> np.ndarray:
    """A dark background of the clip's own (the curation demo's smooth grey field, so that clips of
    one kind are not near-duplicates), with stripes or checks of a random period, phase and slant."""
    grey = background(rng)[:, :, 0].astype(np.int16)
    if kind != "plain":
        period = rng.randint(8, 20)
        y, x = np.mgrid[0:SIZE, 0:SIZE]
        phase = rng.randint(0, period)
        if kind == "striped":
            along = rng.choice((x, y, x + y, x - y))
            on = ((along + phase) // (period // 2)) % 2
        else:
            on = (((x + phase) // period) + ((y + phase) // period)) % 2
        grey = grey + 35 * on
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


# kind -> (default share of the training rows, stage expected to drop it, reason) in configs/train-demo.yaml
NOISE = {
    "mismatch": (0.40, "clip_filter", "low_clip_score"),
    "partly_wrong": (0.10, "clip_filter", "low_clip_score"),
    "boilerplate_tags": (0.02, "langid", "empty_caption"),
    "boilerplate_cta": (0.02, "clip_filter", "low_clip_score"),
    "foreign": (0.04, "langid", "lang_not_allowed"),
    "reupload": (0.03, "dedup", "near_duplicate"),
    "static": (0.02, "motion", "static"),
    "blank": (0.02, "motion", "blank"),
    "unreadable": (0.005, "ingest", "unreadable_video"),
}
TAGS = ("stock footage", "4K", "HD", "1080p", "royalty-free", "stock video", "Shutterstock", "高清视频素材",
        "视频素材", "UHD", "720p", "istock")  # fmt: skip
CTA = ("like and subscribe", "subscribe for more videos", "follow for more", "check out my channel",
       "new video every day", "link in bio", "don't forget to like and share", "#shorts #viral #fyp",
       "点赞关注", "更多精彩视频请关注", "记得点赞收藏", "关注我看更多视频")  # fmt: skip
FOREIGN = {  # lang -> (template, colours, shapes, directions), in the order of COLOURS, SHAPES, MOTIONS
    "fr": ("un {shape} {colour} se déplace {dir}",
           ["rouge", "vert", "bleu", "jaune", "orange", "violet", "blanc", "rose"],
           ["cercle", "carré", "triangle", "losange", "étoile"],
           ["de gauche à droite", "de droite à gauche", "de haut en bas", "de bas en haut"]),
    "de": ("ein {colour} {shape} bewegt sich {dir}",
           ["roter", "grüner", "blauer", "gelber", "oranger", "violetter", "weißer", "rosa"],
           ["Kreis", "Quadrat", "Dreieck", "Rhombus", "Stern"],
           ["von links nach rechts", "von rechts nach links", "von oben nach unten", "von unten nach oben"]),
    "es": ("un {shape} {colour} se mueve {dir}",
           ["rojo", "verde", "azul", "amarillo", "naranja", "morado", "blanco", "rosa"],
           ["círculo", "cuadrado", "triángulo", "rombo", "estrella"],
           ["de izquierda a derecha", "de derecha a izquierda", "de arriba abajo", "de abajo arriba"]),
    "ru": ("{colour} {shape} движется {dir}",
           ["красный", "зелёный", "синий", "жёлтый", "оранжевый", "фиолетовый", "белый", "розовый"],
           ["круг", "квадрат", "треугольник", "ромб", "звезда"],
           ["слева направо", "справа налево", "сверху вниз", "снизу вверх"]),
    "ja": ("{colour}{shape}が{dir}へ動いています",
           ["赤い", "緑の", "青い", "黄色い", "オレンジの", "紫の", "白い", "ピンクの"],
           ["丸", "四角", "三角", "ひし形", "星"],
           ["左から右", "右から左", "上から下", "下から上"]),
}  # fmt: skip


def _foreign_caption(clip: Clip, rng: random.Random) -> str:
    template, colours, shapes, dirs = FOREIGN[rng.choice(sorted(FOREIGN))]
    return template.format(colour=colours[list(COLOURS).index(clip.colour)],
                           shape=shapes[list(SHAPES).index(clip.shape)],
                           dir=dirs[list(MOTIONS).index(clip.direction)])  # fmt: skip


def _partly_wrong(clip: Clip, rng: random.Random) -> tuple[Clip, str]:
    """The clip with one attribute changed: (what the caption will say, which attribute)."""
    values = {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES), "count": list(COUNTS),
              "direction": list(MOTIONS), "speed": list(SPEEDS), "background": list(BACKGROUNDS)}  # fmt: skip
    attr = rng.choice(sorted(values))
    wrong = rng.choice([v for v in values[attr] if v != getattr(clip, attr)])
    return replace(clip, **{attr: wrong}), attr


def reversed_caption(row: dict) -> str:
    """A held-out annotation row's caption with the direction of motion reversed, in the same
    language and phrasing ("from left to right" -> "from right to left")."""
    clip = Clip(**row["attributes"])
    return replace(clip, direction=REVERSED[clip.direction]).caption(row["lang"], row["phrasing"])


def reversed_captions(annotations: str | Path) -> list[str]:
    """`reversed_caption` of each row of a held-out annotations.jsonl, in its order."""
    lines = Path(annotations).read_text("utf-8").splitlines()
    return [reversed_caption(json.loads(line)) for line in lines if line.strip()]


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def noise_counts(clips: int, mismatch: float, partly_wrong: float, noise: dict[str, float] | None) -> dict:
    """Rows of each planted kind: the share of `clips`, at least one where the share is not 0."""
    shares = {kind: share for kind, (share, _, _) in NOISE.items()}
    shares |= {"mismatch": mismatch, "partly_wrong": partly_wrong, **(noise or {})}
    unknown = sorted(set(shares) - set(NOISE))
    if unknown:
        raise ValueError(f"unknown noise kind(s) {unknown}; known: {sorted(NOISE)}")
    counts = {k: max(1, round(s * clips)) if s > 0 else 0 for k, s in shares.items()}
    if sum(counts.values()) >= clips:
        raise ValueError(f"{sum(counts.values())} planted rows leave no clean clip among {clips}")
    return counts


def generate_training_corpus(
    out: str | Path,
    clips: int = 1024,
    heldout: int = 256,
    mismatch: float = 0.4,
    partly_wrong: float = 0.1,
    seed: int = 0,
    seconds: float = 2.0,
    noise: dict[str, float] | None = None,
) -> dict:
    """Write the training corpus (`clips` rows, shares of planted noise by kind: `mismatch`,
    `partly_wrong`, and `noise` overriding NOISE's other defaults) and `heldout` clean held-out clips
    under `out`; return the summary (also written to summary.json)."""
    t0 = time.perf_counter()
    if not 1 <= heldout <= len(ALL_CLIPS):
        raise ValueError(f"heldout must be 1..{len(ALL_CLIPS)} (distinct attribute combinations)")
    counts = noise_counts(clips, mismatch, partly_wrong, noise)
    out = Path(out)
    corpus, held = out / "corpus", out / "heldout"
    for d in (corpus / "videos", held / "videos"):
        d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    kinds = [k for k, n in counts.items() if k != "reupload" for _ in range(n)]
    kinds += [None] * (clips - len(kinds) - counts["reupload"])
    rng.shuffle(kinds)
    rows: list[tuple[dict, dict | None]] = []  # (manifest row, answer-key fields or None)
    clean: list[tuple[dict, Clip]] = []
    for i, kind in enumerate(kinds):
        name = f"c{i:05d}"
        row = {"id": name, "video": f"videos/{name}.mp4"}
        path = corpus / row["video"]
        clip, lang, phrasing = rng.choice(ALL_CLIPS), rng.choice(("en", "zh")), rng.randrange(1 << 30)
        said, extra = clip, {}
        if kind == "unreadable":
            path.write_bytes(rng.randbytes(512))
        else:
            frames = clip.render(rng, seconds)
            if kind == "static":
                frames = [frames[len(frames) // 2]] * len(frames)
            elif kind == "blank":  # black for the first three quarters
                k = round(len(frames) * 0.75)
                frames = [np.zeros_like(f) for f in frames[:k]] + frames[k:]
            write_h264(path, frames)
        if kind == "mismatch":
            said = rng.choice([c for c in rng.sample(ALL_CLIPS, 2) if c != clip])
        elif kind == "partly_wrong":
            said, extra["wrong"] = _partly_wrong(clip, rng)
        if kind == "boilerplate_tags":
            row["caption"] = " ".join(rng.sample(TAGS, rng.randint(2, 4)))
        elif kind == "boilerplate_cta":
            row["caption"] = " ".join(rng.sample(CTA, 2))
        elif kind == "foreign":
            row["caption"] = _foreign_caption(clip, rng)
        else:
            row["caption"] = said.caption(lang, phrasing)
        rows.append((row, {"planted": kind, **extra} if kind else None))
        if kind is None:
            clean.append((row, clip))
    for j in range(counts["reupload"]):  # an earlier clean clip, re-encoded at 3/4 size, reworded
        src, clip = clean[rng.randrange(len(clean))]
        name = f"c{len(kinds) + j:05d}"
        _reencode(corpus / src["video"], corpus / "videos" / f"{name}.mp4")
        caption = clip.caption(rng.choice(("en", "zh")), rng.randrange(1 << 30))
        rows.append(({"id": name, "video": f"videos/{name}.mp4", "caption": caption},
                     {"planted": "reupload", "of": src["id"]}))  # fmt: skip
    rng.shuffle(rows)
    key = [
        {"row": n, "id": row["id"], "planted": case["planted"], "expect_stage": NOISE[case["planted"]][1],
         "expect_reason": NOISE[case["planted"]][2], **{k: v for k, v in case.items() if k != "planted"}}
        for n, (row, case) in enumerate(rows, start=1) if case
    ]  # fmt: skip
    _write_jsonl([row for row, _ in rows], corpus / "manifest.jsonl")
    _write_jsonl(key, corpus / "answer_key.jsonl")
    annotations = _write_heldout(held, heldout, random.Random(seed + 10_000), seconds)
    summary = {
        "manifest": str(corpus / "manifest.jsonl"),
        "answer_key": str(corpus / "answer_key.jsonl"),
        "rows": len(rows),
        "clean": len(rows) - len(key),
        "planted": {k: n for k, n in counts.items() if n},
        "heldout": str(held),
        "heldout_clips": len(annotations),
        "chance_R@1": 100.0 / len(annotations),  # %, as eval.json gives it
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _reencode(src: Path, dst: Path) -> None:
    """`src` decoded and written again at 3/4 of its size, as re-uploads are."""
    import av
    import cv2

    with av.open(str(src)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    side = SIZE * 3 // 4
    write_h264(dst, [cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in frames])


def _write_heldout(held: Path, n: int, rng: random.Random, seconds: float) -> list[dict]:
    """`n` clean clips of distinct attribute combinations, half English, half Chinese."""
    annotations = []
    for i, clip in enumerate(rng.sample(ALL_CLIPS, n)):
        name, lang, phrasing = f"h{i:04d}", ("en", "zh")[i % 2], rng.randrange(1 << 30)
        write_h264(held / "videos" / f"{name}.mp4", clip.render(rng, seconds))
        annotations.append({"clip_id": name, "text": clip.caption(lang, phrasing), "lang": lang,
                            "attributes": asdict(clip), "phrasing": phrasing})  # fmt: skip
    if len({a["text"] for a in annotations}) < n:  # every phrasing says every attribute
        raise RuntimeError("two held-out clips of distinct combinations got the same caption")
    _write_jsonl(annotations, held / "annotations.jsonl")
    return annotations
