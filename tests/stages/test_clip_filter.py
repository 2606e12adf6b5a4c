"""clip_filter: the run-wide threshold plan on controlled scores, and scoring with a real (tiny) model."""

import hashlib
import json
import math
import re

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vtcurate.config import ClipFilterConfig, ClipModelSpec, ClipThreshold
from vtcurate.models.clip import ClipLoadError, load_clip, save_checkpoint, weights_info
from vtcurate.stages.base import top_fraction_cutoff
from vtcurate.stages.clip_filter import ClipFilterStage

# ---------------------------------------------------------------------------------------------
# top_fraction_cutoff


def test_top_fraction_cutoff():
    scores = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0]
    assert top_fraction_cutoff(scores, 0.3) == 0.7  # k = 3
    assert top_fraction_cutoff(scores, 0.25) == 0.7  # k = ceil(2.5) = 3
    assert top_fraction_cutoff(scores, 0.2) == 0.8
    assert top_fraction_cutoff(scores, 1.0) == 0.0  # everything
    assert top_fraction_cutoff(scores, 0.01) == 0.9  # at least one
    assert top_fraction_cutoff([0.4], 0.5) == 0.4
    assert top_fraction_cutoff([0.9, 0.5, 0.5, 0.5, 0.1], 0.4) == 0.5  # k = 2, a tie


def test_top_fraction_cutoff_exact_share():
    scores = [i / 100 for i in range(100)]  # 0.00 .. 0.99
    assert top_fraction_cutoff(scores, 0.07) == 0.93  # the 7th best, keeping exactly 7 of 100


# ---------------------------------------------------------------------------------------------
# plan() + apply_plan() on controlled scores


def _scored(rows: list[tuple]) -> pa.Table:
    """A scored partition from (clip_id, lang, clip_score[, drop_reason, drop_detail]) tuples."""
    rows = [r + (None, None) if len(r) == 3 else r for r in rows]
    return pa.table(
        {
            "clip_id": pa.array([r[0] for r in rows], pa.string()),
            "lang": pa.array([r[1] for r in rows], pa.string()),
            "clip_score": pa.array([r[2] for r in rows], pa.float64()),
            "clip_frame_scores": pa.array(
                [None if r[2] is None else [r[2]] * 3 for r in rows], pa.list_(pa.float32())
            ),
            "clip_model": pa.array(
                [None if r[2] is None else "vtc-tiny-vit:random" for r in rows], pa.string()
            ),
            "clip_pass": pa.array([None] * len(rows), pa.bool_()),
            "drop_reason": pa.array([r[3] for r in rows], pa.string()),
            "drop_detail": pa.array([r[4] for r in rows], pa.string()),
        }
    )


def _decide(stage: ClipFilterStage, parts: list[list[tuple]], tmp_path) -> tuple[dict, dict[str, dict]]:
    """Write each part as a parquet partition, plan over all of them, apply to each: rows by clip_id."""
    paths = []
    for i, rows in enumerate(parts):
        path = tmp_path / f"part-{i:05d}.parquet"
        pq.write_table(_scored(rows), path)
        paths.append(path)
    plan = stage.plan(paths)
    plan = json.loads(json.dumps(plan))  # the plan travels to workers as JSON
    out = {}
    for path in paths:
        decided = stage.apply_plan(pq.read_table(path), plan)
        assert decided.num_rows == pq.read_metadata(path).num_rows  # every row comes back
        out.update({r["clip_id"]: r for r in decided.to_pylist()})
    return plan, out


def _stage(thresholds: dict, enforce: bool = True, **kw) -> ClipFilterStage:
    return ClipFilterStage(
        ClipFilterConfig(
            thresholds={k: ClipThreshold(mode=m, value=v) for k, (m, v) in thresholds.items()},
            enforce_with_random_weights=enforce,
            **kw,
        )
    )


def _kept(rows: dict[str, dict]) -> set[str]:
    return {k for k, r in rows.items() if r["drop_reason"] is None}


ZH_SCORES = [0.31, 0.05, 0.22, 0.12, 0.27, 0.09, 0.18, 0.29, 0.02, 0.15]  # best: 0.31, 0.29, 0.27


def _zh(prefix="zh"):
    return [(f"{prefix}{i}", "zh", s) for i, s in enumerate(ZH_SCORES)]


