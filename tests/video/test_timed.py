"""read_frames_at: the frames shown at given times, decoded again; with windows, the intra frames."""

import av
import numpy as np

from helpers import SHARED_DATA, needs_shared_data
from vtcurate.video.frames import _pyav_packet_times, read_keyframes
from vtcurate.video.timed import read_frames_at

VIDEO = SHARED_DATA / "videos" / "dataflow__test_video.avi"  # 720p, an intra frame every 2 s


@needs_shared_data
def test_frames_at_the_key_frame_times_are_the_key_frames():
    kf = read_keyframes(str(VIDEO), 0.0, 10.0, 8, backends=["pyav"])
    order = [5, 1, 5, 7]  # any order, repeats included
    images, times = read_frames_at(str(VIDEO), [kf.times[i] for i in order])
    assert times == [kf.times[i] for i in order]
    for img, i in zip(images, order):
        assert np.array_equal(img, kf.images[i])


@needs_shared_data
def test_windows_move_targets_to_their_intra_frames():
    with av.open(str(VIDEO)) as c:
        stream = c.streams.video[0]
        keys = _pyav_packet_times(c, stream, stream.start_time or 0).keys
    windows = [(1.5, 3.0), (4.5, 5.5), (7.5, 8.5)]  # intra frames near 2.0 and 8.0; none in the middle
    images, times = read_frames_at(str(VIDEO), [2.5, 5.0, 8.3], within=windows)
    assert times[0] == keys[1] and times[2] == keys[4]
    assert abs(times[1] - 5.0) < 0.04  # no intra frame in its window: the frame shown at 5.0
    exact, _ = read_frames_at(str(VIDEO), times)
    assert all(np.array_equal(a, b) for a, b in zip(images, exact))
