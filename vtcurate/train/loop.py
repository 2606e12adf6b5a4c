"""The training loop: `vtcurate train` and the pipeline's `train` stage.

One process trains on one device; under `torchrun` each process is a DDP rank (NCCL on CUDA, gloo
on CPU), and open_clip's ClipLoss gathers embeddings across ranks so every rank contrasts against
the global batch.  Checkpoints are written atomically every `checkpoint_every` steps; rerunning the
same command resumes from the newest one (model, optimiser, schedule, step).  The data stream is
resampled on resume, so the samples after a resume differ from an uninterrupted run's.

Out directory: checkpoints/step-NNNNNN.pt (the newest two), metrics.jsonl, model.pt (the trained
VideoCLIP), clip_backbone.pt (the backbone alone, loadable as a clip_filter / aux_caption scorer),
train.json (config, provenance, throughput), eval/eval.json.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from vtcurate.config import TrainConfig, VideoModelConfig
from vtcurate.errors import UserError
from vtcurate.models.clip import save_checkpoint
from vtcurate.models.devices import autocast, precision, resolve_device
from vtcurate.models.video_clip import VideoCLIP
from vtcurate.storage import save_torch, write_json
from vtcurate.train.data import Collate, FrameDecoder, train_loader

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2


class Dist:
    """This process's place in a torchrun job (or a single process)."""

    def __init__(self, device_pref: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = resolve_device(device_pref, "train.device") == "cuda"
        self.device = f"cuda:{local}" if cuda else "cpu"
        if cuda:
            torch.cuda.set_device(local)
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _optimizer(model: VideoCLIP, cfg: TrainConfig) -> torch.optim.Optimizer:
    new = {id(p) for p in model.new_module_parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:  # no weight decay on gains, biases, positions and the temperature
            groups.setdefault((id(p) in new, p.ndim >= 2), []).append(p)
    return torch.optim.AdamW(  # fused: one kernel over all tensors (~4x faster on the CPU too)
        [
            {
                "params": params,
                "lr": cfg.lr if is_new else cfg.backbone_lr,
                "weight_decay": cfg.weight_decay if decay else 0.0,
            }
            for (is_new, decay), params in sorted(groups.items())
        ],
        fused=True,
    )


def training_threads(cfg: TrainConfig, world: int) -> int:
    """torch threads for one training process: as configured, or the CPUs left to it after its
    loader workers.  More threads than CPUs is the slow case: OpenMP spins waiting for a
    descheduled thread at every op (a step 3-9x slower on a busy 2-CPU machine)."""
    if cfg.threads:
        return cfg.threads
    return max(1, len(os.sched_getaffinity(0)) // world - cfg.num_workers)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 0 at `steps`."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*.pt"))


def _load_state(path: Path) -> dict:
    # weights_only: a checkpoint is data; configs travel as JSON strings, never as pickled objects
    return torch.load(path, map_location="cpu", weights_only=True)


def load_trained(path: str | Path, device: str = "cpu") -> VideoCLIP:
    """The VideoCLIP saved as model.pt (or any step checkpoint) by `train`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    state = _load_state(path)
    cfg = VideoModelConfig.model_validate_json(state["model_config"])
    model = VideoCLIP(cfg, device)
    model.load_state_dict(state["model"])
    return model.eval()


def _save_step(out: Path, step: int, model: VideoCLIP, opt, sched, cfg: TrainConfig) -> None:
    path = out / "checkpoints" / f"step-{step:06d}.pt"
    save_torch(
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "model_config": cfg.model.model_dump_json(),
            "train_config": cfg.model_dump_json(),
        },
        path,
    )
    for old in _checkpoints(out)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)


def _resume(out: Path, model: VideoCLIP, opt, sched, cfg: TrainConfig) -> int:
    ckpts = _checkpoints(out)
    if not ckpts:
        return 0
    state = _load_state(ckpts[-1])
    if state["model_config"] != cfg.model.model_dump_json():
        raise UserError(f"{out} holds checkpoints of another model config; use another --out or delete {out}")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    log.info("resuming from %s (step %d)", ckpts[-1], state["step"])
    return int(state["step"])


def train(cfg: TrainConfig, shards_dir: str | Path, out_dir: str | Path) -> dict:
    """Train (or resume training) on the shards; return train.json's contents."""
    out = Path(out_dir)
    done = out / "train.json"
    earlier = json.loads(done.read_text("utf-8")) if done.exists() else None
    if earlier and earlier["config"] == cfg.model_dump(mode="json"):
        log.info("train: finished earlier (%s), skipped", done)
        return earlier
    dist = Dist(cfg.device)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(training_threads(cfg, dist.world))
    try:
        return _train(cfg, shards_dir, out, dist)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, shards_dir: str | Path, out: Path, dist: Dist) -> dict:
    from open_clip.loss import ClipLoss

    torch.manual_seed(cfg.seed)  # the same new-module init on every rank
    model = VideoCLIP(cfg.model, dist.device)
    model.train()
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    start = _resume(out, model, opt, sched, cfg)
    ddp = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=None if dist.device == "cpu" else [dist.device]
        )
        if dist.world > 1
        else model
    )
    loss_fn = ClipLoss(local_loss=False, gather_with_grad=True, rank=dist.rank, world_size=dist.world)
    collate = Collate(model.tokenizer, cfg.model.max_aux if cfg.model.acg else 0, cfg.model.text_drop)
    frames = FrameDecoder(model.preprocess, cfg.model.num_frames, cache=cfg.cache_frames)
    loader = train_loader(
        shards_dir, cfg.split, frames, collate, cfg.batch_size, cfg.num_workers,
        cfg.shuffle_buffer, seed=cfg.seed + 1000 * start + dist.rank, verify=dist.main,
    )  # fmt: skip
    batches = iter(loader)
    metrics = (out / "metrics.jsonl").open("a", encoding="utf-8") if dist.main else None
    t0 = time.perf_counter()
    window_t, window_samples = t0, 0
    step = start
    try:
        while step < cfg.steps:
            logs: dict[str, float] = {}
            for micro in range(cfg.grad_accum):
                batch = {k: v.to(dist.device) if torch.is_tensor(v) else v for k, v in next(batches).items()}
                sync = nullcontext() if dist.world == 1 or micro == cfg.grad_accum - 1 else ddp.no_sync()
                with sync, autocast(dist.device, precision(dist.device, cfg.precision)):
                    result = ddp(batch, loss_fn)
                (result["loss"] / cfg.grad_accum).backward()
                for k, v in result.items():
                    logs[k] = logs.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
                window_samples += len(batch["keys"]) * dist.world
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            with torch.no_grad():  # CLIP's clamp: a temperature above 100 destabilises training
                model.clip.logit_scale.clamp_(0, math.log(100))
            step += 1
            if dist.main and (step % cfg.log_every == 0 or step == cfg.steps):
                now = time.perf_counter()
                rate = window_samples / max(now - window_t, 1e-9)
                window_t, window_samples = now, 0
                line = {
                    "step": step, **{k: round(v, 5) for k, v in logs.items()},
                    "grad_norm": round(float(grad_norm), 4), "lr": sched.get_last_lr()[0],
                    "temperature": round(model.clip.logit_scale.detach().exp().item(), 3),
                    "samples_per_s": round(rate, 2), "elapsed_s": round(now - t0, 1),
                }  # fmt: skip
                metrics.write(json.dumps(line) + "\n")
                metrics.flush()
                print(
                    f"train step {step}/{cfg.steps}  loss {logs['loss']:.4f}  "
                    f"lr {line['lr']:.2e}  {rate:.1f} samples/s",
                    file=sys.stderr,
                    flush=True,
                )
            if dist.main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                _save_step(out, step, model, opt, sched, cfg)
            dist.barrier()
    finally:
        if metrics:
            metrics.close()
    info = {}
    if dist.main:
        info = _finish(model, cfg, out, shards_dir, start, time.perf_counter() - t0, dist)
    dist.barrier()
    return info


