"""Ablations on the training demo corpus, all with the same training budget, all evaluated on the
same clean held-out set (`make ablation`; results in docs/ablation.md and docs/ablation.json).

1. Curation, in the spirit of M2-RAAP:
   - raw: ingest + keyframes + shard, no filtering;
   - pass 1: the full flow with rule-based filters (langid, dedup); the CLIP scorer is random, so
     its scores are recorded, not enforced;
   - pass 2: the full flow again, with the backbone trained on pass 1 as the clip_filter scorer
     (top 70 % of pairs kept) and as the aux_caption retrieval model.
2. Temporal modelling and auxiliary-caption guidance on the pass-2 shards: mean, transformer,
   transformer + ACG (with --extra also STAN-style and proxy tokens).

Besides retrieval, two direction scores ask whether a model tells "left to right" from "right to
left" (and top/bottom) on the held-out clips, in % of clips (50: chance):
- `dir_text`: the clip matches its caption better than the caption with the motion reversed;
- `dir_video`: the caption matches the clip better than the clip played backwards (a tie, which is
  all an order-blind model can give, counts half).

python -m vtcurate.demo.ablation WORK_DIR [--steps 300] [--extra] [--out docs]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vtcurate.config import load_config
from vtcurate.demo.train_corpus import generate_training_corpus, reversed_captions
from vtcurate.pipeline.executor import run_pipeline
from vtcurate.train.data import Collate, folder_eval_batches
from vtcurate.train.evaluate import embed
from vtcurate.train.loop import load_trained, train
from vtcurate.train.metrics import retrieval_report

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train-demo.yaml"

VARIANTS = {  # name -> train.model overrides
    "mean": ["train.model.temporal=mean"],
    "transformer": ["train.model.temporal=transformer"],
    "transformer + ACG": ["train.model.temporal=transformer", "train.model.acg=true"],
}
EXTRA_VARIANTS = {  # --extra
    "stan": ["train.model.temporal=stan"],
    "transformer + proxies": ["train.model.temporal=transformer", "train.model.proxy_tokens=4"],
}


def evaluate_heldout(model_path: Path, heldout: Path) -> dict:
    model = load_trained(model_path)
    collate = Collate(model.tokenizer, 0)  # the held-out folder has no auxiliary captions
    batches = list(
        folder_eval_batches(heldout / "annotations.jsonl", heldout / "videos", model.preprocess, collate, 48)
    )
    text, video, langs, _ = embed(model, batches)
    _, video_back, _, _ = embed(model, _flipped(batches))
    flipped_text = reversed_captions(heldout / "annotations.jsonl")  # "left to right" -> "right to left"
    with torch.inference_mode():
        rev = model.encode_text(model.tokenizer(flipped_text)).float().numpy()
    right, wrong = (text * video).sum(1), (text * video_back).sum(1)
    tie = np.isclose(right, wrong, rtol=0, atol=1e-6)  # float noise of summing frames in another order
    return {
        "retrieval": retrieval_report(text, video, langs),
        "dir_text": float(100 * np.mean(right > (rev * video).sum(1))),
        "dir_video": float(100 * np.mean(np.where(tie, 0.5, right > wrong))),
    }


def _flipped(batches):
    for batch in batches:
        yield {**batch, "frames": batch["frames"].flip(1)}


def _curate(data: Path, run: Path, overrides: list[str]) -> dict:
    config = load_config(CONFIG, ["report.enabled=false", *overrides])
    stats = run_pipeline(config, str(data / "corpus" / "manifest.jsonl"), run)
    return {"kept": stats[-1]["kept"], "rows": stats[0]["rows_in"]}


def _train(shards: Path, out: Path, steps: int, overrides: list[str]) -> dict:
    """Train (or reuse a finished training: a rerun only re-evaluates)."""
    cfg = load_config(CONFIG, [f"train.steps={steps}", "train.eval_split=''", *overrides]).train
    info = train(cfg, shards, out)
    return {"seconds": info["seconds"], "samples_per_s": info["samples_per_s"]}


def _row(name: str, shards: str, result: dict, timing: dict) -> dict:
    overall = result["retrieval"]["overall"]
    return {
        "model": name,
        "shards": shards,
        "t2v_R@1": overall["t2v"]["R@1"],
        "t2v_R@5": overall["t2v"]["R@5"],
        "t2v_MdR": overall["t2v"]["MdR"],
        "v2t_R@1": overall["v2t"]["R@1"],
        "dir_text": result["dir_text"],
        "dir_video": result["dir_video"],
        "chance_R@1": overall["chance_R@1"],
        "train_s": timing["seconds"],
    }


def run(work: Path, steps: int, extra: bool = False) -> dict:
    data = work / "data"
    if not (data / "corpus" / "manifest.jsonl").exists():
        generate_training_corpus(data)
    heldout = data / "heldout"
    flow = "stages=[ingest,langid,keyframes,motion,clip_filter,dedup,aux_caption,shard]"
    curation = {
        "raw": _curate(data, work / "raw", ["stages=[ingest,keyframes,shard]"]),
        "pass 1": _curate(data, work / "pass1", [flow]),
    }
    rows = []

    def trained(name: str, shards_run: str, overrides: list[str]) -> Path:
        out = work / "models" / f"{shards_run}-{name.replace(' ', '').replace('+', '-')}"
        timing = _train(work / shards_run / "shards", out, steps, overrides)
        rows.append(_row(name, shards_run, evaluate_heldout(out / "model.pt", heldout), timing))
        print(json.dumps(rows[-1]), flush=True)
        return out

    scorer = trained("transformer", "pass1", VARIANTS["transformer"]) / "clip_backbone.pt"
    curation["pass 2"] = _curate(
        data,
        work / "pass2",
        [
            flow,
            f"clip_filter.models.*={{name: vtc-tiny-vit, pretrained: '{scorer}'}}",
            "clip_filter.thresholds={'*': {mode: top_fraction, value: 0.7}}",
            f"aux_caption.clip={{name: vtc-tiny-vit, pretrained: '{scorer}'}}",
        ],
    )
    trained("transformer", "raw", VARIANTS["transformer"])
    for name, overrides in (VARIANTS | (EXTRA_VARIANTS if extra else {})).items():
        trained(name, "pass2", overrides)
    return {"steps": steps, "curation": curation, "rows": rows}


def markdown(result: dict) -> str:
    cols = ["model", "shards", "t2v_R@1", "t2v_R@5", "t2v_MdR", "v2t_R@1", "dir_text", "dir_video", "train_s"]
    lines = [
        f"Held-out: {round(100 / result['rows'][0]['chance_R@1'])} clean clips "
        f"(chance R@1 {result['rows'][0]['chance_R@1']:.2f} %); "
        f"every model trained {result['steps']} steps from random init.",
        "",
        "| curation | rows kept |",
        "|---|---|",
        *[f"| {k} | {v['kept']} of {v['rows']} |" for k, v in result["curation"].items()],
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for row in result["rows"]:
        cells = [f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--extra", action="store_true", help="also the STAN-style and proxy-token variants")
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args(argv)
    result = run(args.work, args.steps, args.extra)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "ablation.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
