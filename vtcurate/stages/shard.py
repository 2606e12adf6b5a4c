"""shard: WebDataset tars, one sample per clip, split train/val by a hash of the clip id.

Per partition the stage assigns each row its sample key and split (and rejects rows without
usable frames), then the worker writes that partition's kept rows to its own tars
(`write_partition`); the driver only merges the partitions' shard lists into index.json
(`finalize`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections import Counter, defaultdict

import pyarrow as pa

from vtcurate.checksums import file_sha256
from vtcurate.config import ShardConfig
from vtcurate.stages.base import DROP_DETAIL, DROP_REASON, Resources, Stage, set_column, with_decisions
from vtcurate.storage import write_json

SHARDS = "shards"  # the shards' folder in the run directory
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# columns never copied into a sample's .json: the frames are the .jpg members; dedup's binary
# fingerprints and clip_filter's embedding stay in the run directory; whether a rewrite came from
# the cache is the run's history (a run resumed after a crash reuses the cache), not the sample's content
_NOT_META = {"frames", "frame_phashes", "frame_thumbs", "clip_embedding", "rewrite_cached", DROP_REASON,
             DROP_DETAIL}


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

    def write_partition(self, kept: pa.Table, part: str) -> dict:
        """Write partition `part`'s kept rows to its own tars, on the worker that decided them:
        shards/<split>/<split>-<lang>-<partition>-NNNNNN.tar (webdataset.ShardWriter rolls over at
        max_samples / max_bytes).  Names and bytes depend only on the partition's rows, so any
        runner and any number of workers write the same tars; each tar is written under a
        temporary name and renamed, so a killed writer leaves nothing that looks finished."""
        import webdataset as wds

        out_dir = self.run_root / SHARDS
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for row in kept.to_pylist():
            groups[(row["split"], _safe_lang(row.get("lang")))].append(row)
        entries = []
        for (split, lang), rows in sorted(groups.items()):
            tmp = out_dir / split / f".tmp-{part}-{lang}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            writer = wds.ShardWriter(str(tmp / "%06d.tar"), maxcount=self.config.max_samples,
                                     maxsize=self.config.max_bytes, verbose=0, mtime=0)  # fmt: skip
            samples: Counter[str] = Counter()
            langs: dict[str, Counter[str]] = defaultdict(Counter)
            try:
                for row in rows:
                    writer.write(_sample(row, self.run_provenance))
                    samples[writer.fname] += 1
                    langs[writer.fname][row.get("lang") or "und"] += 1
            finally:
                writer.close()
            for seq, fname in enumerate(sorted(samples)):
                path = out_dir / split / f"{split}-{lang}-{part.rsplit('-', 1)[-1]}-{seq:06d}.tar"
                os.replace(fname, path)
                entries.append({
                    "path": str(path.relative_to(out_dir)),
                    "split": split,
                    "samples": samples[fname],
                    "bytes": path.stat().st_size,
                    "sha256": file_sha256(path),
                    "languages": dict(sorted(langs[fname].items())),
                })  # fmt: skip
            shutil.rmtree(tmp)
        return {"shards": entries}

    def finalize(self, outputs: list[dict]) -> dict:
        """Merge the partitions' shard lists into shards/index.json (written last: its presence
        marks the shards complete), and remove tars and temporary folders no partition lists
        (left by a writer killed mid-tar)."""
        out_dir = self.run_root / SHARDS
        out_dir.mkdir(parents=True, exist_ok=True)  # also when no row reaches this stage
        shards = sorted((s for o in outputs for s in o["shards"]), key=lambda s: s["path"])
        listed = {s["path"] for s in shards}
        for stale in out_dir.glob("*/.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for tar in out_dir.glob("*/*.tar"):
            if str(tar.relative_to(out_dir)) not in listed:
                tar.unlink()
        index = {
            "format": "webdataset",
            "sample_layout": "<key>.f0.jpg ... <key>.fN.jpg, <key>.txt, <key>.json",
            "samples": sum(s["samples"] for s in shards),
            "splits": _split_counts(shards),
            "shards": shards,
        }
        write_json(index, out_dir / "index.json")
        return {"shards": {"shards": len(shards), "samples": index["samples"], "splits": index["splits"]}}


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