def test_absolute_threshold_per_language(tmp_path):
    stage = _stage({"en": ("absolute", 0.25), "zh": ("absolute", 0.1)})
    plan, rows = _decide(
        stage,
        [
            [("en_hi", "en", 0.3), ("en_eq", "en", 0.25), ("zh_hi", "zh", 0.15)],
            [("en_lo", "en", 0.2), ("zh_lo", "zh", 0.05), ("zh_mid", "zh", 0.2)],
        ],
        tmp_path,
    )
    assert plan["thresholds"]["en"] == {
        "mode": "absolute", "value": 0.25, "cutoff": 0.25, "n": 3, "enforced": True,
    }  # fmt: skip
    assert plan["thresholds"]["zh"]["cutoff"] == 0.1
    # 0.2 passes zh's threshold but fails en's: each language has its own
    assert _kept(rows) == {"en_hi", "en_eq", "zh_hi", "zh_mid"}
    assert {k: r["clip_pass"] for k, r in rows.items()} == {
        "en_hi": True, "en_eq": True, "zh_hi": True, "en_lo": False, "zh_lo": False, "zh_mid": True,
    }  # fmt: skip
    assert rows["en_lo"]["drop_reason"] == "low_clip_score"
    assert "0.200 < 0.250" in rows["en_lo"]["drop_detail"] and "absolute" in rows["en_lo"]["drop_detail"]
    assert "0.050 < 0.100" in rows["zh_lo"]["drop_detail"]


def test_top_fraction_over_all_partitions(tmp_path):
    zh = _zh()
    stage = _stage({"zh": ("top_fraction", 0.3), "en": ("absolute", 0.0)})
    # the three best zh scores are split over the partitions; each partition alone would keep others
    plan, rows = _decide(stage, [zh[:4] + [("en0", "en", 0.01)], zh[4:]], tmp_path)
    t = plan["thresholds"]["zh"]
    assert (t["mode"], t["n"], t["cutoff"]) == ("top_fraction", 10, 0.27)
    assert _kept(rows) == {"zh0", "zh4", "zh7", "en0"}
    dropped = rows["zh2"]
    assert dropped["clip_pass"] is False and dropped["drop_reason"] == "low_clip_score"
    assert "0.220 < 0.270" in dropped["drop_detail"] and "top 30% of 10" in dropped["drop_detail"]


