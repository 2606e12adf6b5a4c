"""shard: WebDataset tars, one sample per clip, split train/val by a hash of the clip id.

Per partition the stage only assigns each row its sample key and split (and rejects rows without
usable frames); `write_shards` then streams the kept rows, in partition order, into
`shards/<split>/<split>-<lang>-NNNNNN.tar` with webdataset.ShardWriter and writes index.json.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from vtcurate.checksums import file_sha256
from vtcurate.config import ShardConfig
from vtcurate.pipeline.atomic import write_json
from vtcurate.stages.base import DROP_DETAIL, DROP_REASON, Resources, Stage, set_column, with_decisions

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# columns never copied into a sample's .json: the frames are the .jpg members; dedup's binary
# fingerprints stay in the run directory; whether a rewrite came from the cache is the run's
# history (a run resumed after a crash reuses the cache), not the sample's content
_NOT_META = {"frames", "frame_phashes", "frame_thumbs", "rewrite_cached", DROP_REASON, DROP_DETAIL}


_HASHED = re.compile(r"-[0-9a-f]{10}$")


def sample_key(clip_id: str) -> str:
    """A tar-safe WebDataset key: [A-Za-z0-9_-] only (webdataset splits keys at the first dot,
    and a slash would make a member escape its directory).

    A safe id is its own key.  Any other id, and any id that already ends like a hash suffix,
    becomes `<cleaned id>-<10 hex digits of its sha1>`, so a cleaned key can never equal another
    clip's own id, and clip ids (unique after ingest) give unique keys."""
    safe = _UNSAFE.sub("_", clip_id)[:80]
    if safe == clip_id and safe and not _HASHED.search(safe):
        return safe
    return f"{safe}-{hashlib.sha1(clip_id.encode()).hexdigest()[:10]}"


def split_of(clip_id: str, val_fraction: float, salt: str = "") -> str:
    digest = hashlib.sha256(f"{salt}{clip_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def _safe_lang(lang: str | None) -> str:
    return _UNSAFE.sub("_", lang) if lang else "und"


class ShardStage(Stage):
    name = "shard"
    output_columns = ("sample_key", "split")

    config: ShardConfig

    @property
    def resources(self) -> Resources:
        return Resources(num_cpus=0.5, batch_size=256)

    def __call__(self, batch: pa.Table) -> pa.Table:
        cfg = self.config
        ids = batch.column("clip_id").to_pylist()
        frames = batch.column("frames").to_pylist() if "frames" in batch.column_names else [None] * len(ids)
        reasons, details = [], []
        for f in frames:
            bad = not f or any(not b for b in f)
            reasons.append("missing_frames" if bad else None)
            details.append("no key-frames to write (run the keyframes stage)" if bad else None)
        batch = set_column(batch, "sample_key", [sample_key(i) for i in ids], pa.string())
        batch = set_column(
            batch, "split", [split_of(i, cfg.val_fraction, cfg.split_salt) for i in ids], pa.string()
        )
        return with_decisions(batch, reasons, details)

    def write_shards(self, tables: Iterable[pa.Table], out_dir: Path, provenance: dict) -> dict:
        """Write every kept row to tars under out_dir; return the index (also in index.json)."""
        import webdataset as wds

        out_dir.mkdir(parents=True, exist_ok=True)  # also when no row reaches this stage
        writers: dict[tuple[str, str], wds.ShardWriter] = {}
        samples: Counter[str] = Counter()
        langs: dict[str, Counter[str]] = defaultdict(Counter)
        try:
            for table in tables:
                for row in table.to_pylist():
                    lang = _safe_lang(row.get("lang"))
                    key = (row["split"], lang)
                    if key not in writers:
                        (out_dir / row["split"]).mkdir(parents=True, exist_ok=True)
                        pattern = str(out_dir / row["split"] / f"{row['split']}-{lang}-%06d.tar")
                        writers[key] = wds.ShardWriter(
                            pattern,
                            maxcount=self.config.max_samples,
                            maxsize=self.config.max_bytes,
                            verbose=0,
                            mtime=0,  # reproducible tar bytes
                        )
                    writer = writers[key]
                    writer.write(_sample(row, provenance))
                    samples[writer.fname] += 1
                    langs[writer.fname][row.get("lang") or "und"] += 1
        finally:
            for writer in writers.values():
                writer.close()
        shards = []
        for fname in sorted(samples):
            path = Path(fname)
            shards.append(
                {
                    "path": str(path.relative_to(out_dir)),
                    "split": path.parent.name,
                    "samples": samples[fname],
                    "bytes": path.stat().st_size,
                    "sha256": file_sha256(path),
                    "languages": dict(sorted(langs[fname].items())),
                }
            )
        index = {
            "format": "webdataset",
            "sample_layout": "<key>.f0.jpg ... <key>.fN.jpg, <key>.txt, <key>.json",
            "samples": sum(samples.values()),
            "splits": _split_counts(shards),
            "shards": shards,
        }
        write_json(index, out_dir / "index.json")
        return index


def _sample(row: dict, provenance: dict) -> dict:
    sample = {"__key__": row["sample_key"], "txt": row["caption"]}
    for i, jpg in enumerate(row["frames"]):
        sample[f"f{i}.jpg"] = jpg
    meta = {k: v for k, v in row.items() if k not in _NOT_META}
    meta["provenance"] = provenance
    sample["json"] = json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str).encode()
    return sample


def _split_counts(shards: list[dict]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for shard in shards:
        counts[shard["split"]] += shard["samples"]
    return dict(sorted(counts.items()))
