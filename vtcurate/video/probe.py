"""Probe a video's stream: duration, fps, size, codec, frame count.  decord first, PyAV fallback."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import IO

from vtcurate.video.source import VideoSourceError, first_success, open_av_video, rewind


@dataclass(frozen=True)
class ProbeResult:
    duration: float
    fps: float
    width: int
    height: int
    codec: str | None
    container: str | None
    num_frames: int
    backend: str

    def as_row(self) -> dict:
        row = asdict(self)
        row["probe_backend"] = row.pop("backend")
        return row


def _header_info(src: str | IO[bytes]) -> tuple[str | None, str | None]:
    """Codec and container format names from the container header alone (no decoding)."""
    import av

    try:
        with av.open(rewind(src)) as container:
            video = container.streams.video
            return (video[0].codec_context.name if video else None), container.format.name
    except Exception:  # noqa: BLE001 - informative only
        return None, None


def probe_decord(src: str | IO[bytes]) -> ProbeResult:
    import decord

    vr = decord.VideoReader(rewind(src), num_threads=1)
    n = len(vr)
    if n == 0:
        raise VideoSourceError("no_video_stream", "decord found no frames")
    fps = float(vr.get_avg_fps())
    last_end = float(vr.get_frame_timestamp(n - 1)[1])
    height, width = vr[0].shape[:2]
    duration = last_end if last_end > 0 else n / fps
    codec, fmt = _header_info(src)
    return ProbeResult(duration, fps, int(width), int(height), codec, fmt, n, "decord")


def probe_pyav(src: str | IO[bytes]) -> ProbeResult:
    with open_av_video(src) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        n = stream.frames or int(round(duration * fps))
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if not width or not height or n == 0:
            # Header says too little: decode to count (cheap for the stills and tiny clips this hits).
            n, first = 0, None
            for frame in container.decode(stream):
                first = first or frame
                n += 1
            if first is None:
                raise VideoSourceError("unreadable_video", "no decodable video frame")
            width, height = first.width, first.height
            duration = duration or (n / fps if fps else 0.0)
        return ProbeResult(duration, fps, width, height, ctx.name, container.format.name, n, "pyav")


PROBES = {"decord": probe_decord, "pyav": probe_pyav}


def check_frame_size(src: str | IO[bytes], max_pixels: int) -> None:
    """Reject a frame size declared above max_pixels from the header alone, before a decoder
    allocates frames of it (a few bytes can declare a frame of gigabytes)."""
    import av

    try:
        with av.open(rewind(src)) as container:
            video = container.streams.video
            width, height = (video[0].codec_context.width, video[0].codec_context.height) if video else (0, 0)
    except Exception:  # noqa: BLE001 - an unreadable header is for the backends to report
        return
    if width * height > max_pixels:
        raise VideoSourceError("too_large", f"{width}x{height} frames > max_pixels {max_pixels}")


def probe(uri: str, backends: list[str], max_pixels: int | None = None) -> ProbeResult:
    """Probe with each backend in turn; raise VideoSourceError with a stable code if all fail."""

    def read(name: str, src: str | IO[bytes]) -> ProbeResult:
        if max_pixels:
            check_frame_size(src, max_pixels)
        return PROBES[name](src)

    return first_success(uri, backends, read, "unreadable_video")
