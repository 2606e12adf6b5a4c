"""aux_caption: the retrieval, transformers and OpenAI-compatible VLM backends through the stage."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pyarrow as pa
import pytest
from models.fake_openai import FakeOpenAIServer

from vtcurate.config import AuxCaptionConfig, ClipModelSpec, OpenAIBackend, TransformersBackend
from vtcurate.stages.aux_caption import AuxCaptionStage

TINY = ClipModelSpec(name="vtc-tiny-vit")


def _jpeg(colour: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.full((64, 64, 3), colour, np.uint8)
    img[rng.integers(0, 48) :][:16, :16] = 255 - np.array(colour, np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _table() -> pa.Table:
    red, blue = (30, 30, 200), (200, 30, 30)  # BGR, as cv2 encodes
    frames = [[_jpeg(red, i) for i in range(4)], [_jpeg(blue, 9 + i) for i in range(4)]]
    return pa.table(
        {
            "clip_id": ["a", "b"],
            "caption": ["a red circle moves", "一个蓝色的正方形移动"],
            "lang": ["en", "zh"],
            "frames": frames,
        }
    )


def _stage(cfg: AuxCaptionConfig, work_dir=None) -> AuxCaptionStage:
    stage = AuxCaptionStage(cfg)
    stage.work_dir = work_dir
    return stage


def test_retrieval_composes_phrases_from_the_bank_never_the_clips_own_caption(tmp_path):
    bank = tmp_path / "phrases.txt"
    phrases = ["a red circle moves", "a bright red shape", "a dark background", "a person walking a dog"]
    bank.write_text("\n".join([*phrases, "一个红色的圆", "蓝色的背景"]) + "\n", encoding="utf-8")
    cfg = AuxCaptionConfig(backend="retrieval", clip=TINY, phrase_bank=str(bank), languages=["en", "zh"],
                           frames="all", top_k=2)  # fmt: skip
    stage = _stage(cfg)
    stage.setup()
    out = stage(_table()).to_pylist()
    assert [r["aux_status"] for r in out] == ["ok", "ok"]
    for row in out:
        en = [c for c in row["aux_captions"] if c["lang"] == "en"]
        zh = [c for c in row["aux_captions"] if c["lang"] == "zh"]
        assert [c["frame"] for c in en] == [0, 1, 2, 3] and len(zh) == 4
        for c in en:
            parts = c["text"].split("; ")
            assert len(parts) == 2 and set(parts) <= set(phrases)
            assert row["caption"] not in parts  # a clip's own caption is never its aux caption
        assert all(set(c["text"].split("；")) <= {"一个红色的圆", "蓝色的背景"} for c in zh)
    assert stage.provenance()["random_weights"] is True


def test_retrieval_bank_defaults_to_the_runs_own_captions(tmp_path):
    upstream = tmp_path / "part-00000.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"caption": ["a red circle moves", "a green square", "a blue sky"],
                             "lang": ["en", "en", "en"]}), upstream)  # fmt: skip
    stage = _stage(AuxCaptionConfig(backend="retrieval", clip=TINY, frames="middle", top_k=1))
    stage.inputs = [upstream]
    out = stage(_table().slice(0, 1)).to_pylist()[0]
    assert [c["frame"] for c in out["aux_captions"]] == [2]  # middle of 4 key-frames
    assert out["aux_captions"][0]["text"] in {"a green square", "a blue sky"}


def test_openai_vlm_gets_each_frame_as_an_image_and_outputs_are_validated(tmp_path):
    def responder(request: dict) -> str:
        user = request["messages"][-1]["content"]
        image = next(p for p in user if p["type"] == "image_url")["image_url"]["url"]
        assert image.startswith("data:image/jpeg;base64,")
        jpeg = base64.b64decode(image.split(",", 1)[1])
        colour = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[2, 2]
        if colour[2] > 150:  # red frame (BGR): a chatty reply the validation must refuse
            return "Sure! Here is a description: a red image."
        text = next(p for p in user if p["type"] == "text")["text"]
        return "蓝色的画面。" if "中文" in text else "A blue square on a blue background."

    llm = OpenAIBackend(backend="openai", base_url="http://unused", model="fake-vlm", max_retries=0)
    with FakeOpenAIServer(responder) as server:
        llm = llm.model_copy(update={"base_url": server.base_url})
        cfg = AuxCaptionConfig(backend="openai", llm=llm, languages=["en", "zh"], frames="middle", attempts=2)
        stage = _stage(cfg, tmp_path / "cache")
        out = stage(_table()).to_pylist()
        n = server.request_count
        again = _stage(cfg, tmp_path / "cache")(_table()).to_pylist()
        assert server.request_count == n  # cached by (frame, caption, language, model, prompt)
    red, blue = out
    assert red["aux_captions"] == [] and red["aux_status"] == "failed:2:preamble"
    assert blue["aux_status"] == "ok"
    assert {c["lang"]: c["text"] for c in blue["aux_captions"]} == {
        "en": "A blue square on a blue background.",
        "zh": "蓝色的画面。",
    }
    assert again == out
    assert n == 2 * 2 + 2  # red: 2 attempts x 2 languages; blue: 1 x 2


@pytest.fixture(scope="module")
def tiny_captioner(tmp_path_factory):
    from tiny_models import save_random_captioner

    return save_random_captioner(tmp_path_factory.mktemp("captioner"))


def test_transformers_captioner_directory_through_the_stage(tiny_captioner):
    cfg = AuxCaptionConfig(
        backend="transformers", llm=TransformersBackend(model=str(tiny_captioner), max_tokens=8), frames="all"
    )
    stage = _stage(cfg)
    stage.setup()
    out = stage(_table()).to_pylist()
    stage.teardown()
    assert len(out) == 2
    for row in out:
        # random weights say nothing useful, but every frame was captioned or its failure counted
        done = len(row["aux_captions"])
        failed = int(row["aux_status"].split(":")[1]) if row["aux_status"] != "ok" else 0
        assert done + failed == 4
    assert stage._generators["en"].provenance()["random_weights"] is True
