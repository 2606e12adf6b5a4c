"""Timed text: subtitle files (SRT, WebVTT) read with pysubs2 in whatever encoding they come in,
and the text of the cues that fall inside a clip.

Subtitle files from the web are messy: GBK or Big5 Chinese, a byte-order mark, a cue whose timing
line is broken (pysubs2 then folds that block into the previous cue's text), overlapping and
repeated cues (rolling captions).  None of these is fatal: the text of a cue ends at its first
blank line, numbering and timing debris is dropped, and a cue repeated back to back counts once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vtcurate.text.script import script_stats

# what a folded-in broken block leaves in a cue's text
_DEBRIS = re.compile(r"^\s*(\d+|.*-->.*)\s*$")


class SubtitleError(Exception):
    """A subtitle file that cannot be read or holds no cue: `detail` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str


def decode_text(data: bytes, encoding: str | None = None) -> str:
    """Subtitle bytes as text: the given encoding, else UTF-8 (with or without BOM), else the
    encoding charset-normalizer finds most likely (GBK, Big5, Shift-JIS, cp1252, ...)."""
    if encoding:
        try:
            return data.decode(encoding)
        except (LookupError, UnicodeDecodeError) as err:
            raise SubtitleError(f"not {encoding}: {err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise SubtitleError("text encoding not recognised")
    return str(best)


def _clean(text: str) -> str:
    first_block = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0]
    lines = [ln.strip() for ln in first_block.splitlines() if not _DEBRIS.match(ln)]
    return " ".join(ln for ln in lines if ln)


def parse_cues(text: str, fmt: str | None = None) -> list[Cue]:
    """Cues of an SRT or WebVTT document (`fmt`: "srt", "vtt", or None to let pysubs2 tell)."""
    import pysubs2

    try:
        subs = pysubs2.SSAFile.from_string(text, format_=fmt)
    except Exception as err:  # noqa: BLE001 - pysubs2 raises several kinds on bad files
        raise SubtitleError(f"not a subtitle file: {type(err).__name__}: {err}") from None
    cues = []
    for event in subs:
        if event.is_comment:
            continue
        cleaned = _clean(event.plaintext)
        if cleaned and event.end >= event.start:
            cues.append(Cue(event.start / 1000, event.end / 1000, cleaned))
    return sorted(cues, key=lambda c: (c.start, c.end))


def subtitle_format(uri: str) -> str | None:
    name = uri.lower().split("?")[0]
    return "vtt" if name.endswith(".vtt") else "srt" if name.endswith(".srt") else None


def read_cues(uri: str, encoding: str | None = None) -> list[Cue]:
    """The cues of a subtitle file (local path or fsspec URL)."""
    import fsspec

    try:
        with fsspec.open(uri, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise SubtitleError(f"no such subtitle file: {uri}") from None
    except Exception as err:  # noqa: BLE001 - any transport error is this row's reason
        raise SubtitleError(f"{uri}: {type(err).__name__}: {err}") from None
    cues = parse_cues(decode_text(data, encoding), subtitle_format(uri))
    if not cues:
        raise SubtitleError(f"{uri}: no subtitle cue with text")
    return cues


def _join(parts: list[str]) -> str:
    """Texts in order; Chinese next to Chinese joined with a comma, anything else with a space."""
    out = ""
    for part in parts:
        if out:
            cjk = script_stats(out[-1]).han_ratio > 0 and script_stats(part[0]).han_ratio > 0
            out += "，" if cjk else " "
        out += part
    return out


def text_in_span(cues: list[Cue], start: float, end: float, min_overlap: float) -> str:
    """The text of the cues that lie inside [start, end) for at least `min_overlap` of their own
    duration (a cue of no duration: its start inside), in time order, repeats counted once."""
    parts: list[str] = []
    for cue in cues:
        length = cue.end - cue.start
        inside = min(end, cue.end) - max(start, cue.start)
        hit = start <= cue.start < end if length <= 0 else inside >= min_overlap * length
        if hit and (not parts or parts[-1] != cue.text):
            parts.append(cue.text)
    return _join(parts)
