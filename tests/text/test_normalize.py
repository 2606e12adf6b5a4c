import pytest

from vtcurate.text.normalize import normalize_caption
from vtcurate.text.script import caption_length, script_stats


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("  a  dog\truns \n", "a dog runs"),
        ("Ｆｕｌｌｗｉｄｔｈ text", "Fullwidth text"),  # NFKC
        ("a dog https://example.com/x?y=1 runs www.foo.org", "a dog runs"),
        ("<b>a dog</b> &amp; a cat", "a dog & a cat"),
        ("<script>alert(1)</script>a dog runs", "a dog runs"),
        ("a dog runs 🐶🔥", "a dog runs"),
        ("a\u200fdog\u200e runs\x00", "a dog runs"),
        ("Aerial view of city stock footage 4K HD 1080p - 123456789", "Aerial view of city"),
        ("Royalty-free Shutterstock clip id 98765432: sunset", "sunset"),
        ("城市夜景 4K高清视频素材", "城市夜景"),
        ("temperature < 5 degrees and wind > 10 km", "temperature < 5 degrees and wind > 10 km"),
        ("a 4k tv on the wall, playing with hd cables", "a 4k tv on the wall, playing with hd cables"),
        ("a dog <!-- hidden --> runs", "a dog runs"),
        ("城市夜景 4K高清視頻素材 ⌚", "城市夜景"),
        ("a tutorial on the <style> element and CSS layout", "a tutorial on the element and CSS layout"),
        ("a crowd of 100000 people cheering", "a crowd of 100000 people cheering"),
        ("slow motion at 120 fps of a bird", "slow motion at 120 fps of a bird"),
        ("bird in flight - 60fps 1234567", "bird in flight"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize(raw, clean):
    assert normalize_caption(raw) == clean


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("\x1b[31mred\x1b[0m car", "red car"),  # CSI colour codes go whole, not just their ESC
        ("\x1b[1;38;5;208morange\x1b[m cat", "orange cat"),
        ("\x1b[2J\x1b[Ha dog runs", "a dog runs"),  # cursor moves
        ("\x9b1mbold\x9b0m text", "bold text"),  # one-byte CSI
        ("\x1b]0;window title\x07a dog runs", "a dog runs"),  # OSC, BEL-terminated
        ("\x1b]8;;https://x.org\x1b\\a link\x1b]8;;\x1b\\ to a dog", "a link to a dog"),  # hyperlink
        ("\x1b(Ba dog runs", "a dog runs"),  # charset selection
        ("&#27;[31mred&#27;[0m car", "red car"),  # entity-escaped ESC
        # ESC already lost upstream: colour codes go when the caption also has a reset code
        ("[31mred[0m car", "red car"),
        ("[1;32mOK[0m a dog runs", "OK a dog runs"),
        ("a [3m] pole and a [5m wide] road", "a [3m] pole and a [5m wide] road"),  # no reset: words
        ("a [m] tag", "a [m] tag"),
    ],
)
def test_terminal_escapes_are_removed_whole(raw, clean):
    assert normalize_caption(raw) == clean


def test_extra_boilerplate_patterns():
    assert (
        normalize_caption("sunset over sea editorial use only", ("editorial use only",)) == "sunset over sea"
    )


def test_script_stats_and_lengths():
    mixed = script_stats("这个视频展示了 how to cook pasta 的步骤")
    assert (mixed.han, mixed.words) == (10, 4) and mixed.han_ratio > 0.5
    assert script_stats("a trip to Beijing 北京").han_ratio < 0.5
    assert script_stats("赤い丸").kana == 1
    assert caption_length("a dog's toy, re-used twice.", "en") == 5
    assert caption_length("一只狗，在跑。", "zh") == 5
