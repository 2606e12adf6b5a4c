"""Tiny randomly initialised transformers models for tests: a chat LM and image captioners (a few
layers, width 32, 32x32 images, a word-level en/zh tokenizer), written with `save_pretrained` plus
vtcurate's `RANDOM_MARKER`, so they load through the same code as real checkpoints and report
`random_weights: True`.  Only tests use them (tests/ is on pytest's pythonpath:
`from tiny_models import save_random_lm`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtcurate.models.hf_common import RANDOM_MARKER

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
_EN_WORDS = (
    "a an the of and in on at to with is are was it this that his her their its for from by as "
    "man woman person people child boy girl dog cat bird horse car bus train bike boat plane street road "
    "city building house room kitchen table chair bed window door tree grass water sea river beach sky "
    "sun snow rain mountain field park food plate cup phone computer book ball game video clip scene "
    "camera view shot close up small large big red blue green white black yellow young old two three "
    "sitting standing walking running riding playing holding looking eating talking wearing shows "
    "picture photo image rewrite caption describe short long sentence system user assistant you helpful"
)
_EN = _EN_WORDS.split()
_ZH = list(
    "一个两三人男女孩子狗猫鸟马车船飞机街道路城市房间桌椅床窗门树草水海河沙滩天空太阳雪雨山田公园食物杯手"
    "书球游戏视频镜头场景小大红蓝绿白黑黄年轻老坐站走跑骑玩拿看吃说穿在的了是和有这那上下里中图片照描述简短"
)
_PUNCT = list(".,!?;:'\"()-/，。！？、：；")
# Larger than the usual 0.02, so a random model's output visibly depends on its input (the tests
# check that different images get different captions, which catches requests mixed up in a batch).
RANDOM_INIT_RANGE = 0.5
_CJK = r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"
_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer(*, cls_sep: bool = False, **special: str) -> Any:
    """A word-level en/zh tokenizer (~300 entries: English words, Chinese characters, punctuation),
    built locally with `tokenizers`.  `cls_sep` adds BERT-style [CLS] ... [SEP] around each text."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys(_SPECIALS + _EN + _ZH + _PUNCT))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Split(Regex(_CJK), behavior="isolated")]
    )
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIALS])
    if cls_sep:
        tk.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", model_max_length=64, **special
    )


def _quiet_specials(model: Any, tok: Any, eos: int) -> None:
    """Keep a random model from emitting special tokens, which decode to nothing, or an EOS at once,
    so its "captions" and "rewrites" are never empty (a real checkpoint has learnt this)."""
    model.generation_config.suppress_tokens = [i for i in tok.convert_tokens_to_ids(_SPECIALS) if i != eos]
    model.generation_config.min_new_tokens = 2  # nor an empty text from an immediate EOS


def _write_marker(out: Path, kind: str, seed: int) -> None:
    marker = {"random_weights": True, "kind": kind, "seed": seed, "by": "tests/tiny_models.py"}
    (out / RANDOM_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def save_random_lm(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A tiny random Llama chat LM (2 layers, width 32, context 256, ChatML template) in `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(bos_token="<|im_start|>", eos_token="<|im_end|>")
    tok.chat_template = _CHATML
    tok.model_max_length = 256
    v = tok.convert_tokens_to_ids
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=RANDOM_INIT_RANGE,
        bos_token_id=v("<|im_start|>"),
        eos_token_id=v("<|im_end|>"),
        pad_token_id=v("[PAD]"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.update(eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    _quiet_specials(model, tok, config.eos_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _write_marker(out, "lm", seed)
    return out


def save_random_captioner(
    out_dir: str | Path, *, arch: str = "vision-encoder-decoder", seed: int = 0
) -> Path:
    """A tiny random captioner (32x32 images, 2+2 layers, width 32) in `out_dir`.

    `arch`: "vision-encoder-decoder" (ViT encoder + GPT-2 decoder, like nlpconnect/vit-gpt2), "blip"
    or "git"; each is saved the way the real checkpoints are, so it loads through the same code."""
    import torch
    import transformers as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    width = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    width["initializer_range"] = RANDOM_INIT_RANGE
    vision = {**width, "image_size": 32, "patch_size": 8}
    square = {"height": 32, "width": 32}
    if arch == "vision-encoder-decoder":
        tok = tiny_tokenizer(bos_token="<s>", eos_token="</s>")
        bos, eos, pad = tok.convert_tokens_to_ids(["<s>", "</s>", "[PAD]"])
        ids = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}
        decoder = tf.GPT2Config(
            vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64,
            initializer_range=RANDOM_INIT_RANGE, **ids,
        )  # fmt: skip
        config = tf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(tf.ViTConfig(**vision), decoder)
        ids["decoder_start_token_id"] = bos
        config.update(ids)
        model = tf.VisionEncoderDecoderModel(config)
        processor = tf.ViTImageProcessor(size=square)
    elif arch == "blip":
        tok = tiny_tokenizer(cls_sep=True, cls_token="[CLS]", sep_token="[SEP]", bos_token="<s>")
        bos, sep, pad = tok.convert_tokens_to_ids(["<s>", "[SEP]", "[PAD]"])
        ids = {"bos_token_id": bos, "eos_token_id": sep, "pad_token_id": pad}
        text = {**width, "vocab_size": len(tok), "max_position_embeddings": 64, "sep_token_id": sep, **ids}
        model = tf.BlipForConditionalGeneration(
            tf.BlipConfig(text_config=text, vision_config=vision, projection_dim=32)
        )
        processor = tf.BlipImageProcessor(size=square)
    elif arch == "git":
        tok = tiny_tokenizer(cls_sep=True, cls_token="[CLS]", sep_token="[SEP]")
        cls, sep, pad = tok.convert_tokens_to_ids(["[CLS]", "[SEP]", "[PAD]"])
        ids = {"bos_token_id": cls, "eos_token_id": sep, "pad_token_id": pad}
        config = tf.GitConfig(
            vision_config=vision, vocab_size=len(tok), max_position_embeddings=64, **width, **ids
        )
        model = tf.GitForCausalLM(config)
        processor = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=square)
    else:
        raise ValueError(f"arch must be vision-encoder-decoder, blip or git, got {arch!r}")
    model.generation_config.update(**ids)
    _quiet_specials(model, tok, ids["eos_token_id"])
    model.save_pretrained(out)
    tok.save_pretrained(out)
    processor.save_pretrained(out)
    _write_marker(out, f"captioner:{arch}", seed)
    return out
