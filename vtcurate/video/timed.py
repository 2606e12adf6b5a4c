"""Frames shown at given times of a video, decoded again (PyAV): for stages that need the key-frames
at another size than the stored JPEGs (OCR) or frames beside them (motion pairs).

The same one-pass seek plan as the key-frames (vtcurate.video.frames): a target gets the frame
displayed at it, the last one whose presentation time is <= t, and a GOP is never decoded twice.
With `within`, a target moves to the intra frame nearest it inside its own (start, end) window, if
the window holds one, and only that frame is decoded (no GOP run up to it): for text burned into
the picture, which stays on screen for seconds, any frame near the key-frame will do.
"""

from __future__ import annotations

import numpy as np

from vtcurate.video.frames import _pyav_frames_at, _pyav_packet_times, _snap_to_intra
from vtcurate.video.source import open_av_video, open_video


def read_frames_at(
    uri: str, times: list[float], threads: int = 1, within: list[tuple[float, float]] | None = None
) -> tuple[list[np.ndarray], list[float]]:
    """RGB frames (H x W x 3, uint8) shown at each of `times` (seconds from the stream start, as in
    the `frame_times` column), in the order given, and the times of the frames decoded."""
    if not times:
        return [], []
    with open_video(uri) as src, open_av_video(src) as (container, stream):
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        t0 = stream.start_time or 0
        packets = _pyav_packet_times(container, stream, t0)
        wanted = _snap_to_intra(times, within, packets.keys) if within else list(times)
        targets = sorted(set(wanted))
        intra = [within is not None and bool(np.any(np.abs(packets.keys - t) <= 1e-9)) for t in targets]
        found = _pyav_frames_at(container, stream, targets, t0, packets, intra)
    by_time = dict(zip(targets, found))
    return [by_time[t][0] for t in wanted], [float(by_time[t][1]) for t in wanted]
