"""What `--input` can be besides a manifest file, listed as manifest rows.

- A folder of videos: every file with a video suffix, at any depth, in path order; its caption from
  a sidecar with the same stem (`.txt`, or the `caption_key` of a `.json`), its timed text from a
  `.srt`/`.vtt` sidecar.  The video path is written relative to the folder, so a moved corpus keeps
  its clip ids.
- WebDataset tars (video2dataset's output): one `.tar`, a folder of them, or a brace pattern
  (`shard-{000000..000009}.tar`), local or any fsspec URL.  Members sharing a key (the name up to
  its first dot) are a sample; the video member is read in place through fsspec's `tar://`
  protocol, never unpacked; the caption comes from `.txt` or the `.json`'s `caption_key`; the id is
  the sample key.

A folder holding manifests or anything else is not guessed at: it must hold videos or tars.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vtcurate.config import ManifestConfig
from vtcurate.errors import UserError

SUBTITLE_SUFFIXES = (".srt", ".vtt")


class InputError(UserError, ValueError):
    """`--input` names nothing vtcurate can read."""


def kind(path: str) -> str:
    """`manifest`, `folder` or `webdataset` for what `path` names."""
    import fsspec

    if "{" in path and ".." in path:
        return "webdataset"  # a brace pattern of shards
    fs, fpath = fsspec.core.url_to_fs(path)
    if fs.isdir(fpath):
        if any(name.endswith(".tar") for name in fs.ls(fpath, detail=False)):
            return "webdataset"
        return "folder"
    return "webdataset" if fpath.endswith(".tar") else "manifest"


def _read_caption(text: str | None, meta: bytes | None, key: str) -> tuple[str | None, str | None]:
    """(caption, problem) from a .txt body, else the `key` of a .json body."""
    if text is not None:
        return text.strip(), None
    if meta is None:
        return None, None
    try:
        value = json.loads(meta)
    except ValueError as err:
        return None, f"sidecar .json is not JSON: {err}"
    caption = value.get(key) if isinstance(value, dict) else None
    if caption is None:
        return None, f"sidecar .json has no {key!r}"
    return (caption if isinstance(caption, str) else json.dumps(caption, ensure_ascii=False)), None


def folder_rows(root: str, cfg: ManifestConfig) -> Iterator[dict[str, Any] | tuple[str, str]]:
    import fsspec

    fs, base = fsspec.core.url_to_fs(root)
    files = sorted(fs.find(base))
    present = set(files)
    suffixes = tuple(s.lower() for s in cfg.video_suffixes)
    for path in files:
        if not path.lower().endswith(suffixes):
            continue
        stem = posixpath.splitext(path)[0]
        txt, meta = stem + ".txt", stem + ".json"
        text = fs.cat_file(txt).decode("utf-8", "replace") if txt in present else None
        meta_bytes = fs.cat_file(meta) if meta in present else None
        caption, problem = _read_caption(text, meta_bytes, cfg.caption_key)
        row: dict[str, Any] = {"video": posixpath.relpath(path, base), "caption": caption}
        subtitles = next((stem + s for s in SUBTITLE_SUFFIXES if stem + s in present), None)
        if subtitles:
            row["subtitles"] = posixpath.relpath(subtitles, base)
        yield ("bad_manifest_row", f"{row['video']}: {problem}") if problem else row


def _shards(spec: str) -> list[str]:
    import fsspec
    from braceexpand import braceexpand

    if "{" in spec:
        return list(braceexpand(spec))
    fs, fpath = fsspec.core.url_to_fs(spec)
    if fs.isdir(fpath):
        names = sorted(p for p in fs.ls(fpath, detail=False) if p.endswith(".tar"))
        return [fs.unstrip_protocol(p) if "://" in spec else p for p in names]
    return [spec]


def _tar_mode(fh) -> str:
    return "r:*" if fh.seekable() else "r|*"


def _tar_url(shard: str) -> str:
    return shard if "://" in shard else str(Path(shard).resolve())


def webdataset_rows(spec: str, cfg: ManifestConfig) -> Iterator[dict[str, Any] | tuple[str, str]]:
    import fsspec

    suffixes = tuple(s.lower() for s in cfg.video_suffixes)
    for shard in _shards(spec):
        url = _tar_url(shard)
        try:
            # a seekable file (local, or fsspec's block-cached remote ones) is listed by seeking past
            # the video members; a stream would read every byte of every video
            with fsspec.open(url, "rb") as fh, tarfile.open(fileobj=fh, mode=_tar_mode(fh)) as tar:
                samples: dict[str, dict[str, Any]] = {}
                for member in tar:  # small members are read, videos only named
                    if not member.isfile():
                        continue
                    name = member.name.removeprefix("./")
                    folder, base = posixpath.split(name)
                    key = posixpath.join(folder, base.split(".", 1)[0])
                    ext = base[len(base.split(".", 1)[0]) :].lower()
                    sample = samples.setdefault(key, {"exts": []})
                    sample["exts"].append(ext)
                    if ext.endswith(suffixes) and "video" not in sample:
                        sample["video"] = f"tar://{member.name}::{url}"
                    elif ext in (".txt", ".json"):
                        sample[ext] = tar.extractfile(member).read()
        except (OSError, tarfile.TarError) as err:
            raise InputError(f"{shard}: not a readable tar ({type(err).__name__}: {err})") from None
        for key, sample in samples.items():
            text = sample[".txt"].decode("utf-8", "replace") if ".txt" in sample else None
            caption, problem = _read_caption(text, sample.get(".json"), cfg.caption_key)
            if "video" not in sample:
                problem = f"no video member (has {', '.join(sorted(sample['exts']))})"
            if problem:
                yield ("bad_manifest_row", f"{posixpath.basename(shard)} sample {key}: {problem}")
            else:
                yield {"video": sample["video"], "caption": caption, "id": key}
