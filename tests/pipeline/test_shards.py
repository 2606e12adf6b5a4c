"""The shard loader reads back what the shard stage wrote."""

import json

import numpy as np
import pyarrow.parquet as pq

from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.shards import inspect_tar, make_loader, shard_paths
from vtcurate.stages.shard import sample_key, split_of


def test_loader_returns_frames_captions_metadata(local_run):
    rd = RunDir(local_run)
    kept = {
        r["clip_id"]: r
        for p in rd.stage("shard").kept_parts()
        for r in pq.read_table(p, columns=["clip_id", "caption", "split", "lang"]).to_pylist()
    }
    seen = {}
    for split in ("train", "val"):
        for frames, captions, metas in make_loader(rd.shards, split, batch_size=4, frame_size=64):
            assert frames.dtype.is_floating_point is False
            assert tuple(frames.shape[1:]) == (8, 3, 64, 64)
            for caption, meta in zip(captions, metas):
                seen[meta["clip_id"]] = (caption, meta["split"], meta["lang"])
    assert seen == {k: (r["caption"], r["split"], r["lang"]) for k, r in kept.items()}


def test_loader_with_workers_reads_each_sample_once(local_run):
    rd = RunDir(local_run)
    loader = make_loader(rd.shards, None, batch_size=2, num_workers=2, frame_size=32)
    ids = [m["clip_id"] for _, _, metas in loader for m in metas]
    assert len(ids) == len(set(ids)) == json.loads((rd.shards / "index.json").read_text())["samples"]


def test_frames_are_in_time_order_and_sized(local_run):
    path = shard_paths(RunDir(local_run).shards, "train")[0]
    lines = inspect_tar(path, n=2)
    assert "samples" in lines[0] and "8 frames" in lines[2]
    loader = make_loader(RunDir(local_run).shards, "train", batch_size=1, frame_size=None)
    frames, _, (meta,) = next(iter(loader))
    assert min(frames.shape[-2:]) == 128  # demo short_side
    assert meta["frame_times"] == sorted(meta["frame_times"])
    assert np.all(np.diff(meta["frame_times"]) > 0)


def test_sample_keys_are_tar_safe_and_unique():
    assert sample_key("clip_0001-a") == "clip_0001-a"
    unsafe = ["../../etc/passwd", "a/b", "a.b", "a\x00b", "a b", "", "中文"]
    keys = [sample_key(k) for k in unsafe]
    assert all(k and all(c.isalnum() or c in "_-" for c in k) for k in keys)
    assert len(set(keys)) == len(keys)
    assert sample_key("a.b") != sample_key("a_b")
    # an id that looks like another id's cleaned key does not take that key
    assert sample_key(sample_key("a.b")) != sample_key("a.b")


def test_split_is_deterministic_and_proportional():
    splits = [split_of(f"clip{i}", 0.2) for i in range(5000)]
    assert splits == [split_of(f"clip{i}", 0.2) for i in range(5000)]
    assert 0.17 < splits.count("val") / 5000 < 0.23
    assert split_of("x", 0.0) == "train" and split_of("x", 1.0) == "val"


def test_verify_names_a_corrupted_or_missing_shard(local_run, tmp_path):
    import shutil

    import pytest

    from vtcurate.pipeline.shards import CorruptShardError, verify_shards

    shards = tmp_path / "shards"
    shutil.copytree(RunDir(local_run).shards, shards)
    assert verify_shards(shards) == len(json.loads((shards / "index.json").read_text())["shards"])
    victim = sorted(shards.rglob("*.tar"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    victim.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=victim.name):
        make_loader(shards, split=None, verify=True)
    victim.unlink()
    with pytest.raises(CorruptShardError, match=f"{victim.name} listed in index.json is missing"):
        verify_shards(shards)
