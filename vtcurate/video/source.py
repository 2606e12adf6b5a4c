"""Where a video's bytes come from: a local path, or any fsspec URL opened as a file object."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


class VideoSourceError(Exception):
    """A video that cannot be opened at all; `code` is the stable drop reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def is_url(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def check_local(path: str) -> None:
    if not os.path.lexists(path):
        raise VideoSourceError("missing_file", f"no such file: {path}")
    if os.path.isdir(path):
        raise VideoSourceError("not_a_file", f"is a directory: {path}")
    if os.path.getsize(path) == 0:
        raise VideoSourceError("unreadable_video", f"empty file: {path}")


@contextmanager
def open_video(uri: str) -> Iterator[str | IO[bytes]]:
    """Yield what decoders accept: a local path, or a seekable file object for remote URIs."""
    if not is_url(uri):
        path = local_path(uri)
        check_local(path)
        yield path
        return
    import fsspec

    try:
        fh = fsspec.open(uri, "rb").open()
    except FileNotFoundError as err:
        raise VideoSourceError("missing_file", f"{uri}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any transport error is a per-row rejection
        raise VideoSourceError("unreadable_video", f"{uri}: {type(err).__name__}: {err}") from None
    try:
        yield fh
    finally:
        fh.close()


def rewind(src: str | IO[bytes]) -> str | IO[bytes]:
    """File objects are shared by the backends tried in turn: each starts from byte 0."""
    if not isinstance(src, str):
        src.seek(0)
    return src


@contextmanager
def open_av_video(src: str | IO[bytes]):
    """(container, first video stream) with PyAV; no video stream is a stable rejection."""
    import av

    with av.open(rewind(src)) as container:
        if not container.streams.video:
            raise VideoSourceError("no_video_stream", "the container has no video stream")
        yield container, container.streams.video[0]
