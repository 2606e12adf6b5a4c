"""Timed text: real subtitle lines in the encodings they come in, broken files, and alignment."""

from __future__ import annotations

import json

import pytest

from helpers import SHARED_DATA
from vtcurate.text.subtitles import Cue, SubtitleError, parse_cues, read_cues, text_in_span


@pytest.fixture(scope="module")
def real_lines() -> list[dict]:
    path = SHARED_DATA / "captions" / "noisy_zh_subtitles_srt.jsonl"
    if not path.is_file():
        pytest.skip(f"real test data not found at {path}")
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _srt(lines: list[dict]) -> str:
    return "\n".join(f"{i}\n{r['start']} --> {r['end']}\n{r['caption']}\n" for i, r in enumerate(lines, 1))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "big5"])
def test_real_chinese_subtitles_in_any_encoding(real_lines, tmp_path, encoding):
    text = _srt(real_lines)
    if encoding == "big5":  # Big5 holds Traditional characters: the file a Taiwanese uploader has
        from opencc import OpenCC

        text = OpenCC("s2tw").convert(text)
    path = tmp_path / "subs.srt"
    path.write_bytes(text.encode(encoding))
    cues = read_cues(str(path))
    assert [c.text for c in cues] == [c.text for c in parse_cues(text, "srt")]
    assert len(cues) == len(real_lines)
    assert cues[0].start == 0.0 and cues[0].end == pytest.approx(2.16)


def test_alignment_of_real_lines_to_clips(real_lines):
    cues = parse_cues(_srt(real_lines), "srt")
    first_two = text_in_span(cues, 0.0, 4.5, min_overlap=0.5)
    assert (
        first_two == f"{real_lines[0]['caption']}，{real_lines[1]['caption']}"
    )  # Chinese joined with a comma
    # a clip that holds under half of a cue does not take its text
    assert real_lines[2]["caption"] not in text_in_span(cues, 0.0, 4.5 + 0.8, min_overlap=0.5)
    assert real_lines[2]["caption"] in text_in_span(cues, 0.0, 4.5 + 1.2, min_overlap=0.5)
    assert text_in_span(cues, 1000.0, 1010.0, 0.5) == ""


def test_a_malformed_srt_keeps_its_good_cues():
    broken = (
        "1\n00:00:01,000 --> 00:00:02,500\nHello <i>world</i>\n\n"
        "2\n00:00:02,000 --> 00:00:xx\nbroken timing line\n\n"
        "garbage without timing\n\n"
        "3\n00:00:03,000 --> 00:00:04,000\nthird\nline two\n\n"
        "4\n00:00:03,500 --> 00:00:05,000\noverlapping cue\n\n"
        "5\n00:00:05,000 --> 00:00:06,000\noverlapping cue\n"
    )
    cues = parse_cues(broken, "srt")
    assert [c.text for c in cues] == ["Hello world", "third line two", "overlapping cue", "overlapping cue"]
    # overlapping cues come in time order; a cue repeated back to back (rolling captions) once
    assert text_in_span(cues, 3.0, 6.0, 0.5) == "third line two overlapping cue"


def test_webvtt_and_bad_files(tmp_path):
    vtt = (
        "WEBVTT\n\n00:01.000 --> 00:02.000\n<v Bob>hi there\n\n"
        "00:00:02.500 --> 00:00:03.000 align:start\nsecond\n"
    )
    path = tmp_path / "a.vtt"
    path.write_text(vtt, encoding="utf-8")
    assert read_cues(str(path)) == [Cue(1.0, 2.0, "hi there"), Cue(2.5, 3.0, "second")]
    (tmp_path / "empty.srt").write_text("no cue here at all\n", encoding="utf-8")
    with pytest.raises(SubtitleError, match="no subtitle cue"):
        read_cues(str(tmp_path / "empty.srt"))
    with pytest.raises(SubtitleError, match="no such subtitle file"):
        read_cues(str(tmp_path / "absent.srt"))
    (tmp_path / "latin.srt").write_bytes("1\n00:00:00,000 --> 00:00:01,000\nçà\n".encode("latin-1"))
    with pytest.raises(SubtitleError, match="not utf-8"):
        read_cues(str(tmp_path / "latin.srt"), encoding="utf-8")


def test_a_cue_of_no_duration_counts_where_it_starts():
    cues = [Cue(2.0, 2.0, "flash")]
    assert text_in_span(cues, 1.0, 3.0, 0.5) == "flash" and text_in_span(cues, 2.5, 3.0, 0.5) == ""
