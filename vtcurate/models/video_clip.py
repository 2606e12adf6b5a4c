"""VideoCLIP: an open_clip image-text backbone adapted to video for text-video retrieval.

Frames go through CLIP's own vision tower one by one (or jointly, with CLIP-ViP proxy tokens) and a
temporal module turns the T frame embeddings into one video embedding:

- `mean`: the mean of the frame embeddings (CLIP4Clip's mean pooling): no notion of order.
- `transformer`: a temporal transformer with learned frame positions over the frame embeddings,
  added back to them (CLIP4Clip's seqTransf): it can tell "left to right" from "right to left".
- `stan`: a simplification of Mug-STAN's spatial-temporal auxiliary network: the [CLS] tokens of
  the last `temporal_layers` vision layers feed a branch of temporal attention blocks, one per
  tapped layer, each adding that layer's [CLS] to the branch state; the branch output is projected
  and added to each frame's embedding.  (STAN's spatial half, the patch tokens of the branch, is
  left out: on 8 frames the temporal half is what carries order.)

Options, as in the papers they come from:
- proxy tokens (CLIP-ViP): M learnable tokens, the first initialised from CLIP's [CLS], prepended to
  the frame tokens of the whole clip; patch tokens attend to the proxies and their own frame only,
  proxies attend to everything, and the video embedding is their mean.
- ACG (M2-RAAP's auxiliary-caption guidance): auxiliary captions of the key-frames, embedded by the
  text tower, refine the video embedding through a gated cross-attention (gate starts at 0, so
  training starts from the plain model), and an auxiliary contrastive loss ties the frames' mean
  embedding to the mean of the clip's auxiliary captions (CLIP-ViP's omnisource loss, reduced to
  the one extra source we have).
- MAC masking: a share of patch tokens (open_clip's PatchDropout) and of caption tokens is dropped
  before the encoders during training, cutting their FLOPs.

The model sees `num_frames` of a clip's key-frames, evenly spaced with the first and last included
(`frame_index`), whatever number it is given: the loader decodes only those, and an evaluation may
pass all of them.  Captions are cut after their longest one's end token before the text tower: its
attention is causal and it pools at the end token, so trailing padding cannot change an embedding.

Loss: symmetric InfoNCE with CLIP's learnable temperature (open_clip's ClipLoss, which also gathers
features across DDP ranks), plus `aux_loss_weight` times the auxiliary loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtcurate.config import VideoModelConfig
from vtcurate.models.clip import create_clip


def frame_index(total: int, n: int) -> list[int]:
    """Indices of n of `total` frames, evenly spaced, first and last included (all when n >= total),
    e.g. 0, 2, 5, 7 of 8."""
    if n >= total:
        return list(range(total))
    if n == 1:
        return [(total - 1) // 2]
    return [round(i * (total - 1) / (n - 1)) for i in range(n)]


def _heads(width: int) -> int:
    return max(1, width // 64)


class TemporalTransformer(nn.Module):
    """Self-attention over the T frame embeddings, with learned positions, added back residually."""

    def __init__(self, dim: int, layers: int, max_frames: int = 32) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(max_frames, dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, _heads(dim), 4 * dim, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # B x T x D -> B x T x D
        return frames + self.encoder(frames + self.pos[: frames.shape[1]])


class StanBranch(nn.Module):
    """Temporal attention over the [CLS] tokens of the last vision layers (STAN's temporal half)."""

    def __init__(self, width: int, dim: int, layers: int, max_frames: int = 32) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(max_frames, width))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, _heads(width), 4 * width, dropout=0.0, batch_first=True, norm_first=True
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim, bias=False)
        nn.init.zeros_(self.proj.weight)  # starts as the plain per-frame model

    def forward(self, cls_per_layer: list[torch.Tensor]) -> torch.Tensor:  # [B x T x W] -> B x T x D
        state = self.pos[: cls_per_layer[0].shape[1]]
        for block, cls in zip(self.blocks, cls_per_layer, strict=True):
            state = block(state + cls)
        return self.proj(self.norm(state))


