"""semantic_dedup: hand-built embeddings with known near-duplicates, through the real score / plan /
apply code, across partitions and languages; the random-weights rule; re-deciding a threshold."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vtcurate.stages.semantic_dedup as sd
from vtcurate.config import ConfigError, SemanticDedupConfig, load_config
from vtcurate.pipeline.decisions import redecide
from vtcurate.stages.semantic_dedup import SemanticDedupStage, keep_greedy

DIM = 16
SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("lang", pa.string()), ("clip_model", pa.string()),
    ("clip_embedding", pa.list_(pa.float16())), ("clip_score", pa.float64()), ("span_start", pa.float64()),
    ("span_end", pa.float64()), ("width", pa.int64()), ("height", pa.int64()),
    ("drop_reason", pa.string()), ("drop_detail", pa.string()),
])  # fmt: skip
REAL = {"clip_filter": {"models": {"*": {"random_weights": False}}}}
RANDOM = {"clip_filter": {"models": {"*": {"random_weights": True}}}}


def _scenes(n: int, seed: int = 0) -> np.ndarray:
    """n orthonormal directions: unrelated footage."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, DIM)))
    return q.T[:n]


def _near(v: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector at exactly cosine `cos` from unit vector v."""
    w = np.random.default_rng(seed).standard_normal(DIM)
    w -= (w @ v) * v
    return cos * v + np.sqrt(1 - cos**2) * w / np.linalg.norm(w)


def _row(clip_id, emb, lang="en", score=0.3, duration=5.0, model="m:1") -> dict:
    return {"clip_id": clip_id, "lang": lang, "clip_model": model,
            "clip_embedding": None if emb is None else np.asarray(emb, np.float16).tolist(),
            "clip_score": score, "span_start": 0.0, "span_end": duration, "width": 320, "height": 240,
            "drop_reason": None, "drop_detail": None}  # fmt: skip


def _decide(stage, parts, tmp_path) -> tuple[dict, dict[str, dict], dict[str, pa.Table]]:
    """Score each part, write it as a partition, plan over all, apply to each."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(parts):
        scored = stage(pa.Table.from_pylist(rows, schema=SCHEMA))
        paths.append(tmp_path / f"part-{i:05d}.parquet")
        pq.write_table(scored, paths[-1])
    plan = json.loads(json.dumps(stage.plan(paths)))  # the plan travels to workers as JSON
    tables = {p.stem: stage.apply_plan(pq.read_table(p), plan) for p in paths}
    for p, t in zip(paths, tables.values()):
        assert t.num_rows == pq.read_metadata(p).num_rows  # every row comes back
    return plan, {r["clip_id"]: r for t in tables.values() for r in t.to_pylist()}, tables


def _stage(provenance=REAL, **config) -> SemanticDedupStage:
    stage = SemanticDedupStage(SemanticDedupConfig(**config))
    stage.run_provenance = provenance
    return stage


def _corpus() -> list[list[dict]]:
    """Three partitions: footage A in en (twice) and zh, B twice but only alike (0.9), C three times
    (one without an embedding), and unrelated clips."""
    s = _scenes(12)
    c2 = _near(s[2], 0.97, 4)
    return [
        [_row("a1", s[0], score=0.3), _row("b1", s[1]), _row("c1", s[2], duration=4.0),
         *[_row(f"u{i}", s[3 + i]) for i in range(4)]],
        [_row("a2", _near(s[0], 0.99, 1), score=0.5), _row("a-zh", _near(s[0], 0.98, 2), lang="zh"),
         _row("b2", _near(s[1], 0.9, 3)), _row("c2", c2, duration=6.0),
         *[_row(f"u{i}", s[3 + i], lang="zh") for i in range(4, 7)]],
        [_row("c3", None), _row("c4", _near(c2, 0.99, 5), duration=5.0), _row("u7", s[10])],
    ]  # fmt: skip


@pytest.mark.parametrize("clusters", [1, 3])
def test_near_duplicates_across_partitions_per_language(tmp_path, clusters):
    plan, rows, _ = _decide(_stage(clusters=clusters), _corpus(), tmp_path)
    dropped = {c: (r["drop_reason"], r["duplicate_of"]) for c, r in rows.items() if r["drop_reason"]}
    assert dropped == {
        "a1": ("semantic_duplicate", "a2"),  # a2 has the higher clip_score
        "c1": ("semantic_duplicate", "c2"), "c4": ("semantic_duplicate", "c2"),  # c2 is the longest
        "c3": ("missing_embedding", None),
    }  # fmt: skip
    assert "to kept a2, en" in rows["a1"]["drop_detail"]
    assert rows["a-zh"]["drop_reason"] is None  # the same footage in the other language: kept
    assert rows["b2"]["semantic_similarity"] == pytest.approx(0.9, abs=2e-3)  # alike, under 0.95
    assert rows["a1"]["semantic_similarity"] == pytest.approx(0.99, abs=2e-3)
    assert rows["c3"]["semantic_similarity"] is None and rows["u7"]["semantic_similarity"] < 0.5
    for r in rows.values():  # kept rows name no keeper; every rejected duplicate is above the threshold
        assert (r["duplicate_of"] is None) == (r["drop_reason"] != "semantic_duplicate")
        if r["duplicate_of"]:
            assert r["semantic_similarity"] >= 0.95 and rows[r["duplicate_of"]]["drop_reason"] is None
    assert plan["models"]["m:1"]["clusters"] == clusters and plan["rejected"] == 3


def test_cross_language_and_bucket_spill(tmp_path, monkeypatch):
    _, per_lang, _ = _decide(_stage(clusters=3), _corpus(), tmp_path / "a")
    _, cross, _ = _decide(_stage(clusters=3, cross_language=True), _corpus(), tmp_path / "b")
    assert cross["a-zh"]["duplicate_of"] == "a2" and per_lang["a-zh"]["duplicate_of"] is None
    assert cross["a-zh"]["drop_detail"].endswith("to kept a2")  # no language: compared across them
    monkeypatch.setattr(sd, "BUCKET_BYTES", 64)  # a spill file per group or so: the same decisions
    _, spilled, _ = _decide(_stage(clusters=3, cross_language=True), _corpus(), tmp_path / "c")
    assert spilled == cross


def test_random_weights_record_without_dropping(tmp_path):
    stage = _stage(RANDOM)
    plan, rows, _ = _decide(stage, _corpus(), tmp_path / "a")
    assert {r["drop_reason"] for r in rows.values()} == {None, "missing_embedding"}
    assert plan["would_reject"] == 3 and plan["rejected"] == 0 and not plan["decisions_enforced"]
    assert stage.summary() == {"random_weights": True, "decisions_enforced": False}
    assert rows["a1"]["semantic_similarity"] == pytest.approx(0.99, abs=2e-3)  # scores recorded
    # one language's model random: only the other language's duplicates are dropped
    mixed = {"clip_filter": {"models": {"en": {"random_weights": True}, "*": {"random_weights": False}}}}
    corpus = _corpus()
    corpus[1].append(_row("zh-copy", corpus[1][1]["clip_embedding"], lang="zh", score=0.1))
    _, rows, _ = _decide(_stage(mixed), corpus, tmp_path / "b")
    assert [c for c, r in rows.items() if r["drop_reason"] == "semantic_duplicate"] == ["zh-copy"]
    _, rows, _ = _decide(_stage(RANDOM, enforce_with_random_weights=True), _corpus(), tmp_path / "c")
    assert sum(r["drop_reason"] == "semantic_duplicate" for r in rows.values()) == 3


def test_redecided_threshold_equals_a_fresh_decision(tmp_path):
    _, _, tables = _decide(_stage(clusters=3), _corpus(), tmp_path / "a")
    again, _ = redecide(_stage(clusters=3, threshold=0.85), tables)
    _, fresh, _ = _decide(_stage(clusters=3, threshold=0.85), _corpus(), tmp_path / "b")
    redecided = {r["clip_id"]: r for t in again.values() for r in t.to_pylist()}
    assert redecided == fresh
    assert fresh["b1"]["duplicate_of"] == "b2" or fresh["b2"]["duplicate_of"] == "b1"  # 0.9 >= 0.85
    assert sum(t.num_rows for t in again.values()) == sum(len(p) for p in _corpus())


def _reference(emb: np.ndarray, t: float) -> list[int]:
    """Keep-best, one row at a time against every kept row: what keep_greedy computes by blocks."""
    kept, keeper = [], []
    for i, v in enumerate(emb):
        sims = [float(np.float32(v @ emb[j])) for j in kept]
        best = int(np.argmax(sims)) if sims else -1
        if sims and sims[best] >= t:
            keeper.append(kept[best])
        else:
            keeper.append(-1)
            kept.append(i)
    return keeper


def test_keep_greedy_has_no_chains_and_blocks_agree(monkeypatch):
    angle = np.arccos(0.96)  # x1 is 0.96 from x0 and from x2, x2 only 0.84 from x0
    chain = np.array([[np.cos(a), np.sin(a)] for a in (0.0, angle, 2 * angle)], np.float32)
    best, keeper, sim = keep_greedy(chain, 0.95)
    assert keeper.tolist() == [-1, 0, -1]  # x2 is kept: its only near clip was dropped
    assert sim[1] == pytest.approx(0.96, abs=1e-5) and best[2] == pytest.approx(0.96, abs=1e-5)
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, DIM))
    emb = np.repeat(base, 5, axis=0) + 0.15 * rng.standard_normal((200, DIM))  # groups of ~5 alike
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)[rng.permutation(200)]
    want = _reference(emb, 0.95)
    assert 20 < sum(k >= 0 for k in want) < 180  # the case has duplicates and clips kept
    whole = keep_greedy(emb, 0.95)
    monkeypatch.setattr(sd, "_BLOCK_CELLS", 200 * 7)  # blocks of 7 rows
    blocks = keep_greedy(emb, 0.95)
    assert whole[1].tolist() == blocks[1].tolist() == want
    assert np.array_equal(whole[0], blocks[0])


