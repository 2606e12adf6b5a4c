"""Where a video's bytes come from: a local path, or any fsspec URL opened as a file object."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
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
    try:
        st = os.stat(path)  # follows symlinks: a dangling link is a missing file
    except FileNotFoundError:
        raise VideoSourceError("missing_file", f"no such file: {path}") from None
    except OSError as err:
        raise VideoSourceError("unreadable_video", f"{path}: {err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoSourceError("not_a_file", f"is a directory: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise VideoSourceError("not_a_file", f"not a regular file: {path}")
    if st.st_size == 0:
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
        opened = fsspec.open(uri, "rb")  # kept referenced: a chained URL (tar://m::x.tar) closes with it
        fh = opened.open()
    except FileNotFoundError as err:
        raise VideoSourceError("missing_file", f"{uri}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any transport error is a per-row rejection
        raise VideoSourceError("unreadable_video", f"{uri}: {type(err).__name__}: {err}") from None
    try:
        yield fh
    finally:
        fh.close()


# what no other backend can change
FINAL = ("no_video_stream", "too_large")


def first_success(uri: str, backends: list[str], read: Callable, code: str, errors: list[str] | None = None):
    """`read(name, src)` with each backend in turn on the opened source; the first result wins.

    Decoder errors vary by library and file, so any exception moves on to the next backend; a
    VideoSourceError that says the file has no video stream or too large frames is final.  All
    failing raises VideoSourceError(code) listing every backend's error.  `errors`, if given,
    receives the errors of the backends tried before the one that answered.
    """
    errors = [] if errors is None else errors
    with open_video(uri) as src:
        for name in backends:
            try:
                return read(name, src)
            except VideoSourceError as err:
                if err.code in FINAL:
                    raise
                errors.append(f"{name}: {err.detail}")
            except Exception as err:  # noqa: BLE001 - see above
                errors.append(f"{name}: {type(err).__name__}: {str(err)[:200]}")
    raise VideoSourceError(code, "; ".join(errors))


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
