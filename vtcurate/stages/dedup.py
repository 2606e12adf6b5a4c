"""dedup: keep one clip per group of near-duplicate videos or identical captions.

Scoring fingerprints each clip: its key-frames' perceptual hashes (one per centre crop) and
normalised colour thumbnails (vtcurate.video.fingerprint) and a caption key (language + caption
casefolded without punctuation or spaces).  The run-wide plan then finds groups across all
partitions without comparing all pairs:
- videos: every frame hash is put in `bands` LSH buckets; clips sharing a bucket are candidates;
  a candidate pair is a near-duplicate when at least `min_matched_frames` key-frames of one clip
  match frames of the other in the same temporal order.  Frames are matched by content, each
  against every frame of the other clip (closest hashes within `max_hamming` bits, thumbnails
  within `max_thumb_diff`), never by position: a re-upload at another frame rate, trimmed or
  longer, has its key-frames at other times.  A count, not a share: a 1 s excerpt of a 10 s clip
  overlaps only one or two of the long clip's key-frames however alike they are;
- captions: clips with the same caption key.
Groups are the connected components of both relations (union-find).  In each the best clip by
`prefer` (clip_score, then span duration, then resolution, then clip id) is kept; the others are
rejected as `near_duplicate` or `duplicate_caption`, with `duplicate_of` naming the kept clip.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from bisect import bisect_right
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa

from vtcurate.config import DedupConfig
from vtcurate.stages.base import (
    DROP_REASON,
    Resources,
    Stage,
    column,
    keep_earlier_drops,
    prefer_key,
    set_column,
    with_decisions,
)
from vtcurate.storage import read_columns
from vtcurate.video.fingerprint import (
    bands,
    frame_fingerprint,
    hash_distances,
    thumb_distances,
    thumbs_array,
)

log = logging.getLogger(__name__)

_NOT_WORD = re.compile(r"[\W_]+")


def caption_key(caption: str | None, lang: str | None) -> str | None:
    text = _NOT_WORD.sub("", unicodedata.normalize("NFKC", caption or "").casefold())
    return f"{lang}:{text}" if text else None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _matches(a: tuple, b: tuple, cfg: DedupConfig) -> list[list[bool]]:
    """matches[i][j]: frame i of `a` looks like frame j of `b` (hashes and thumbnail); a and b are
    (hashes: frames × crops uint64, thumbnails: frames × cells × channels)."""
    near = hash_distances(a[0], b[0]) <= cfg.max_hamming
    near &= thumb_distances(a[1], b[1], cfg.thumb_overlay_share) <= cfg.max_thumb_diff
    return near.tolist()


def _fingerprints(cols: dict, i: int) -> tuple:
    """Row i's fingerprints as arrays (made per comparison: a driver-wide cache of float thumbnails
    would outgrow the columns it reads)."""
    return np.array(cols["frame_phashes"][i], np.uint64), thumbs_array(cols["frame_thumbs"][i])


def _in_order(matches: list[list[bool]]) -> int:
    """How many rows match columns in the same temporal order: the longest chain of matches whose
    column never goes back (a reversed clip is not a duplicate)."""
    best: list[int] = []  # patience sorting: best[k] = smallest last column of a chain of k+1
    for row in matches:
        hits = [j for j, hit in enumerate(row) if hit]
        for j in sorted(hits, reverse=True):  # descending, so one row extends a chain once
            k = bisect_right(best, j)
            if k == len(best):
                best.append(j)
            else:
                best[k] = j
    return len(best)


class DedupStage(Stage):
    name = "dedup"
    output_columns = ("frame_phashes", "frame_thumbs", "caption_key", "duplicate_of")
    global_plan = True
    decision_reasons = ("near_duplicate", "duplicate_caption")

    config: DedupConfig

    @property
    def resources(self) -> Resources:
        return Resources(num_cpus=0.5, batch_size=128)

    def provenance(self) -> dict:
        method = "pHash-64 per centre crop + normalised 6x6 thumbnails, LSH bands; exact caption keys"
        return {"method": method, **self.config.model_dump()}

    def __call__(self, batch: pa.Table) -> pa.Table:
        hashes, thumbs = [], []
        for jpegs in batch.column("frames").to_pylist():
            prints = [frame_fingerprint(j, self.config.min_frame_std, self.config.hash_crops)
                      for j in jpegs or []]  # fmt: skip
            prints = [p for p in prints if p]
            hashes.append([p[0] for p in prints])
            thumbs.append([p[1] for p in prints])
        keys = [
            caption_key(c, lang)
            for c, lang in zip(batch.column("caption").to_pylist(), column(batch, "lang"))
        ]
        n = batch.num_rows
        batch = set_column(batch, "frame_phashes", hashes, pa.list_(pa.list_(pa.uint64())))
        batch = set_column(batch, "frame_thumbs", thumbs, pa.list_(pa.binary()))
        batch = set_column(batch, "caption_key", keys, pa.string())
        batch = set_column(batch, "duplicate_of", [None] * n, pa.string())
        return with_decisions(batch, [None] * n, [None] * n)

    def plan(self, scored: list[Path]) -> dict:
        cfg = self.config
        cols = read_columns(
            scored,
            ["clip_id", DROP_REASON, "frame_phashes", "frame_thumbs", "caption_key", "clip_score",
             "span_start", "span_end", "width", "height"],
        )  # fmt: skip
        live = [i for i, r in enumerate(cols[DROP_REASON]) if r is None]
        uf = _UnionFind()
        how: dict[tuple[int, int], str] = {}  # (min, max) row pair -> the relation that joined them
        joined_by: dict[int, str] = {}  # row -> the first relation that joined it to anything
        if cfg.near_duplicates:
            buckets: dict[tuple[int, int], set[int]] = defaultdict(set)
            for i in live:
                for frame in cols["frame_phashes"][i] or []:
                    for h in frame:
                        for b, key in enumerate(bands(h, cfg.bands)):
                            buckets[(b, key)].add(i)
            skipped = 0
            compared: set[tuple[int, int]] = set()  # pairs that share several buckets: compared once
            for key in sorted(buckets):
                members = sorted(buckets[key])
                if len(members) > cfg.max_bucket:
                    skipped += 1
                    continue
                for a, b in combinations(members, 2):
                    # already in one group (k copies of a clip: k - 1 comparisons, not k^2 / 2)
                    if (a, b) in compared or uf.find(a) == uf.find(b):
                        continue
                    compared.add((a, b))
                    fa, fb = _fingerprints(cols, a), _fingerprints(cols, b)
                    # compared once; read by rows (a in b) and by columns (b in a)
                    m = _matches(fa, fb, cfg)
                    matched = max(_in_order(m), _in_order([list(col) for col in zip(*m)]))
                    if matched >= min(cfg.min_matched_frames, len(fa[0]), len(fb[0])):
                        uf.union(a, b)
                        how[(a, b)] = f"near_duplicate:{matched}"
                        joined_by.setdefault(a, how[(a, b)])
                        joined_by.setdefault(b, how[(a, b)])
            if skipped:
                log.warning("dedup: %d LSH buckets over max_bucket=%d skipped", skipped, cfg.max_bucket)
        if cfg.captions:
            first: dict[str, int] = {}
            for i in live:
                key = cols["caption_key"][i]
                if key is None:
                    continue
                if key in first:
                    uf.union(first[key], i)
                    how.setdefault((first[key], i), "duplicate_caption")
                    joined_by.setdefault(first[key], "duplicate_caption")
                    joined_by.setdefault(i, "duplicate_caption")
                else:
                    first[key] = i
        groups: dict[int, list[int]] = defaultdict(list)
        for i in live:
            groups[uf.find(i)].append(i)
        duplicates = {}
        for members in groups.values():
            if len(members) < 2:
                continue
            keeper = min(members, key=lambda i: prefer_key(cfg.prefer, cols, i))
            for i in members:
                if i == keeper:
                    continue
                # directly related to the keeper, or else joined to it through another member
                relation = how.get((min(i, keeper), max(i, keeper))) or joined_by[i]
                reason, _, matched = relation.partition(":")
                detail = f"{matched} key-frames match in order" if matched else "same caption"
                duplicates[cols["clip_id"][i]] = [cols["clip_id"][keeper], reason, detail]
        return {"duplicates": duplicates, "groups": sum(len(m) > 1 for m in groups.values())}

    def apply_plan(self, table: pa.Table, plan: dict) -> pa.Table:
        dups = plan["duplicates"]
        of, reasons, details = [], [], []
        for clip_id in table.column("clip_id").to_pylist():
            keeper, reason, detail = dups.get(clip_id, (None, None, None))
            of.append(keeper)
            reasons.append(reason)
            details.append(f"{detail}; kept {keeper}" if keeper else None)
        table = set_column(table, "duplicate_of", of, pa.string())
        return keep_earlier_drops(table, reasons, details)