def test_config_needs_clip_filter_before_it(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stages: [ingest, keyframes, semantic_dedup]\n")
    with pytest.raises(ConfigError, match=r"semantic_dedup needs \['clip_filter'\]"):
        load_config(cfg)


def test_demo_run_records_without_enforcing(local_run):
    """The demo's CLIP has random weights: scores recorded, nothing dropped, and no embedding in the
    shards' .json."""
    import tarfile

    from vtcurate.pipeline.rundir import RunDir

    rd = RunDir(local_run)
    stats = json.loads(rd.stage("semantic_dedup").stats.read_text())
    assert stats["kept"] + stats["rejected"] == stats["rows_in"] > 0
    assert stats["decisions_enforced"] is False and "semantic_duplicate" not in stats["rejected_by_reason"]
    kept = pq.read_table(rd.stage("semantic_dedup").kept_parts()[0])
    assert kept.column("semantic_similarity").null_count < kept.num_rows
    assert len(kept.column("clip_embedding")[0]) > 0
    tar = next((local_run / "shards").rglob("*.tar"))
    with tarfile.open(tar) as tf:
        meta = json.loads(tf.extractfile(next(m for m in tf if m.name.endswith(".json"))).read())
    assert "clip_embedding" not in meta and "semantic_similarity" in meta
    report = json.loads((local_run / "report" / "report.json").read_text())
    dist = report["distributions"]["semantic_similarity"]
    assert "not enforced" in dist["title"] and dist["thresholds"] == {"threshold": 0.95}
    assert sum(sum(series["counts"]) for series in dist["series"].values()) > 0
    table = next(t for t in report["whatif"] if t["key"] == "semantic_dedup.threshold")
    assert {r["kept"] for r in table["rows"]} == {report["funnel"][-1]["kept"]}  # nothing enforced
