from pathlib import Path

import pytest

from vtcurate.config import ConfigError, load_config, validate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.yaml", "default.yaml"])
def test_shipped_configs_validate(name):
    config = load_config(CONFIGS / name)
    assert config.stages[0] == "ingest"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'langid\.min_confidnce'"):
        validate({"langid": {"min_confidnce": {"en": 0.5}}})


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"keyframes\.num_frames"):
        validate({"keyframes": {"num_frames": 0}})
    with pytest.raises(ConfigError, match=r"keyframes\.mode"):
        validate({"keyframes": {"mode": "everything"}})


def test_per_language_keys_must_cover_languages():
    with pytest.raises(ConfigError, match="min_confidence has no value"):
        validate({"langid": {"languages": ["en", "zh", "de"]}})


def test_stages_must_be_in_flow_order():
    with pytest.raises(ConfigError, match="flow order"):
        validate({"stages": ["langid", "ingest"]})
    with pytest.raises(ConfigError, match="unknown stage"):
        validate({"stages": ["ingest", "transcode"]})


def test_set_overrides_are_parsed_and_validated():
    config = load_config(
        CONFIGS / "demo.yaml",
        ["langid.min_confidence.en=0.7", "keyframes.mode=iframe", "shard.max_samples=5"],
    )
    assert config.langid.min_confidence == {"en": 0.7, "zh": 0.5}
    assert config.keyframes.mode == "iframe"
    assert config.shard.max_samples == 5
    with pytest.raises(ConfigError, match="keyframes.short_side"):
        load_config(CONFIGS / "demo.yaml", ["keyframes.short_side=tiny"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(CONFIGS / "demo.yaml", ["keyframes.short_side"])


def test_split_bounds_are_checked():
    with pytest.raises(ConfigError, match="min_clip_s must not exceed max_clip_s"):
        validate({"split": {"min_clip_s": 30, "max_clip_s": 20}})
    with pytest.raises(ConfigError, match="min_video_s must not exceed max_clip_s"):
        validate({"split": {"min_video_s": 30, "max_clip_s": 20}})
    with pytest.raises(ConfigError, match=r"split\.method"):
        validate({"split": {"method": "shotdetect"}})
