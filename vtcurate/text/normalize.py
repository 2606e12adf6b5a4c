"""Caption normalisation: the text a model should see, free of markup and web-video boilerplate."""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

# only a closed block: "a tutorial on the <style> element" keeps its words
_SCRIPT_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
# a tag starts with a letter or `/`: "temperature < 5 and wind > 10" is not markup
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]{0,500}>", re.DOTALL)
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U0001f1e6-\U0001f1ff\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d\u20e3]"
)
# Stock-footage boilerplate seen in web alt-text (WebVid and similar): vendor tags, resolution and
# frame-rate tags, and clip ids.  Matched case-insensitively as whole words, except the short
# resolution tags, which only count in capitals ("4K", "HD"), so "a 4k tv" or "hd cables" survive.
BOILERPLATE = (
    r"\bstock (?:footage|video|clip|photo)s?\b",
    r"\broyalty[- ]free\b",
    r"\b(?:shutterstock|pond5|istock|getty ?images|storyblocks|videoblocks|adobe stock)\b",
    r"(?-i:\b(?:4K|8K|UHD|Ultra HD|ULTRA HD|Full HD|FULL HD|FullHD|HD|HDR)\b)",
    r"\b(?:1080p|720p|2160p|4320p)\b",
    r"\b(?:clip|video|footage|id|item)\s*(?:id|no\.?|number)?\s*[:#]?\s*\d{5,}\b",
    r"(?:4K|8K|高清|超清|蓝光|藍光)*(?:视频|視頻)?素材",
)
# Tags that are words elsewhere ("120 fps of a bird", "100000 people"): removed only at either end
# of the caption, where stock sites append them.
_EDGE_TAG = r"(?:\d{6,}|\d{2,3} ?fps)"
_EDGE_TAGS = re.compile(
    rf"^(?:[\s\-–—|,;:/#]*{_EDGE_TAG}\b)+|(?:\b{_EDGE_TAG}[\s\-–—|,;:/#]*)+$", re.IGNORECASE
)
# Terminal escapes, removed whole: CSI (colours, cursor moves: ESC [ params final), OSC (titles,
# hyperlinks: ESC ] ... BEL or ESC \\, whose link text stays) and other two-byte escapes; also their
# one-byte C1 forms.  Removing only the ESC (a control character) would leave "[31m" in the text.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"  # OSC, terminated
    r"|\x1b[!-/]*[0-~]"  # other escapes: ESC ( B, ESC 7, ESC c, ... (not ESC + space: a stray ESC)
)
# Colour codes whose ESC was lost upstream ("[31mred[0m"): removed only next to a reset code
# ("[0m" / "[m"), which coloured text ends with, so "a [3m] pole" or "[5m wide]" keep their words.
_BARE_SGR = re.compile(r"\[(?:\d{1,3}(?:;\d{1,3})*)?m(?!\])")
_BARE_RESET = re.compile(r"\[0*m(?!\])")
_SPACE = re.compile(r"\s+")
_EDGE = " \t-–—|,;:/\\·•"


def _is_control(ch: str) -> bool:
    # Cc (controls), Cf (format: RTL/LTR marks, zero-width), Co/Cn (private, unassigned)
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn") and ch not in "\t\n\r"


def strip_ansi(text: str) -> str:
    """Terminal escape sequences removed whole, and ESC-less colour codes beside a reset code."""
    text = _ANSI.sub("", text)
    if _BARE_RESET.search(text):
        text = _BARE_SGR.sub("", text)
    return text


@lru_cache(maxsize=32)
def _boilerplate_re(extra: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in BOILERPLATE + extra), re.IGNORECASE)


def normalize_caption(text: str | None, extra_boilerplate: tuple[str, ...] = ()) -> str:
    """NFKC, markup, terminal escapes, URLs, emoji, control characters and stock boilerplate
    removed; spaces collapsed."""
    if not text:
        return ""
    text = _SCRIPT_BLOCK.sub(" ", text)
    text = strip_ansi(html.unescape(_TAG.sub(" ", text)))  # after unescape: "&#27;[31m" too
    text = _TAG.sub(" ", text)  # tags that were entity-escaped in the source
    text = unicodedata.normalize("NFKC", text)
    text = "".join(" " if _is_control(ch) else ch for ch in text)
    text = _URL.sub(" ", text)
    text = _EMOJI.sub(" ", text)
    text = _boilerplate_re(tuple(extra_boilerplate)).sub(" ", text)
    text = _SPACE.sub(" ", text).strip(_EDGE)
    text = _EDGE_TAGS.sub(" ", text)
    # boilerplate removal leaves separators such as " - " behind; trim them and empty brackets
    text = re.sub(r"\(\s*\)|\[\s*\]|（\s*）", " ", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return _SPACE.sub(" ", text).strip(_EDGE).strip()
