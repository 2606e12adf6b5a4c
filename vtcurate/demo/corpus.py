"""A small bilingual demo corpus: coloured shapes moving in directions, with planted bad cases.

Every clip is H.264, and its caption says what it shows, in English or Chinese.  Planted rows are
listed in `answer_key.jsonl` with the stage and reason that should reject them (or `null` where
the row should survive these stages), so tests and reports can check each decision.  Long videos
(several shots of large shapes cut together, no caption, an SRT file per video with one cue a
shot) exercise the split stage: their answer-key rows give the cut times and the clips expected.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

COLOURS = {
    "red": ("红色", (220, 40, 40)),
    "green": ("绿色", (40, 190, 60)),
    "blue": ("蓝色", (50, 90, 230)),
    "yellow": ("黄色", (235, 210, 40)),
}
SHAPES = {"circle": "圆", "square": "正方形", "triangle": "三角形"}
MOTIONS = {
    "from left to right": ("从左向右", (-1, 0), (1, 0)),
    "from right to left": ("从右向左", (1, 0), (-1, 0)),
    "from top to bottom": ("从上到下", (0, -1), (0, 1)),
    "from bottom to top": ("从下到上", (0, 1), (0, -1)),
}
SIZE = 128
FPS = 12


@dataclass(frozen=True)
class ClipSpec:
    colour: str
    shape: str
    motion: str

    def caption(self, lang: str) -> str:
        if lang == "zh":
            zh_colour, _ = COLOURS[self.colour]
            return f"一个{zh_colour}的{SHAPES[self.shape]}{MOTIONS[self.motion][0]}移动"
        return f"a {self.colour} {self.shape} moves {self.motion}"


def draw_shape(img: np.ndarray, shape: str, colour: tuple, cx: float, cy: float, radius: int) -> None:
    """A filled `shape` (circle, square, triangle, diamond or star) of `radius` px centred at (cx, cy)."""
    import cv2

    centre = (int(cx), int(cy))
    if shape == "circle":
        cv2.circle(img, centre, radius, colour, -1, cv2.LINE_AA)
        return
    if shape == "square":
        cv2.rectangle(img, (centre[0] - radius, centre[1] - radius), (centre[0] + radius, centre[1] + radius),
                      colour, -1)  # fmt: skip
        return
    if shape == "triangle":
        pts = [(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)]
    elif shape == "diamond":
        pts = [(cx, cy - radius), (cx + radius, cy), (cx, cy + radius), (cx - radius, cy)]
    elif shape == "star":  # five points, the inner corners at 0.45 of the radius
        pts = [(cx + r * np.sin(np.pi * k / 5), cy - r * np.cos(np.pi * k / 5))
               for k, r in zip(range(10), [radius, 0.45 * radius] * 5)]  # fmt: skip
    else:
        raise ValueError(f"unknown shape {shape!r}")
    cv2.fillPoly(img, [np.array(pts, np.int32)], colour, cv2.LINE_AA)


def background(rng: random.Random) -> np.ndarray:
    """A dark, smooth grey pattern of the clip's own, as real footage has its own scenery: without
    it clips of one motion differ only in a small shape and look like near-duplicates."""
    import cv2

    grid = np.array([[rng.randint(0, 70) for _ in range(4)] for _ in range(4)], np.float32)
    grey = np.clip(cv2.resize(grid, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC), 0, 80).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def render(
    spec: ClipSpec,
    rng: random.Random,
    seconds: float = 2.0,
    radius: tuple[int, int] = (12, 20),
    lift: int = 0,
) -> list[np.ndarray]:
    """RGB frames of the shape (radius drawn from `radius`, pixels) crossing the frame along its
    motion, over a background brightened by `lift`."""
    _, (sx, sy), (ex, ey) = MOTIONS[spec.motion]
    radius = rng.randint(*radius)
    offset = rng.uniform(-25, 25)  # off-axis position, so clips of one kind differ
    backdrop = background(rng) + np.uint8(lift)
    half, span = SIZE / 2, SIZE / 2 - radius - 4
    frames = []
    n = max(1, round(seconds * FPS))
    for i in range(n):
        a = i / max(1, n - 1)
        cx = half + span * (sx + (ex - sx) * a) + (offset if sx == ex else 0)
        cy = half + span * (sy + (ey - sy) * a) + (offset if sy == ey else 0)
        img = np.empty((SIZE, SIZE, 3), np.uint8)
        img[:] = backdrop
        draw_shape(img, spec.shape, COLOURS[spec.colour][1], cx, cy, radius)
        frames.append(img)
    return frames


def write_h264(path: Path, frames: list[np.ndarray], fps: int = FPS) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(fps), "preset": "veryfast", "crf": "23"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _srt_time(t: float) -> str:
    ms = round(t * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_long_video(
    out: Path, name: str, specs: list[ClipSpec], lang: str, rng: random.Random, shot_s: float = 2.0
) -> tuple[str, str, list[float]]:
    """A video of one shot per spec (a large shape, on a brightness of its own), hard cuts between,
    and an SRT file with one cue inside each shot: (video, subtitles, cut times)."""
    frames, cues, cuts = [], [], []
    for i, spec in enumerate(specs):
        frames += render(spec, rng, shot_s, radius=(26, 32), lift=60 + 50 * (i % 3))  # a scenery each
        start = i * shot_s
        if i:
            cuts.append(start)
        large = ("a ", "a large ") if lang == "en" else ("一个", "一个大")
        text = spec.caption(lang).replace(*large, 1)
        cues.append(f"{i + 1}\n{_srt_time(start + 0.2)} --> {_srt_time(start + shot_s - 0.2)}\n{text}\n")
    write_h264(out / "videos" / f"{name}.mp4", frames)
    (out / "videos" / f"{name}.srt").write_text("\n".join(cues), encoding="utf-8")
    return f"videos/{name}.mp4", f"videos/{name}.srt", cuts


# Burned-in text: a subtitle line about 5% of the frame high (as broadcast subtitles are), so that
# 128 px key-frames shrink it to a few pixels and OCR must read frames of its own at a higher
# resolution; the clips are TEXT_SIZE px square.
TEXT_SIZE = 360
SUBTITLE_ZH = "欢迎收看今天的节目"
SUBTITLE_EN = "Welcome to our show today"  # where no CJK font is installed
WATERMARK = "www.stockclips.example"
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian fonts-wqy-zenhei (make browser)
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)


def cjk_font() -> str | None:
    """A font file with Chinese glyphs, if the system has one."""
    return next((f for f in CJK_FONTS if Path(f).is_file()), None)


def latin_font() -> str:
    """DejaVu Sans Bold, shipped inside matplotlib (a dependency): the same glyphs everywhere."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")


