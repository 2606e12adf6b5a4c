"""VideoCLIP's temporal modules, proxy tokens, ACG and MAC masking, on the tiny random backbone."""

import pytest
import torch

from vtcurate.config import ClipModelSpec, VideoModelConfig
from vtcurate.models.video_clip import VideoCLIP
from vtcurate.train.data import drop_tokens

T = 8


def _model(**kw) -> VideoCLIP:
    torch.manual_seed(0)
    return VideoCLIP(VideoModelConfig(clip=ClipModelSpec(name="vtc-tiny-vit"), **kw)).eval()


def _frames(b: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(b, T, 3, 112, 112)


@pytest.mark.parametrize(
    "kw", [{"temporal": "mean"}, {"temporal": "transformer"}, {"temporal": "stan"}, {"proxy_tokens": 3}]
)
def test_video_embeddings_are_normalised(kw):
    model = _model(**kw)
    with torch.no_grad():
        video, frame_mean = model.encode_video(_frames())
    assert video.shape == (2, model.dim) and frame_mean.shape == (2, model.dim)
    torch.testing.assert_close(video.norm(dim=-1), torch.ones(2))


def _reversed_differs(model: VideoCLIP) -> bool:
    frames = _frames()
    with torch.no_grad():
        forward, _ = model.encode_video(frames)
        backward, _ = model.encode_video(frames.flip(1))
    return not torch.allclose(forward, backward, atol=1e-5)


def test_only_the_temporal_modules_see_frame_order():
    assert not _reversed_differs(_model(temporal="mean"))
    assert _reversed_differs(_model(temporal="transformer"))
    stan = _model(temporal="stan")
    torch.nn.init.normal_(stan.temporal.proj.weight, std=0.02)  # it starts at zero, as plain CLIP
    assert _reversed_differs(stan)


def test_proxy_mask_keeps_frames_apart():
    model = _model(proxy_tokens=2)
    mask = model._proxy_mask(frames=3, tokens=4, device="cpu")
    m = 2
    assert mask.shape == (m + 12, m + 12)
    assert torch.all(mask[:m] == 0)  # proxies see everything
    assert torch.all(mask[m:, :m] == 0)  # every frame token sees the proxies
    frame0, frame1 = slice(m, m + 4), slice(m + 4, m + 8)
    assert torch.all(mask[frame0, frame0] == 0)
    assert torch.all(torch.isinf(mask[frame0, frame1]))


def test_proxy_tokens_start_from_clip_cls():
    model = _model(proxy_tokens=3)
    visual = model.clip.visual
    torch.testing.assert_close(model.proxies[0], visual.class_embedding + visual.positional_embedding[0])
    assert not torch.allclose(model.proxies[1], model.proxies[0])


def test_frames_do_not_mix_without_proxies():
    model = _model(temporal="mean")
    frames = _frames(1)
    changed = frames.clone()
    changed[0, 3] = torch.randn_like(changed[0, 3])
    with torch.no_grad():
        a, _ = model.encode_frames(frames)
        b, _ = model.encode_frames(changed)
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-5) and not torch.allclose(a[0, 3], b[0, 3])


def test_acg_starts_as_the_plain_model_and_learns_a_gate():
    model = _model(temporal="mean", acg=True)
    frames = _frames()
    aux_mask = torch.tensor([[True, True], [False, False]])
    aux = torch.nn.functional.normalize(torch.randn(2, 2, model.dim), dim=-1) * aux_mask[..., None]
    with torch.no_grad():
        plain, _ = model.encode_video(frames)
        guided, _ = model.encode_video(frames, aux, aux_mask)
        torch.testing.assert_close(plain, guided)  # gate 0 at init
        model.acg.gate.fill_(1.0)
        guided, _ = model.encode_video(frames, aux, aux_mask)
    assert not torch.allclose(plain[0], guided[0])  # the clip with captions is refined
    torch.testing.assert_close(plain[1], guided[1])  # the clip without is left as it was


def test_forward_adds_the_auxiliary_loss():
    from open_clip.loss import ClipLoss

    model = _model(temporal="transformer", acg=True, aux_loss_weight=0.5).train()
    tokens = model.tokenizer(["a red circle", "a blue square", "a green triangle"])
    aux_tokens = model.tokenizer(["red", "", "blue", "", "green", ""]).reshape(3, 2, -1)
    batch = {
        "frames": _frames(3),
        "tokens": tokens,
        "aux_tokens": aux_tokens,
        "aux_mask": torch.tensor([[True, False]] * 3),
    }
    out = model(batch, ClipLoss())
    assert set(out) == {"loss", "clip_loss", "aux_loss"}
    torch.testing.assert_close(out["loss"].detach(), out["clip_loss"] + 0.5 * out["aux_loss"])
    out["loss"].backward()
    assert model.acg.gate.grad is not None and model.temporal.pos.grad is not None


def test_patch_drop_removes_tokens_in_training_only():
    model = _model(patch_drop=0.5)
    images = _frames(1)[0]
    model.train()
    assert model.clip.visual._embeds(images).shape[1] == 1 + 49 // 2  # [CLS] + half of 7x7 patches
    model.eval()
    assert model.clip.visual._embeds(images).shape[1] == 1 + 49


def test_drop_tokens_keeps_ends_and_order():
    tokens = torch.tensor([[49406, 10, 11, 12, 13, 49407, 0, 0], [49406, 20, 49407, 0, 0, 0, 0, 0]])
    out = drop_tokens(tokens, 0.5, torch.Generator().manual_seed(0))
    first = out[0][out[0] != 0].tolist()
    assert first[0] == 49406 and first[-1] == 49407 and len(first) == 4
    assert first[1:-1] == sorted(first[1:-1]) and set(first[1:-1]) <= {10, 11, 12, 13}
    assert out[1].tolist() == tokens[1].tolist()  # one content token: nothing to drop


def test_frame_index_spreads_over_the_clip():
    from vtcurate.models.video_clip import frame_index

    assert frame_index(8, 4) == [0, 2, 5, 7]
    assert frame_index(8, 2) == [0, 7] and frame_index(8, 1) == [3]
    assert frame_index(8, 8) == frame_index(8, 12) == list(range(8))


def test_a_model_of_fewer_frames_chooses_them_from_all():
    model = _model(temporal="transformer", num_frames=4)
    frames = _frames()
    with torch.no_grad():
        given_all, _ = model.encode_video(frames)
        given_chosen, _ = model.encode_video(frames[:, [0, 2, 5, 7]])
        given_others, _ = model.encode_video(frames[:, [1, 3, 4, 6]])
    torch.testing.assert_close(given_all, given_chosen)
    assert not torch.allclose(given_all, given_others, atol=1e-4)


def test_text_tower_gives_the_same_embeddings_without_trailing_padding():
    model = _model()
    tokens = model.tokenizer(["a red circle moves from left to right", "一个红色的圆从左向右移动", ""])
    assert tokens.shape[1] == 64  # the context length: mostly padding
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), model.clip.encode_text(tokens, normalize=True))
