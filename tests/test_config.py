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


def test_a_config_without_prompt_keys_uses_vtcurates_own(tmp_path):
    """A config of one's own, in another folder, naming no prompt file: the bundled prompts
    (package data) are used, not a prompts/ folder beside the config."""
    from vtcurate.stages.rewrite import RewriteStage

    (tmp_path / "mine.yaml").write_text("name: mine\nrewrite: {languages: [en]}\n")
    config = load_config(tmp_path / "mine.yaml")
    assert config.rewrite.prompts is None
    prompts = RewriteStage(config.rewrite)._prompts
    assert {"en", "zh"} <= set(prompts) and "{caption}" in prompts["en"].user


def test_every_file_a_stage_reads_is_checked_at_load(tmp_path):
    (tmp_path / "mine.yaml").write_text("name: mine\nrewrite: {prompts: my-prompts.yaml}\n"
                                        "aux_caption: {phrase_bank: /nowhere/phrases.txt}\n")  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "mine.yaml")
    assert f"rewrite.prompts: file not found: {tmp_path / 'my-prompts.yaml'}" in str(err.value)
    assert "aux_caption.phrase_bank: file not found: /nowhere/phrases.txt" in str(err.value)
    # a stage that is not in the flow reads nothing
    config = load_config(tmp_path / "mine.yaml", ["stages=[ingest, langid]"])
    assert config.rewrite.prompts == str(tmp_path / "my-prompts.yaml")