def draw_text(
    img: np.ndarray, text: str, font: str, size: int, centre: tuple[int, int], alpha: float = 1.0
) -> np.ndarray:
    """`text` drawn on an RGB image, white with a dark outline, centred at `centre`; `alpha` < 1
    blends it in (a watermark)."""
    from PIL import Image, ImageDraw, ImageFont

    base = Image.fromarray(img)
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    face = ImageFont.truetype(font, size)
    ImageDraw.Draw(layer).text(centre, text, font=face, fill=(255, 255, 255, round(255 * alpha)),
                               anchor="mm", stroke_width=max(1, size // 10),
                               stroke_fill=(0, 0, 0, round(255 * alpha)))  # fmt: skip
    return np.asarray(Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB"))


def text_clip(spec: ClipSpec, rng: random.Random, text: str, font: str, size: int, y: float,
              alpha: float = 1.0) -> list[np.ndarray]:  # fmt: skip
    """A moving-shape clip at TEXT_SIZE px with `text` burned into every frame at height `y` (a share)."""
    import cv2

    side = (TEXT_SIZE, TEXT_SIZE)
    frames = [cv2.resize(f, side, interpolation=cv2.INTER_LINEAR) for f in render(spec, rng)]
    return [draw_text(f, text, font, size, (TEXT_SIZE // 2, round(TEXT_SIZE * y)), alpha) for f in frames]


def still_clip(spec: ClipSpec, rng: random.Random) -> list[np.ndarray]:
    """The shape standing still: every frame the same picture."""
    first = render(spec, rng)[0]
    return [first.copy() for _ in range(round(2.0 * FPS))]


def mostly_black_clip(spec: ClipSpec, rng: random.Random, black: float = 0.75) -> list[np.ndarray]:
    """Black for the first `black` share of the clip, then the shape moving."""
    frames = render(spec, rng)
    n = round(len(frames) * black)
    return [np.zeros_like(f) for f in frames[:n]] + frames[n:]


def with_logo(frames: list[np.ndarray]) -> list[np.ndarray]:
    """`frames` with a channel's badge in the top-right corner: a white star on a blue plate.  No
    letters: OCR reads even a few pixels of lettering, and text_overlay would rightly drop it first."""
    import cv2

    out = []
    for f in frames:
        img = f.copy()
        cv2.rectangle(img, (SIZE - 24, 4), (SIZE - 5, 19), (20, 110, 220), -1)
        draw_shape(img, "star", (255, 255, 255), SIZE - 14.5, 11.5, 6)
        out.append(img)
    return out


EXCERPT_OF = 6  # clean clip whose 1 s excerpt is planted as a near-duplicate (modulo the clip count)
REUPLOAD_OF = 3  # clean clip planted again with a logo at 2/3 of its frame rate (modulo the clip count)
SAME_CAPTION_AS = 9  # clean clip whose caption is planted on another video (modulo the clip count)


def generate(out: str | Path, clips: int = 48, seed: int = 0) -> dict:
    """Write videos/, manifest.jsonl and answer_key.jsonl under `out`; return a summary."""
    if clips < 2:
        raise ValueError("the demo corpus needs at least 2 clean clips")
    excerpt_of, same_caption_as = EXCERPT_OF % clips, SAME_CAPTION_AS % clips
    reupload_of = REUPLOAD_OF % clips
    if excerpt_of == same_caption_as:
        same_caption_as = (same_caption_as + 1) % clips
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    combos = [ClipSpec(*c) for c in itertools.product(COLOURS, SHAPES, MOTIONS)]
    rows, key = [], []

    def add(row: dict, planted: str | None = None, stage: str | None = None, reason: str | None = None):
        rows.append(row)
        if planted:
            key.append(
                {
                    "row": len(rows),
                    "id": row["id"],
                    "planted": planted,
                    "expect_stage": stage,
                    "expect_reason": reason,
                }
            )

    specs = []
    for i in range(clips):
        spec = combos[i % len(combos)]
        specs.append(spec)
        name = f"clip{i:04d}"
        frames = render(spec, rng)
        write_h264(out / "videos" / f"{name}.mp4", frames)
        if i == excerpt_of:
            excerpt = frames[FPS // 2 : FPS * 3 // 2]
        if i == reupload_of:  # every third frame dropped (2/3 of the frame rate), and the last: the
            # re-upload is a frame shorter, so that dedup's `prefer: [duration, ...]` keeps the original
            reupload = with_logo([f for k, f in enumerate(frames) if k % 3 != 2][:-1])
        lang = "en" if i % 2 == 0 else "zh"
        add({"id": name, "video": f"videos/{name}.mp4", "caption": spec.caption(lang), "lang_hint": lang})

    def planted_clip(name: str, spec: ClipSpec, seconds: float = 2.0) -> str:
        write_h264(out / "videos" / f"{name}.mp4", render(spec, rng, seconds))
        return f"videos/{name}.mp4"

    s = combos[0]
    for lang_name, text in (
        ("french", "un cercle rouge se déplace de gauche à droite sur un fond sombre"),
        ("japanese", "赤い丸が左から右へゆっくり移動しています"),
        ("russian", "красный круг медленно движется слева направо"),
    ):
        add(
            {"id": f"planted-{lang_name}", "video": planted_clip(f"planted-{lang_name}", s), "caption": text},
            f"{lang_name} caption",
            "langid",
            "lang_not_allowed",
        )
    add(
        {"id": "planted-empty-caption", "video": planted_clip("planted-empty", s), "caption": "   "},
        "empty caption",
        "ingest",
        "empty_caption",
    )
    add(
        {
            "id": "planted-stock-noise",
            "video": planted_clip("planted-stock", s),
            "caption": "Red circle moves from left to right stock footage 4K HD clip 123456789 https://stock.example.com/v/1",
        },
        "stock-footage noise (normalised, kept)",
    )
    add(
        {
            "id": "planted-traditional",
            "video": planted_clip("planted-trad", combos[1]),
            "caption": "一個紅色的圓從右向左慢慢移動",
        },
        "Traditional Chinese (converted, kept)",
    )
    add(
        {
            "id": "planted-code-switch",
            "video": planted_clip("planted-cs", combos[2]),
            "caption": "一个红色的圆从上到下移动 (Red Circle Demo)",
        },
        "code-switched Chinese (kept as zh)",
    )
    add(
        {
            "id": "planted-html",
            "video": planted_clip("planted-html", combos[4]),
            # the report test checks that neither payload runs in a browser
            "caption": "<script>window.vtcuratePwned = 1</script>"
            '<img src=x onerror="window.vtcuratePwned = 2">'
            "<b>a small red square</b> moves from left to right",
        },
        "HTML and <script> in caption (stripped, kept)",
    )
    # mismatched: the caption describes another clip; only a similarity filter can see it
    for i, (a, b) in enumerate(((combos[0], combos[5]), (combos[10], combos[21]))):
        add(
            {
                "id": f"planted-mismatch-{i}",
                "video": planted_clip(f"planted-mismatch-{i}", a),
                "caption": b.caption("en"),
            },
            "mismatched caption",
            "clip_filter",
            "low_clip_score",
        )
    trunc = out / "videos" / "planted-truncated.mp4"
    write_h264(trunc, render(s, rng))
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) * 2 // 5])
    add(
        {"id": "planted-truncated", "video": "videos/planted-truncated.mp4", "caption": s.caption("en")},
        "truncated video",
        "ingest",
        "unreadable_video",
    )
    add(
        {"id": "planted-missing", "video": "videos/does-not-exist.mp4", "caption": s.caption("en")},
        "missing file",
        "ingest",
        "missing_file",
    )
    (out / "videos" / "planted-not-video.mp4").write_text("this is not a video\n" * 50)
    add(
        {"id": "planted-not-video", "video": "videos/planted-not-video.mp4", "caption": s.caption("en")},
        "non-video file named .mp4",
        "ingest",
        "unreadable_video",
    )
    add(
        {
            "id": "planted-too-short",
            "video": planted_clip("planted-short", s, seconds=0.3),
            "caption": s.caption("en"),
        },
        "too-short clip (0.3 s)",
        "ingest",
        "too_short",
    )
    write_h264(out / "videos" / "planted-excerpt.mp4", excerpt)
    add(
        {
            "id": "planted-excerpt",
            "video": "videos/planted-excerpt.mp4",
            "caption": "a short excerpt: " + specs[excerpt_of].caption("en"),
        },
        f"1 s excerpt of clip{excerpt_of:04d} (near-duplicate)",
        "dedup",
        "near_duplicate",
    )
    write_h264(out / "videos" / "planted-reupload.mp4", reupload, fps=FPS * 2 // 3)
    add(
        {
            "id": "planted-reupload",
            "video": "videos/planted-reupload.mp4",
            "caption": "channel re-upload: " + specs[reupload_of].caption("en"),
        },
        f"logo, {FPS * 2 // 3} fps re-upload of clip{reupload_of:04d}",
        "dedup",
        "near_duplicate",
    )
    other = combos[(same_caption_as + 7) % len(combos)]
    add(
        {
            "id": "planted-same-caption",
            "video": planted_clip("planted-same-caption", other, seconds=1.5),
            "caption": specs[same_caption_as].caption("en" if same_caption_as % 2 == 0 else "zh"),
        },
        f"caption of clip{same_caption_as:04d} on another video",
        "dedup",
        "duplicate_caption",
    )
    add(
        {"id": "clip0000", "video": "videos/clip0001.mp4", "caption": specs[1].caption("zh")},
        "duplicate id",
        "ingest",
        "duplicate_id",
    )
    for i, lang in enumerate(("en", "zh")):
        shots = [combos[(7 * i + 5 * k + 3) % len(combos)] for k in range(3)]
        video, srt, cuts = write_long_video(out, f"long{i}", shots, lang, rng)
        add({"id": f"long{i}", "video": video, "subtitles": srt, "lang_hint": lang},
            f"long video, {len(shots)} shots, {lang} SRT (split, kept)")  # fmt: skip
        key[-1].update(expect_clips=len(shots), cuts=cuts)

    # burned-in text (text_overlay) and clips without motion or picture (motion)
    zh_font = cjk_font()
    subtitle, font = (SUBTITLE_ZH, zh_font) if zh_font else (SUBTITLE_EN, latin_font())
    if not zh_font:
        log.warning("no CJK font (%s): the subtitle case is drawn in English", ", ".join(CJK_FONTS))
    for name, spec, lang, frames, expect_text, planted in (
        ("planted-subtitles", combos[13], "zh", text_clip(combos[13], rng, subtitle, font, 18, 0.9),
         subtitle, "burned-in subtitles" + ("" if zh_font else " (English: no CJK font)")),
        ("planted-watermark", combos[17], "en",
         text_clip(combos[17], rng, WATERMARK, latin_font(), 24, 0.5, alpha=0.6),
         WATERMARK, "English watermark"),
    ):  # fmt: skip
        write_h264(out / "videos" / f"{name}.mp4", frames)
        add({"id": name, "video": f"videos/{name}.mp4", "caption": spec.caption(lang), "lang_hint": lang},
            planted, "text_overlay", "text_overlay")  # fmt: skip
        key[-1]["expect_text"] = expect_text
    still, dark = combos[20], combos[30]
    write_h264(out / "videos" / "planted-static.mp4", still_clip(still, rng))
    add({"id": "planted-static", "video": "videos/planted-static.mp4",
         "caption": f"a {still.colour} {still.shape} in the middle of the frame"},
        "static clip (one picture)", "motion", "static")  # fmt: skip
    write_h264(out / "videos" / "planted-black.mp4", mostly_black_clip(dark, rng))
    add({"id": "planted-black", "video": "videos/planted-black.mp4", "caption": dark.caption("en")},
        "mostly black clip", "motion", "blank")  # fmt: skip

    with open(out / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(out / "answer_key.jsonl", "w", encoding="utf-8") as fh:
        for row in key:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"dir": str(out), "rows": len(rows), "clean": clips, "planted": len(key)}