def _finish(
    model: VideoCLIP, cfg: TrainConfig, out: Path, shards_dir, start: int, seconds: float, dist
) -> dict:
    model.eval()
    note = f"trained by vtcurate train on {shards_dir} for {cfg.steps} steps"
    save_torch(
        {"model": model.state_dict(), "model_config": cfg.model.model_dump_json(), "step": cfg.steps},
        out / "model.pt",
    )
    save_checkpoint(model.clip, out / "clip_backbone.pt", trained=True, note=note)
    steps_run = cfg.steps - start
    info = {
        "config": cfg.model_dump(mode="json"),
        "shards": str(shards_dir),
        "resumed_from_step": start,
        "steps_run": steps_run,
        "seconds": round(seconds, 1),
        "samples_per_s": round(
            steps_run * cfg.batch_size * cfg.grad_accum * dist.world / max(seconds, 1e-9), 2
        ),
        "device": dist.device,
        "threads": torch.get_num_threads(),
        "world_size": dist.world,
        "backbone_init": model.weights,
        "clip_backbone": str(out / "clip_backbone.pt"),
    }
    if cfg.eval_split:
        from vtcurate.train.evaluate import evaluate_shards

        try:
            info["eval"] = evaluate_shards(model, shards_dir, cfg.eval_split, out / "eval", cfg.batch_size)
        except UserError as err:  # e.g. a run whose val split is empty
            log.warning("no evaluation after training: %s", err)
    write_json(info, out / "train.json")
    return info
