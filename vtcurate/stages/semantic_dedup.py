"""semantic_dedup: keep one clip per group of clips that show the same thing, by their CLIP embeddings.

The embeddings are clip_filter's (`clip_embedding`: a clip's mean key-frame embedding, L2-normalised),
so this stage loads no model, and the flow must run clip_filter before it (checked when the config
loads).  Its score step only checks that each row has an embedding.  The run-wide plan (see
stages/base.py) reads them from the scored partitions in bounded memory: it holds a similarity per
row and a keeper per duplicate, never all the embeddings.
1. Per embedding model (`clip_model`: two models embed in two spaces, so their clips are never
   compared), k-means (faiss, spherical) is trained on a seeded sample of `sample_size` embeddings.
2. Each row goes to its nearest centroid, and is spilled to a temporary file by its group: model,
   language (unless `cross_language`) and cluster.  A file holds whole groups, about BUCKET_BYTES
   of embeddings, and is read whole.
3. In each group, in the order of `prefer` (stages.base.prefer_key: best first), a clip is kept
   unless its cosine similarity to a clip kept before it is at least `threshold`; then it is
   rejected as `semantic_duplicate`, `duplicate_of` naming the most similar kept clip.  So no two
   kept clips of a group are that similar, and each rejected one is, to its own keeper (no chains).
`semantic_similarity` is a clip's best match in its group (null: alone in it): rejected clips are at
or above the threshold, kept ones below it unless they kept a duplicate out.  Clips of different
clusters are never compared: a near pair split by a cluster boundary is missed, the price of not
comparing all pairs.

With random CLIP weights the embeddings are noise: unless `enforce_with_random_weights`, the rows of
a language whose clip_filter model is random are not dropped (clip_filter's rule), the plan counts
what would have been (`would_reject`), and stats.json says `decisions_enforced: false`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vtcurate.config import SemanticDedupConfig
from vtcurate.stages.base import (
    DROP_REASON,
    PREFER_COLUMNS,
    Resources,
    Stage,
    column,
    keep_earlier_drops,
    prefer_key,
    set_column,
    with_decisions,
)

EMBEDDING = "clip_embedding"
BUCKET_BYTES = 256 << 20  # float16 embeddings per spill file: what the plan holds at once (a larger
# cluster is held whole)
_BLOCK_CELLS = 1 << 24  # similarities computed at once in a group (64 MB of float32)
_KMEANS_ITERATIONS = 20
_SPILL = pa.schema([
    ("part", pa.int32()), ("row", pa.int32()), ("group", pa.int32()), ("lang", pa.string()),
    ("clip_id", pa.string()), ("clip_score", pa.float64()), ("span_start", pa.float64()),
    ("span_end", pa.float64()), ("width", pa.int64()), ("height", pa.int64()),
    (EMBEDDING, pa.list_(pa.float16())),
])  # fmt: skip


def partition_key(clip_ids: list[str]) -> str:
    """How the plan names a partition: apply_plan is handed its rows, not its name."""
    return hashlib.sha256(json.dumps(clip_ids).encode()).hexdigest()[:20]


def _matrix(embeddings: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Equal-length list<float16> rows as a float32 matrix."""
    if isinstance(embeddings, pa.ChunkedArray):
        embeddings = embeddings.combine_chunks()
    flat = embeddings.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(len(embeddings), -1), dtype=np.float32)


def _live(path: Path, columns: list[str]) -> tuple[np.ndarray, pa.Table]:
    """The rows of a scored partition still to decide (those with an embedding: the others were
    rejected while scoring): their indices, and their `columns` (one the partition lacks: nulls)."""
    names = set(pq.read_schema(path).names)
    if EMBEDDING not in names:  # no row of it was embedded
        return np.zeros(0, np.int64), pa.table({c: pa.nulls(0) for c in columns})
    t = pq.read_table(path, columns=[DROP_REASON, *(c for c in columns if c in names)])
    live = np.flatnonzero(pc.is_null(t.column(DROP_REASON)).to_numpy(zero_copy_only=False))
    t = t.take(live)
    return live, pa.table({c: t.column(c) if c in names else pa.nulls(len(live)) for c in columns})