def test_top_fraction_keeps_ties_at_the_cutoff(tmp_path):
    scores = [0.9, 0.8, 0.8, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    rows_in = [(f"c{i}", "en", s) for i, s in enumerate(scores)]
    plan, rows = _decide(_stage({"*": ("top_fraction", 0.2)}), [rows_in[::2], rows_in[1::2]], tmp_path)
    assert plan["thresholds"]["en"]["cutoff"] == 0.8  # k = 2
    assert _kept(rows) == {"c0", "c1", "c2", "c3"}  # 4 > 2: the tied ones stay


def test_star_is_the_fallback(tmp_path):
    stage = _stage({"en": ("absolute", 0.5), "*": ("top_fraction", 0.5)})
    plan, rows = _decide(
        stage,
        [
            [("en_a", "en", 0.6), ("fr_a", "fr", 0.1), ("fr_b", "fr", 0.3)],
            [("en_b", "en", 0.4), ("fr_c", "fr", 0.2), ("fr_d", "fr", 0.4), ("de_a", "de", 0.05)],
        ],
        tmp_path,
    )
    assert plan["thresholds"]["en"]["mode"] == "absolute"
    assert plan["thresholds"]["fr"] == {
        "mode": "top_fraction", "value": 0.5, "cutoff": 0.3, "n": 4, "enforced": True,
    }  # fmt: skip
    assert plan["thresholds"]["de"]["n"] == 1  # its own distribution, not pooled with fr
    assert _kept(rows) == {"en_a", "fr_b", "fr_d", "de_a"}


def test_language_without_threshold_and_no_star_is_undecided(tmp_path):
    plan, rows = _decide(
        _stage({"en": ("absolute", 0.5)}), [[("en_a", "en", 0.1)], [("ja_a", "ja", 0.0)]], tmp_path
    )
    assert plan["thresholds"]["ja"] is None
    assert rows["ja_a"]["clip_pass"] is None and rows["ja_a"]["drop_reason"] is None
    assert rows["en_a"]["drop_reason"] == "low_clip_score"


def test_rows_dropped_while_scoring_keep_their_reason_and_are_not_counted(tmp_path):
    earlier = [
        ("gone_hi1", "zh", 0.99, "duplicate_caption", "same caption"),
        ("gone_hi2", "zh", 0.98, "duplicate_caption", "same caption"),
        ("gone_lo", "zh", 0.0, "nsfw", "earlier detail"),
        ("no_frames", "zh", None, "missing_frames", "no key-frames to score"),
    ]
    zh = _zh()
    stage = _stage({"zh": ("top_fraction", 0.3)})
    plan, rows = _decide(stage, [zh[:5] + earlier[:2], zh[5:] + earlier[2:]], tmp_path)
    # with the two 0.98+ scores counted, the cut-off would be 0.31 and n 12
    assert plan["thresholds"]["zh"]["n"] == 10 and plan["thresholds"]["zh"]["cutoff"] == 0.27
    assert _kept(rows) == {"zh0", "zh4", "zh7"}
    for cid, _, _, reason, detail in earlier:
        assert (rows[cid]["drop_reason"], rows[cid]["drop_detail"]) == (reason, detail)
    assert rows["no_frames"]["clip_pass"] is None


def test_random_weights_record_but_do_not_drop(tmp_path):
    stage = _stage({"zh": ("top_fraction", 0.3)}, enforce=False)  # default model: tiny, random init
    assert stage.summary() == {"random_weights": True, "decisions_enforced": False}
    plan, rows = _decide(stage, [_zh()[:5], _zh()[5:] + [("x", "zh", None, "missing_frames", "d")]], tmp_path)
    assert plan["decisions_enforced"] is False and plan["random_weights"] is True
    assert _kept(rows) == {f"zh{i}" for i in range(10)}  # nothing dropped by the threshold
    would_pass = {k for k, r in rows.items() if r["clip_pass"]}
    assert would_pass == {"zh0", "zh4", "zh7"}
    assert sum(r["clip_pass"] is False for r in rows.values()) == 7
    assert rows["x"]["drop_reason"] == "missing_frames"


def test_enforce_with_random_weights_drops(tmp_path):
    stage = _stage({"zh": ("top_fraction", 0.3)}, enforce=True)
    assert stage.summary() == {"random_weights": True, "decisions_enforced": True}
    plan, rows = _decide(stage, [_zh()[:5], _zh()[5:]], tmp_path)
    assert plan["decisions_enforced"] is True
    assert _kept(rows) == {"zh0", "zh4", "zh7"}
    dropped = [r for r in rows.values() if r["drop_reason"]]
    assert len(dropped) == 7 and {r["drop_reason"] for r in dropped} == {"low_clip_score"}
    assert all("< 0.270" in r["drop_detail"] for r in dropped)


# ---------------------------------------------------------------------------------------------
# the real model path: tiny open_clip model, saved and loaded as checkpoints


def _jpeg(seed: int, size=(96, 128)) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.full((*size, 3), rng.integers(0, 256, 3), np.uint8)
    centre = (int(rng.integers(20, size[1] - 20)), int(rng.integers(20, size[0] - 20)))
    cv2.circle(img, centre, int(rng.integers(8, 30)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A tiny model with weights other than the default seed's, saved as untrained and trained."""
    base = load_clip(ClipModelSpec(name="vtc-tiny-vit", seed=7))
    root = tmp_path_factory.mktemp("clip")
    random_ck = save_checkpoint(base.model, root / "random.pt", trained=False)
    trained_ck = save_checkpoint(base.model, root / "trained.pt", trained=True, note="test weights")
    return {
        "base": base,
        "random": ClipModelSpec(name="vtc-tiny-vit", pretrained=str(random_ck)),
        "trained": ClipModelSpec(name="vtc-tiny-vit", pretrained=str(trained_ck)),
    }


def test_weights_info_reads_the_checkpoint_note(ckpts):
    for kind, random in (("random", True), ("trained", False)):
        spec = ckpts[kind]
        info = weights_info(spec)
        assert info["random_weights"] is random
        with open(spec.pretrained, "rb") as fh:
            assert info["sha256"] == hashlib.sha256(fh.read()).hexdigest()
        model = load_clip(spec)
        assert model.random_weights is random
        assert model.model_id == f"vtc-tiny-vit:{info['sha256'][:12]}"
    assert weights_info(ckpts["trained"])["note"] == "test weights"
    default = weights_info(ClipModelSpec(name="vtc-tiny-vit"))
    assert default["random_weights"] is True and default["sha256"] is None


def test_checkpoint_weights_are_really_loaded(ckpts):
    images, texts = [_jpeg(1), _jpeg(2)], ["a red circle", "一只狗在草地上跑"]
    want_i, want_t = ckpts["base"].embed_images(images), ckpts["base"].embed_texts(texts)
    for kind in ("random", "trained"):
        model = load_clip(ckpts[kind])
        assert model is not ckpts["base"]
        np.testing.assert_allclose(model.embed_images(images), want_i, atol=1e-6)
        np.testing.assert_allclose(model.embed_texts(texts), want_t, atol=1e-6)
    # the default seed's random init differs, so equality above is not an accident of seeding
    other = load_clip(ClipModelSpec(name="vtc-tiny-vit"))
    assert np.abs(other.embed_images(images) - want_i).max() > 1e-3


def test_missing_checkpoint_raises_with_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "clip.pt"
    with pytest.raises(ClipLoadError, match="nowhere/clip.pt"):
        load_clip(ClipModelSpec(name="vtc-tiny-vit", pretrained=str(missing)))
    stage = ClipFilterStage(
        ClipFilterConfig(models={"*": ClipModelSpec(name="vtc-tiny-vit", pretrained=str(missing))})
    )
    with pytest.raises(ClipLoadError, match=re.escape(str(missing))):
        stage.setup()


def _batch() -> pa.Table:
    return pa.table(
        {
            "clip_id": ["en3", "zh2", "en0", "fr1", "enN", "en1"],
            "lang": ["en", "zh", "en", "fr", "en", "en"],
            "caption": ["a red circle", "一个绿色的方块", "a dog", "un chien", "a cat", "a blue sky"],
            "frames": pa.array(
                [
                    [_jpeg(10), _jpeg(11), _jpeg(12)],
                    [_jpeg(20), _jpeg(21)],
                    [],
                    [_jpeg(30)],
                    None,
                    [_jpeg(40)],
                ],
                pa.list_(pa.binary()),
            ),
        }
    )


def test_call_scores_each_frame(ckpts):
    stage = ClipFilterStage(ClipFilterConfig(models={"en": ckpts["trained"], "zh": ckpts["random"]}))
    stage.setup()
    batch = _batch()
    out = stage(batch)
    assert out.num_rows == batch.num_rows
    assert out.column("clip_id").to_pylist() == batch.column("clip_id").to_pylist()
    assert set(stage.output_columns) <= set(out.column_names)
    rows = out.to_pylist()
    base = ckpts["base"]
    for row in rows:
        frames = row["frames"]
        if row["clip_id"] in ("en0", "enN"):
            assert row["drop_reason"] == "missing_frames"
            assert row["clip_score"] is None and row["clip_frame_scores"] is None
            continue
        if row["lang"] == "fr":
            assert row["drop_reason"] == "no_clip_model" and "'fr'" in row["drop_detail"]
            assert row["clip_score"] is None and row["clip_model"] is None
            continue
        assert row["drop_reason"] is None and row["drop_detail"] is None
        scores = row["clip_frame_scores"]
        assert len(scores) == len(frames)
        want = base.embed_images(frames) @ base.embed_texts([row["caption"]])[0]
        np.testing.assert_allclose(scores, want, atol=1e-5)
        assert all(-1.0 <= s <= 1.0 for s in scores)
        assert row["clip_score"] == pytest.approx(float(np.mean(scores)), abs=1e-6)
        assert row["clip_pass"] is None  # decided by apply_plan, not while scoring
        kind = "trained" if row["lang"] == "en" else "random"
        assert row["clip_model"] == load_clip(ckpts[kind]).model_id
    # different frames give different scores (the model really looked at them)
    three = rows[0]["clip_frame_scores"]
    assert len(set(np.round(three, 6))) == 3
    assert stage.summary() == {"random_weights": True, "decisions_enforced": False}  # zh is random


def test_trained_weights_enforce_the_plan(ckpts, tmp_path):
    stage = ClipFilterStage(
        ClipFilterConfig(
            models={"*": ckpts["trained"]}, thresholds={"*": ClipThreshold(mode="top_fraction", value=0.5)}
        )
    )
    stage.setup()
    assert stage.summary() == {"random_weights": False, "decisions_enforced": True}
    assert stage.provenance()["models"]["*"]["sha256"] == weights_info(ckpts["trained"])["sha256"]
    batch = _batch()
    paths = []
    for i, part in enumerate((batch.slice(0, 3), batch.slice(3))):
        paths.append(tmp_path / f"p{i}.parquet")
        pq.write_table(stage(part), paths[-1])
    plan = stage.plan(paths)
    decided = pa.concat_tables([stage.apply_plan(pq.read_table(p), plan) for p in paths]).to_pylist()
    scored = [r for r in decided if r["clip_score"] is not None]
    assert len(scored) == 4  # en3, zh2, fr1, en1 (fr falls back to '*' here); en0, enN have no frames
    by_lang = {lang: sum(r["lang"] == lang for r in scored) for lang in ("en", "zh", "fr")}
    for lang, n in by_lang.items():
        assert plan["thresholds"][lang]["n"] == n
        kept = [r for r in scored if r["lang"] == lang and r["drop_reason"] is None]
        assert len(kept) >= math.ceil(0.5 * n)
        for r in scored:
            if r["lang"] == lang:
                assert (r["drop_reason"] == "low_clip_score") == (
                    r["clip_score"] < plan["thresholds"][lang]["cutoff"]
                )
    assert sum(r["drop_reason"] == "low_clip_score" for r in decided) == 1  # en: 2 rows, top 50% -> 1 kept
    assert {r["clip_id"] for r in decided if r["drop_reason"] == "missing_frames"} == {"en0", "enN"}


@pytest.mark.parametrize("aggregate", ["max", "min"])
def test_aggregate(ckpts, aggregate):
    stage = ClipFilterStage(ClipFilterConfig(models={"*": ckpts["trained"]}, aggregate=aggregate))
    row = stage(_batch().slice(0, 1)).to_pylist()[0]
    scores = row["clip_frame_scores"]
    assert len(scores) == 3
    want = max(scores) if aggregate == "max" else min(scores)
    assert row["clip_score"] == pytest.approx(want, abs=1e-6)
    assert row["clip_score"] != pytest.approx(float(np.mean(scores)), abs=1e-6)


def test_enforcement_is_per_language(ckpts, tmp_path):
    """A trained English model drops on its scores even though the Chinese model is random."""
    stage = ClipFilterStage(
        ClipFilterConfig(
            models={"en": ckpts["trained"], "zh": ckpts["random"]},
            thresholds={"*": ClipThreshold(mode="absolute", value=0.2)},
        )
    )
    plan, rows = _decide(stage, [[("en-low", "en", 0.1), ("en-high", "en", 0.3)], _zh()], tmp_path)
    assert plan["thresholds"]["en"]["enforced"] is True and plan["thresholds"]["zh"]["enforced"] is False
    assert rows["en-low"]["drop_reason"] == "low_clip_score" and rows["en-high"]["drop_reason"] is None
    assert all(rows[f"zh{i}"]["drop_reason"] is None for i in range(len(ZH_SCORES)))
    assert rows["zh1"]["clip_pass"] is False  # recorded, not enforced
    assert stage.summary()["decisions_enforced"] is False


def test_hub_models_carry_their_own_weights():
    assert weights_info(ClipModelSpec(name="hf-hub:org/model"))["random_weights"] is False
    assert weights_info(ClipModelSpec(name="vtc-tiny-vit"))["random_weights"] is True


def test_rows_without_a_language_use_the_fallback(tmp_path):
    stage = _stage({"*": ("absolute", 0.2)})
    plan, rows = _decide(stage, [[("a", None, 0.1), ("b", None, 0.3)]], tmp_path)
    assert rows["a"]["drop_reason"] == "low_clip_score" and rows["b"]["drop_reason"] is None
