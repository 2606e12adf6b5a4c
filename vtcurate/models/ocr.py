"""PP-OCRv4 text detection and recognition (Chinese + English) through rapidocr-onnxruntime.

The wheel ships the ONNX models (det, cls, rec: about 15 MB), so this runs offline on real weights.
onnxruntime runs on the CPU, or on CUDA where its CUDA provider is installed (onnxruntime-gpu).

Two choices differ from rapidocr's defaults: the detector sees the image at its own size (capped at
`MAX_SIDE`) instead of having its short side scaled to 736 px, so the caller decides the resolution
OCR works at (the text_overlay stage's `ocr_short_side`) and a small frame is not inflated at a
cost; and the angle classifier is off (burned-in text is upright).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import resources

import numpy as np

from vtcurate.checksums import file_sha256

PACKAGE = "rapidocr_onnxruntime"
MODEL_FILES = {
    "det": "models/ch_PP-OCRv4_det_infer.onnx",
    "rec": "models/ch_PP-OCRv4_rec_infer.onnx",
    "cls": "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
}
CUDA_PROVIDER = "CUDAExecutionProvider"
MAX_SIDE = 2000  # longest side the detector sees (rapidocr's own cap); larger images are scaled down


@dataclass(frozen=True)
class TextBox:
    quad: list[tuple[float, float]]  # four corners, pixels of the image read, clockwise from top-left
    text: str
    score: float  # recognition confidence


def cuda_available() -> bool:
    """onnxruntime offers its CUDA provider (onnxruntime-gpu) and torch sees a CUDA device."""
    import onnxruntime

    if CUDA_PROVIDER not in onnxruntime.get_available_providers():
        return False
    from vtcurate.models.devices import wants_gpu

    return wants_gpu("auto")


def wants_gpu(device: str) -> bool:
    """Whether an OCR worker on `device` (auto, cpu, cuda) needs a GPU from the scheduler."""
    return device == "cuda" or (device == "auto" and cuda_available())


def ocr_problem(device: str) -> str | None:
    """What keeps OCR from loading here, without loading it: the package, its models, CUDA."""
    import importlib.util

    if importlib.util.find_spec(PACKAGE) is None:
        return f"{PACKAGE} is not installed (pip install --no-deps {PACKAGE}==1.4.4; see setup.cfg)"
    root = resources.files(PACKAGE)
    missing = [f for f in MODEL_FILES.values() if not root.joinpath(f).is_file()]
    if missing:
        return f"{PACKAGE} lacks its model files {missing}"
    if device == "cuda":
        import onnxruntime

        if CUDA_PROVIDER not in onnxruntime.get_available_providers():
            return f"device cuda asked for, but onnxruntime has no {CUDA_PROVIDER} (install onnxruntime-gpu)"
    return None


class OCR:
    """One PP-OCRv4 engine; cheap to construct, the ONNX sessions load on first use (`load()`)."""

    def __init__(self, threads: int = 1, device: str = "auto", min_score: float = 0.5) -> None:
        self.threads = threads
        self.device = device
        self.min_score = min_score

    @cached_property
    def use_cuda(self) -> bool:
        return self.device == "cuda" or (self.device == "auto" and cuda_available())

    @cached_property
    def _engine(self):
        from rapidocr_onnxruntime import RapidOCR

        return RapidOCR(
            intra_op_num_threads=self.threads,
            inter_op_num_threads=1,
            det_use_cuda=self.use_cuda,
            rec_use_cuda=self.use_cuda,
            det_limit_type="max",
            det_limit_side_len=MAX_SIDE,
            max_side_len=MAX_SIDE,
            use_cls=False,
            text_score=self.min_score,
        )

    def load(self) -> None:
        self._engine  # noqa: B018 - loads the ONNX sessions

    def read(self, image: np.ndarray) -> list[TextBox]:
        """Text boxes of an RGB image, top to bottom, with their recognised text (confidence at
        least `min_score`)."""
        result, _ = self._engine(np.ascontiguousarray(image[:, :, ::-1]), use_cls=False)  # it reads BGR
        boxes = []
        for quad, text, score in result or []:
            if text.strip() and float(score) >= self.min_score:
                boxes.append(TextBox([(float(x), float(y)) for x, y in quad], text.strip(), float(score)))
        return boxes

    def provenance(self) -> dict:
        from importlib.metadata import version

        root = resources.files(PACKAGE)
        return {
            "model": "PP-OCRv4 det + rec (Chinese + English), ONNX",
            "package": f"{PACKAGE}=={version(PACKAGE)}",
            "onnxruntime": version("onnxruntime"),
            "provider": CUDA_PROVIDER if self.use_cuda else "CPUExecutionProvider",
            "sha256": {k: file_sha256(str(root.joinpath(f))) for k, f in MODEL_FILES.items() if k != "cls"},
            "random_weights": False,
        }


_LOADED: dict[tuple, OCR] = {}


def load_ocr(threads: int = 1, device: str = "auto", min_score: float = 0.5) -> OCR:
    """The engine for these settings, loaded once per process (stages of one worker share it)."""
    key = (threads, device, min_score)
    if key not in _LOADED:
        engine = OCR(threads, device, min_score)
        engine.load()
        _LOADED[key] = engine
    return _LOADED[key]