class AuxCaptionGuidance(nn.Module):
    """The video embedding attends to its auxiliary-caption embeddings through a tanh gate."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, _heads(dim), batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, video: torch.Tensor, aux: torch.Tensor, aux_mask: torch.Tensor) -> torch.Tensor:
        # video B x D, aux B x K x D, aux_mask B x K (True: a real caption)
        has_aux = aux_mask.any(dim=1)
        if not has_aux.any():
            return video
        safe_mask = aux_mask | ~has_aux[:, None]  # a row without captions attends to padding, then
        out, _ = self.attn(self.norm(video)[:, None], aux, aux, key_padding_mask=~safe_mask)
        return video + torch.tanh(self.gate) * out[:, 0] * has_aux[:, None]  # ... is left unchanged


class VideoCLIP(nn.Module):
    def __init__(self, cfg: VideoModelConfig, device: str = "cpu") -> None:
        super().__init__()
        self.cfg = cfg
        clip, self.preprocess, self.tokenizer, self.weights = create_clip(cfg.clip, device, "fp32")
        self.clip = clip
        visual = clip.visual
        if not hasattr(visual, "transformer") or not hasattr(visual, "class_embedding"):
            raise ValueError(f"{cfg.clip.name}: VideoCLIP needs an open_clip VisionTransformer backbone")
        if cfg.patch_drop:
            from open_clip.transformer import PatchDropout

            visual.patch_dropout = PatchDropout(cfg.patch_drop)
        width = visual.class_embedding.shape[0]
        self.dim = dim = int(visual.output_dim)
        self.temporal: nn.Module | None = None
        if cfg.temporal == "transformer":
            self.temporal = TemporalTransformer(dim, cfg.temporal_layers)
        elif cfg.temporal == "stan":
            if cfg.temporal_layers > len(visual.transformer.resblocks):
                raise ValueError(f"temporal_layers {cfg.temporal_layers} > the backbone's vision layers")
            self.temporal = StanBranch(width, dim, cfg.temporal_layers)
        self.proxies: nn.Parameter | None = None
        if cfg.proxy_tokens:
            cls = (visual.class_embedding + visual.positional_embedding[0]).detach()
            init = cls.expand(cfg.proxy_tokens, width).clone()
            init[1:] += 0.02 * torch.randn_like(init[1:])  # the first proxy is CLIP's [CLS] exactly
            self.proxies = nn.Parameter(init)
        self.acg = AuxCaptionGuidance(dim) if cfg.acg else None
        self.to(device)

    def new_module_parameters(self) -> list[nn.Parameter]:
        """Parameters not in the CLIP backbone (their own learning rate)."""
        backbone = {id(p) for p in self.clip.parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]

    # -- vision -------------------------------------------------------------------------------------
    def _proxy_mask(self, frames: int, tokens: int, device) -> torch.Tensor:
        """Additive mask over [M proxies | T frames x L tokens]: frame tokens see the proxies and
        their own frame; proxies see everything."""
        m = self.proxies.shape[0]
        n = m + frames * tokens
        frame_of = torch.arange(frames * tokens, device=device) // tokens
        mask = torch.full((n, n), float("-inf"), device=device)
        mask[:m] = 0
        mask[m:, :m] = 0
        mask[m:, m:] = torch.where(frame_of[:, None] == frame_of[None, :], 0.0, float("-inf"))
        return mask

    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """B x T x C x H x W -> (frame embeddings B x T x D, proxy video embedding B x D or None)."""
        visual = self.clip.visual
        if frames.shape[1] > self.cfg.num_frames:
            frames = frames[:, frame_index(frames.shape[1], self.cfg.num_frames)]
        b, t = frames.shape[:2]
        x = visual._embeds(frames.flatten(0, 1))  # (B*T) x L x W, patch dropout applied in training
        tokens, width = x.shape[1], x.shape[2]
        mask = None
        if self.proxies is not None:
            x = torch.cat([self.proxies.expand(b, -1, -1).to(x.dtype), x.reshape(b, t * tokens, width)], 1)
            mask = self._proxy_mask(t, tokens, x.device).to(x.dtype)
        tap_from = len(visual.transformer.resblocks) - self.cfg.temporal_layers
        taps = []
        for i, block in enumerate(visual.transformer.resblocks):
            x = block(x, attn_mask=mask)
            if self.cfg.temporal == "stan" and i >= tap_from:
                taps.append(self._frame_cls(x, b, t, tokens))
        video = None
        if self.proxies is not None:
            m = self.proxies.shape[0]
            video = visual.ln_post(x[:, :m].mean(1)) @ visual.proj
            x = x[:, m:].reshape(b * t, tokens, width)
        pooled, _ = visual._pool(x)
        per_frame = (pooled @ visual.proj).reshape(b, t, -1)
        if self.cfg.temporal == "stan":
            per_frame = per_frame + self.temporal(taps)
        return per_frame, video

    def _frame_cls(self, x: torch.Tensor, b: int, t: int, tokens: int) -> torch.Tensor:
        if self.proxies is not None:
            x = x[:, self.proxies.shape[0] :].reshape(b * t, tokens, -1)
        return x[:, 0].reshape(b, t, -1)

    def encode_video(
        self, frames: torch.Tensor, aux: torch.Tensor | None = None, aux_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L2-normalised video embeddings B x D, mean frame embeddings B x D before ACG)."""
        per_frame, video = self.encode_frames(frames)
        frame_mean = per_frame.mean(1)
        if video is None:
            if self.cfg.temporal == "transformer":
                per_frame = self.temporal(per_frame)
            video = per_frame.mean(1)
        if self.acg is not None and aux is not None:
            video = self.acg(video, aux, aux_mask)
        return F.normalize(video, dim=-1), frame_mean

    # -- text ---------------------------------------------------------------------------------------
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        from open_clip.transformer import text_global_pool

        clip = self.clip
        if getattr(clip, "text_pool_type", None) not in ("argmax", "eos") or clip.attn_mask is None:
            return clip.encode_text(tokens, normalize=True)  # not a causal CLIP text tower: as it is
        # open_clip's CLIP.encode_text on the columns up to the batch's last end token (padding is 0)
        n = int((tokens != 0).sum(1).max())
        tokens = tokens[:, :n]
        x = clip.token_embedding(tokens) + clip.positional_embedding[:n]
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:n, :n]))
        x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        proj = clip.text_projection
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1)

    def encode_aux(self, aux_tokens: torch.Tensor, aux_mask: torch.Tensor) -> torch.Tensor:
        """B x K x L tokens -> B x K x D embeddings (padding rows are encoded too, then masked)."""
        b, k, length = aux_tokens.shape
        emb = self.encode_text(aux_tokens.reshape(b * k, length)).reshape(b, k, -1)
        return emb * aux_mask[..., None]

    # -- training -----------------------------------------------------------------------------------
    def forward(self, batch: dict, loss_fn) -> dict[str, torch.Tensor]:
        aux = aux_mask = None
        if self.acg is not None:
            aux_mask = batch["aux_mask"]
            aux = self.encode_aux(batch["aux_tokens"], aux_mask)
        video, frame_mean = self.encode_video(batch["frames"], aux, aux_mask)
        text = self.encode_text(batch["tokens"])
        scale = self.clip.logit_scale.exp()
        loss = main = loss_fn(video, text, scale)
        out = {"clip_loss": main.detach()}
        if self.acg is not None:
            rows = aux_mask.any(1)
            if rows.sum() >= 2:  # a contrastive loss needs negatives
                aux_mean = F.normalize(aux[rows].sum(1) / aux_mask[rows].sum(1, keepdim=True), dim=-1)
                aux_loss = _info_nce(F.normalize(frame_mean[rows], dim=-1), aux_mean, scale)
                loss = loss + self.cfg.aux_loss_weight * aux_loss
                out["aux_loss"] = aux_loss.detach()
        out["loss"] = loss
        return out


def _info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * a @ b.T
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