def _models(t: pa.Table) -> np.ndarray:
    """Each row's embedding model, as an array to compare with one."""
    return np.array([m or "?" for m in t.column("clip_model").to_pylist()], dtype=object)


def keep_greedy(emb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For unit vectors in keeping order (best first): each one's best similarity to another (-inf:
    none), the index of the kept one it duplicates (-1: kept) and their similarity.  Similarities
    are computed a block of rows at a time; a row is judged against the rows kept before it."""
    m = len(emb)
    t = np.float64(threshold)  # compared in float64, as the stored float32 scores are
    best = np.full(m, -np.inf, np.float32)
    keeper = np.full(m, -1, np.int64)
    keeper_sim = np.full(m, np.nan, np.float32)
    kept = np.zeros(m, bool)
    step = max(1, _BLOCK_CELLS // max(m, 1))
    for s in range(0, m, step):
        e = min(m, s + step)
        rows = np.arange(e - s)
        sims = emb[s:e] @ emb.T
        sims[rows, rows + s] = -np.inf  # not itself
        best[s:e] = sims.max(axis=1)
        before = np.flatnonzero(kept[:s])  # decided in earlier blocks
        cand = np.full(e - s, -1, np.int64)
        cand_sim = np.full(e - s, -np.inf, np.float32)
        if before.size:
            arg = sims[:, before].argmax(axis=1)
            cand, cand_sim = before[arg], sims[rows, before[arg]]
        inside = np.tril(sims[:, s:e] >= t, -1)  # (r, r') with r' < r in this block
        alone = ~inside.any(axis=1)  # judged by the earlier blocks' kept rows alone
        dup = alone & (cand_sim >= t)
        keeper[s:e][dup], keeper_sim[s:e][dup] = cand[dup], cand_sim[dup]
        kept[s:e][alone & ~dup] = True
        for r in np.flatnonzero(~alone):  # in order: each may duplicate one kept just before
            hits = np.flatnonzero(inside[r, :r] & kept[s : s + r])
            j, v = cand[r], cand_sim[r]
            if hits.size:
                h = hits[np.argmax(sims[r, s + hits])]
                if sims[r, s + h] > v:
                    j, v = s + h, sims[r, s + h]
            if v >= t:
                keeper[s + r], keeper_sim[s + r] = j, v
            else:
                kept[s + r] = True
    return best, keeper, keeper_sim


class SemanticDedupStage(Stage):
    name = "semantic_dedup"
    output_columns = ("semantic_similarity", "duplicate_of")
    score_columns = ("semantic_similarity",)
    global_plan = True
    decision_reasons = ("semantic_duplicate",)

    config: SemanticDedupConfig

    @property
    def resources(self) -> Resources:
        return Resources(num_cpus=0.5, batch_size=256)

    def provenance(self) -> dict:
        method = "clip_filter's mean frame embeddings; faiss spherical k-means; greedy keep-best per cluster"
        return {"method": method, **self.config.model_dump()}

    def _random_weights(self) -> dict[str, bool]:
        """Per language ('*' fallback), whether clip_filter's model has random weights: from the run's
        provenance, which the executor (and a re-decision, from run.json) gives every stage."""
        models = self.run_provenance.get("clip_filter", {}).get("models")
        if models is None:
            raise RuntimeError("semantic_dedup: clip_filter's models are not in run_provenance")
        return {lang: bool(info["random_weights"]) for lang, info in models.items()}

    def _enforced(self, lang: str | None, random: dict[str, bool]) -> bool:
        key = lang if lang in random else "*"
        return not random.get(key, False) or self.config.enforce_with_random_weights

    def summary(self) -> dict:
        random = self._random_weights()
        return {"random_weights": any(random.values()),
                "decisions_enforced": all(self._enforced(lang, random) for lang in random)}  # fmt: skip

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        has = EMBEDDING in batch.column_names
        missing = batch.column(EMBEDDING).is_null().to_pylist() if has else [True] * n
        reasons = ["missing_embedding" if m else None for m in missing]
        details = ["no clip_embedding (clip_filter did not embed it)" if m else None for m in missing]
        batch = set_column(batch, "semantic_similarity", [None] * n, pa.float64())
        batch = set_column(batch, "duplicate_of", [None] * n, pa.string())
        return with_decisions(batch, reasons, details)

    def _clusters(self, rows: int, sampled: int) -> int:
        k = self.config.clusters or max(1, min(round(math.sqrt(rows)), sampled // 40))
        return min(k, sampled)

    def plan(self, scored: list[Path]) -> dict:
        cfg = self.config
        random = self._random_weights()
        # pass 1: each partition's key and live rows per embedding model
        keys, counts = [], defaultdict(int)
        for path in scored:
            keys.append(partition_key(pq.read_table(path, columns=["clip_id"]).column("clip_id").to_pylist()))
            for model in _models(_live(path, ["clip_model"])[1]):
                counts[model] += 1
        # pass 2: a seeded sample per model (its rows in partition order), k-means on it
        rng = np.random.default_rng(cfg.seed)
        picks = {m: np.sort(rng.choice(n, min(n, cfg.sample_size), replace=False))
                 for m, n in sorted(counts.items())}  # fmt: skip
        samples = self._sample(scored, picks)
        centroids = {}
        models = {}
        for m, sample in samples.items():
            k = self._clusters(counts[m], len(sample))
            centroids[m] = _kmeans(sample, k, cfg.seed) if k > 1 else None
            models[m] = {"rows": counts[m], "clusters": k, "dim": sample.shape[1], "sampled": len(sample)}
        # pass 3: every row to its cluster's group, spilled by group; pass 4: each group decided
        size = sum(counts[m] * models[m]["dim"] * 2 for m in models)
        with tempfile.TemporaryDirectory(prefix="vtcurate-semdedup-") as tmp:
            buckets = self._spill(scored, centroids, Path(tmp), max(1, math.ceil(size / BUCKET_BYTES)))
            sims = [np.full(pq.read_metadata(p).num_rows, np.nan, np.float32) for p in scored]
            dups: list[dict[str, list]] = [{} for _ in scored]
            groups = 0
            for bucket in buckets:
                groups += self._decide_bucket(pa.ipc.open_file(bucket).read_all(), sims, dups, random)
        found = sum(len(d) for d in dups)
        enforced = sum(e for d in dups for _, _, e in d.values())
        return {
            "threshold": cfg.threshold, "cross_language": cfg.cross_language, "models": models,
            "groups_with_duplicates": groups, "would_reject": found, "rejected": enforced,
            "random_weights": any(random.values()),
            "decisions_enforced": all(self._enforced(lang, random) for lang in random),
            "parts": {key: {"similarity": base64.b64encode(s.tobytes()).decode("ascii"), "duplicates": d}
                      for key, s, d in zip(keys, sims, dups)},
        }  # fmt: skip

    def _sample(self, scored: list[Path], picks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The picked rows' embeddings per model; picks index each model's live rows in partition order."""
        seen = defaultdict(int)
        out: dict[str, list[np.ndarray]] = defaultdict(list)
        for path in scored:
            t = _live(path, ["clip_model", EMBEDDING])[1]
            model_col = _models(t)
            for m in sorted(set(model_col)):
                rows = np.flatnonzero(model_col == m)
                lo = np.searchsorted(picks[m], seen[m])
                hi = np.searchsorted(picks[m], seen[m] + len(rows))
                if hi > lo:
                    out[m].append(_matrix(t.column(EMBEDDING).take(rows[picks[m][lo:hi] - seen[m]])))
                seen[m] += len(rows)
        return {m: np.concatenate(chunks) for m, chunks in sorted(out.items())}

    def _spill(self, scored: list[Path], centroids: dict, tmp: Path, n_buckets: int) -> list[Path]:
        """Write every live row (its group, keeping-order columns and embedding) to bucket files, a
        group always to the same one."""
        group_ids: dict[tuple, int] = {}
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        for p, path in enumerate(scored):
            live, t = _live(path, ["clip_model", "lang", EMBEDDING, *PREFER_COLUMNS])
            if not live.size:
                continue
            model_col = _models(t)
            langs = [lang or "und" for lang in t.column("lang").to_pylist()]
            cluster = np.zeros(len(live), np.int64)
            for m in set(model_col):
                if centroids[m] is not None:
                    rows = np.flatnonzero(model_col == m)
                    cluster[rows] = _assign(centroids[m], _matrix(t.column(EMBEDDING).take(rows)))
            scope = ["*"] * len(langs) if self.config.cross_language else langs
            gid = [group_ids.setdefault((m, lang, int(c)), len(group_ids))
                   for m, lang, c in zip(model_col, scope, cluster)]  # fmt: skip
            cols = {
                "part": pa.array([p] * len(live), pa.int32()), "row": pa.array(live, pa.int32()),
                "group": pa.array(gid, pa.int32()), "lang": pa.array(langs, pa.string()),
                **{c: t.column(c) for c in (*PREFER_COLUMNS, EMBEDDING)},
            }  # fmt: skip
            batch = pa.table(cols).cast(_SPILL)
            bucket = np.array(gid) % n_buckets
            for b in np.unique(bucket):
                if b not in writers:
                    writers[b] = pa.ipc.new_file(tmp / f"bucket-{b:05d}.arrow", _SPILL)
                writers[b].write_table(batch.filter(pa.array(bucket == b)))
        for writer in writers.values():
            writer.close()
        return [tmp / f"bucket-{b:05d}.arrow" for b in sorted(writers)]

    def _decide_bucket(self, table: pa.Table, sims: list, dups: list, random: dict[str, bool]) -> int:
        """Keep-best within each group of a bucket; record similarities and duplicates by
        (partition, row).  The number of groups with a duplicate."""
        cols = {c: table.column(c).to_pylist() for c in PREFER_COLUMNS}
        part, row = table.column("part").to_numpy(), table.column("row").to_numpy()
        langs = table.column("lang").to_pylist()
        order = np.argsort(table.column("group").to_numpy(), kind="stable")
        ends = np.flatnonzero(np.diff(table.column("group").to_numpy()[order])) + 1
        embeddings = table.column(EMBEDDING).combine_chunks()
        offsets, values = embeddings.offsets.to_numpy(), embeddings.values.to_numpy(zero_copy_only=False)
        with_dups = 0
        for members in np.split(order, ends):
            members = np.array(sorted(members, key=lambda i: prefer_key(self.config.prefer, cols, i)))
            dim = offsets[members[0] + 1] - offsets[members[0]]  # one model: one width
            emb = values[offsets[members][:, None] + np.arange(dim)].astype(np.float32)
            best, keeper, keeper_sim = keep_greedy(emb, self.config.threshold)
            best[~np.isfinite(best)] = np.nan  # alone in its group
            for i, b in zip(members, best):
                sims[part[i]][row[i]] = b
            with_dups += bool((keeper >= 0).any())
            for i, k, v in zip(members, keeper, keeper_sim):
                if k >= 0:
                    dups[part[i]][str(row[i])] = [cols["clip_id"][members[k]], float(v),
                                                  self._enforced(langs[i], random)]  # fmt: skip
        return with_dups

    def apply_plan(self, table: pa.Table, plan: dict) -> pa.Table:
        entry = plan["parts"][partition_key(table.column("clip_id").to_pylist())]
        sims = np.frombuffer(base64.b64decode(entry["similarity"]), np.float32)
        of, reasons, details = [], [], []
        for i, lang in enumerate(column(table, "lang")):
            keeper, sim, enforced = entry["duplicates"].get(str(i), (None, None, False))
            if enforced:
                where = "" if plan["cross_language"] else f", {lang or 'und'}"
                of.append(keeper)
                reasons.append("semantic_duplicate")
                details.append(f"cosine {sim:.4f} >= {plan['threshold']} to kept {keeper}{where}")
            else:
                of.append(None)
                reasons.append(None)
                details.append(None)
        similarity = [None if math.isnan(s) else float(s) for s in sims]
        table = set_column(table, "semantic_similarity", similarity, pa.float64())
        table = set_column(table, "duplicate_of", of, pa.string())
        return keep_earlier_drops(table, reasons, details)


def _kmeans(sample: np.ndarray, k: int, seed: int) -> np.ndarray:
    import faiss  # only where a plan clusters

    km = faiss.Kmeans(sample.shape[1], k, niter=_KMEANS_ITERATIONS, seed=seed, spherical=True, verbose=False)
    km.train(sample)
    return km.centroids


def _assign(centroids: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """Each row's nearest centroid (by inner product: rows and centroids are unit vectors)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    return index.search(emb, 1)[1][:, 0]
