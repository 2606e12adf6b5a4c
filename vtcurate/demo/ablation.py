"""Does curation train a better model?  Ablations on the training demo corpus (`make ablation`;
results in docs/ablation.md and docs/ablation.json), every model trained from random init with the
same number of steps, for several seeds, and evaluated on the same clean held-out set.

1. Curation (M2-RAAP's claim, measured):
   - raw: ingest + keyframes + shard, no filtering;
   - rules: the flow with its rule stages (langid, motion, dedup); the random CLIP scorer's
     decisions are recorded, not enforced (`vtcurate bootstrap` pass 1);
   - pass2, pass3: the flow again with the previous pass's trained backbone as the enforced
     clip_filter scorer and aux_caption model (bootstrap passes 2 and 3).
   Each pass's filter quality is measured against the corpus's answer key.
2. Temporal modelling and auxiliary-caption guidance on the best curated shards: mean, transformer,
   transformer + ACG (with --extra also STAN-style and proxy tokens).
3. Efficiency: the best curated shards with a fraction of the steps, and with a fraction of their
   rows at full steps, against raw's final R@1.

A difference is called a gain only when it exceeds two standard errors of the difference of the
means over seeds.  Besides retrieval, two direction scores ask whether a model tells "left to right"
from "right to left" (and top/bottom) on the held-out clips, in % of clips (50: chance):
- `dir_text`: the clip matches its caption better than the caption with the motion reversed;
- `dir_video`: the caption matches the clip better than the clip played backwards (a tie, which is
  all an order-blind model can give, counts half).

python -m vtcurate.demo.ablation WORK_DIR [--steps N] [--seeds 0 1 2] [--extra] [--parallel 2]
    [--data-fractions F ...] [--out docs] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vtcurate.bootstrap import bootstrap, pass_quality
from vtcurate.config import load_config
from vtcurate.demo.train_corpus import generate_training_corpus, reversed_captions
from vtcurate.pipeline.executor import run_pipeline
from vtcurate.pipeline.shards import load_index
from vtcurate.storage import write_json
from vtcurate.train.data import Collate, folder_eval_batches
from vtcurate.train.evaluate import embed
from vtcurate.train.loop import load_trained
from vtcurate.train.metrics import retrieval_report

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train-demo.yaml"
RAW_FLOW = "stages=[ingest,keyframes,shard]"
CURATIONS = ("raw", "rules", "pass2", "pass3")  # rules, pass2, pass3: bootstrap passes 1-3
METRICS = {  # ablation.json name -> (direction, metric) of retrieval_report's "overall"
    "t2v_R@1": ("t2v", "R@1"),
    "t2v_R@5": ("t2v", "R@5"),
    "t2v_MdR": ("t2v", "MdR"),
    "v2t_R@1": ("v2t", "R@1"),
}
BASE = "transformer"
VARIANTS = {  # name -> train.model overrides
    "transformer": [],
    "mean": ["train.model.temporal=mean"],
    "transformer + ACG": ["train.model.acg=true"],
}
EXTRA_VARIANTS = {  # --extra
    "stan": ["train.model.temporal=stan"],
    "transformer + proxies": ["train.model.proxy_tokens=4"],
}
STEP_FRACTIONS = (0.25, 0.5)  # efficiency: shares of the steps
DATA_FRACTIONS = (0.25, 0.5)  # and of the best curation's rows (--data-fractions)
SUMMARY = "ablation-summary.md"  # the README's paragraph


@dataclass
class Ablation:
    work: Path
    steps: int
    seeds: tuple[int, ...]
    runner: str | None = None  # the curation runner (default: the config's)
    parallel: int = 2  # trainings at a time
    data: Path = field(init=False)
    _heldout_batches: list | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.data = self.work / "data"

    @property
    def heldout(self) -> Path:
        return self.data / "heldout"

    def overrides(self, seed: int = 0, steps: int | None = None) -> list[str]:
        """The config changes of every curation and training: the seed moves the backbone's random
        init as well as the new modules' and the data order."""
        return [
            "report.enabled=false",
            f"train.steps={steps or self.steps}",
            "train.eval_split=''",
            f"train.seed={seed}",
            f"train.model.clip.seed={seed}",
        ]

    def corpus(self) -> dict:
        summary = self.data / "summary.json"
        if summary.exists():
            return json.loads(summary.read_text("utf-8"))
        return generate_training_corpus(self.data)

    def curate(self, manifest: str) -> dict[str, dict]:
        """Every curation: its shards, rows kept, and (bootstrap passes) filter quality and the
        seed-0 training the pass already did."""
        config = load_config(CONFIG, [*self.overrides(), RAW_FLOW])
        raw = run_pipeline(config, manifest, self.work / "raw", runner=self.runner)
        out = {
            "raw": {
                "shards": self.work / "raw" / "shards",
                "kept": raw[-1]["kept"],
                "rows": raw[0]["rows_in"],
            }
        }
        config = load_config(CONFIG, [*self.overrides(), f"bootstrap.passes={len(CURATIONS) - 1}"])
        result = bootstrap(config, manifest, self.work / "bootstrap", runner=self.runner)
        for name, row in zip(CURATIONS[1:], result["passes"], strict=True):
            run_dir = Path(row["run_dir"])
            out[name] = {
                "shards": run_dir / "shards",
                "kept": row["kept"],
                "rows": row["rows_in"],
                "quality": pass_quality(row.get("filter_quality")),
                "seed0": run_dir / "train",
            }
        return out

    def evaluate(self, model_path: Path) -> dict:
        return evaluate_heldout(model_path, self.heldout, self._batches(model_path))

    def _batches(self, model_path: Path) -> list[dict]:
        # every model here shares the backbone architecture and tokenizer: decode the held-out videos once
        if self._heldout_batches is None:
            model = load_trained(model_path)
            self._heldout_batches = heldout_batches(model, self.heldout)
        return self._heldout_batches

    def job(self, name: str, shards: Path, model: str, seed: int, extra: dict, seed0: Path | None) -> Job:
        """One training; seed 0 of the plain model on a bootstrap pass is that pass's own training."""
        reuse = seed == 0 and model == BASE and seed0 is not None and not extra
        out = seed0 if reuse else self.work / "models" / _slug(name, model, seed, extra)
        overrides = [
            *self.overrides(seed, extra.get("steps")),
            *VARIANTS.get(model, EXTRA_VARIANTS.get(model, [])),
        ]
        return Job(name, model, seed, shards, out, overrides, extra)

    def train_all(self, jobs: list[Job]) -> None:
        """Train every job, `parallel` at a time, each in its own `vtcurate train` process (one torch
        thread each beside its loader worker: two of them fill two CPUs without the spinning that
        two threads of one process cause); a finished training is skipped by `train` itself."""
        pending, running = list(jobs), []
        while pending or running:
            while pending and len(running) < self.parallel:
                job = pending.pop(0)
                job.out.mkdir(parents=True, exist_ok=True)
                sets = [x for o in job.overrides for x in ("--set", o)]
                cmd = [sys.executable, "-m", "vtcurate.cli", "train", str(CONFIG),
                       "--shards", str(job.shards), "--out", str(job.out), *sets]  # fmt: skip
                log = open(job.out / "train.log", "w", encoding="utf-8")  # noqa: SIM115 (closed when it ends)
                running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), job, log))
            time.sleep(0.5)
            for item in [r for r in running if r[0].poll() is not None]:
                proc, job, log = item
                log.close()
                running.remove(item)
                if proc.returncode != 0:
                    tail = (job.out / "train.log").read_text("utf-8")[-2000:]
                    raise RuntimeError(f"training {job.out} failed (exit {proc.returncode}):\n{tail}")

    def result(self, job: Job) -> dict:
        """One trained model's held-out figures and its training time."""
        info = json.loads((job.out / "train.json").read_text("utf-8"))
        result = self.evaluate(job.out / "model.pt")
        overall = result["retrieval"]["overall"]
        out = {
            "seed": job.seed,
            **{name: overall[d][m] for name, (d, m) in METRICS.items()},
            "dir_text": result["dir_text"],
            "dir_video": result["dir_video"],
            "chance_R@1": overall["chance_R@1"],
            # a training resumed after a kill reports the seconds of its last part: scaled to all its steps
            "train_s": info["seconds"] / max(info["steps_run"], 1) * info["config"]["steps"],
            "samples_per_s": info["samples_per_s"],
        }
        print(json.dumps({"curation": job.curation, "model": job.model, **job.extra, **out}), flush=True)
        return out

    def phase(self, groups: list[tuple[str, Path, str, dict]], curations: dict) -> list[dict]:
        """Train every (curation, shards, model, extra) group for every seed at once, then summarise."""
        jobs = [
            [self.job(name, shards, model, seed, extra, curations[name].get("seed0")) for seed in self.seeds]
            for name, shards, model, extra in groups
        ]
        self.train_all([j for group in jobs for j in group])
        return [
            summarise(name, model, [self.result(j) for j in group], train_rows(shards), **extra)
            for (name, shards, model, extra), group in zip(groups, jobs, strict=True)
        ]


@dataclass
class Job:
    curation: str
    model: str
    seed: int
    shards: Path
    out: Path
    overrides: list[str]
    extra: dict  # steps or data_fraction of an efficiency run


def heldout_batches(model, heldout: Path) -> list[dict]:
    collate = Collate(model.tokenizer, 0)  # the held-out folder has no auxiliary captions
    return list(
        folder_eval_batches(heldout / "annotations.jsonl", heldout / "videos", model.preprocess, collate, 64)
    )


def evaluate_heldout(model_path: Path, heldout: Path, batches: list[dict] | None = None) -> dict:
    model = load_trained(model_path)
    batches = batches if batches is not None else heldout_batches(model, heldout)
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


def subset_shards(shards: Path, fraction: float, out: Path) -> int:
    """A shards folder whose index.json lists about `fraction` of the train split's samples (whole
    shards, each language in proportion; shard paths absolute); return its train samples."""
    index = load_index(shards)
    train_shards = [s for s in index["shards"] if s["split"] == "train"]
    chosen = []
    for lang in sorted({lang for s in train_shards for lang in s["languages"]}):
        mine = [s for s in train_shards if lang in s["languages"] and s not in chosen]
        want, got = fraction * sum(s["samples"] for s in mine), 0
        for s in mine:
            if got and got + s["samples"] / 2 > want:
                break
            chosen.append(s)
            got += s["samples"]
    samples = sum(s["samples"] for s in chosen)
    rows = [{**s, "path": str((shards / s["path"]).resolve())} for s in chosen]
    write_json(
        {**index, "shards": rows, "samples": samples, "splits": {"train": samples}}, out / "index.json"
    )
    return samples


def train_rows(shards: Path) -> int:
    return load_index(shards)["splits"].get("train", 0)


def summarise(name: str, model: str, runs: list[dict], rows: int, **extra) -> dict:
    """One ablation.json row: mean and sample standard deviation over seeds of every metric."""
    out = {"curation": name, "model": model, "seeds": [r["seed"] for r in runs], "train_rows": rows, **extra}
    out["train_s_mean"] = float(np.mean([r["train_s"] for r in runs]))
    for metric in [*METRICS, "dir_text", "dir_video"]:
        values = np.array([r[metric] for r in runs], dtype=float)
        out[f"{metric}_mean"] = float(values.mean())
        out[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    out["per_seed"] = runs
    return out


def compare(a: dict, b: dict, metric: str = "t2v_R@1") -> dict:
    """a minus b on `metric`, its standard error (independent seeds) and whether it is beyond 2 SE.
    For a rank (MdR) lower is better, so a gain is a negative difference."""
    diff = a[f"{metric}_mean"] - b[f"{metric}_mean"]
    se = math.sqrt(sum(r[f"{metric}_std"] ** 2 / len(r["seeds"]) for r in (a, b)))
    better = -diff if metric.endswith("MdR") else diff
    return {"metric": metric, "diff": diff, "se": se, "gain": bool(better > 2 * se and len(a["seeds"]) > 1)}


def claim(raw: dict, best: dict, efficiency: list[dict]) -> dict:
    """M2-RAAP's claim measured: the least training time and the fewest rows with which the best
    curation's mean t2v R@1 reaches raw's final one, as shares of raw's (None: never reached)."""
    reached = [r for r in [best, *efficiency] if r["t2v_R@1_mean"] >= raw["t2v_R@1_mean"]]
    return {
        "time_ratio": min((r["train_s_mean"] / raw["train_s_mean"] for r in reached), default=None),
        "data_ratio": min((r["train_rows"] / raw["train_rows"] for r in reached), default=None),
    }


def run(
    work: Path,
    steps: int,
    seeds: tuple[int, ...],
    extra: bool = False,
    runner: str | None = None,
    parallel: int = 2,
    data_fractions: tuple[float, ...] = DATA_FRACTIONS,
) -> dict:
    t0 = time.perf_counter()
    ab = Ablation(work, steps, seeds, runner, parallel)
    corpus = ab.corpus()
    curations = ab.curate(corpus["manifest"])
    rows = ab.phase([(name, curations[name]["shards"], BASE, {}) for name in CURATIONS], curations)
    raw = rows[0]
    best_row = max(rows[1:], key=lambda r: r["t2v_R@1_mean"])
    best = best_row["curation"]
    shards = curations[best]["shards"]
    groups = [
        (best, shards, model, {}) for model in (VARIANTS | (EXTRA_VARIANTS if extra else {})) if model != BASE
    ]
    groups += [(best, shards, BASE, {"steps": max(1, round(steps * f))}) for f in STEP_FRACTIONS]
    for fraction in data_fractions:
        subset = work / "subsets" / f"{best}-{fraction:g}"
        subset.mkdir(parents=True, exist_ok=True)
        subset_shards(shards, fraction, subset)
        groups.append((best, subset, BASE, {"data_fraction": fraction}))
    results = ab.phase(groups, curations)
    efficient = len(STEP_FRACTIONS) + len(data_fractions)
    rows += results[:-efficient]
    efficiency = results[-efficient:]
    trainings = [r for row in [*rows, *efficiency] for r in row["per_seed"]]
    return {
        "wall_s": time.perf_counter() - t0,  # this invocation: trainings reused from an earlier one cost ~0
        "samples_per_s": float(np.mean([r["samples_per_s"] for r in trainings])),
        "parallel": parallel,
        "heldout_clips": corpus["heldout_clips"],
        "chance_R@1": raw["per_seed"][0]["chance_R@1"],
        "steps": steps,
        "corpus": {k: corpus[k] for k in ("rows", "clean", "planted")},
        "curation": {k: {"kept": v["kept"], "rows": v["rows"]} for k, v in curations.items()},
        "filter_quality": [{"curation": k, **v["quality"]} for k, v in curations.items() if "quality" in v],
        "rows": rows,
        "best_curation": best,
        "gains_vs_raw": [
            {"curation": r["curation"], **compare(r, raw, m)}
            for r in rows[1 : len(CURATIONS)]
            for m in METRICS
        ],  # fmt: skip
        "efficiency": efficiency,
        "claim": claim(raw, best_row, efficiency),
        "efficiency_vs_raw": [
            {**{k: e.get(k) for k in ("steps", "data_fraction")}, **compare(e, raw)} for e in efficiency
        ],  # fmt: skip
    }


def _slug(name: str, model: str, seed: int, extra: dict) -> str:
    tail = "".join(f"-{k}{v:g}" for k, v in extra.items())
    return f"{name}-{model.replace(' ', '').replace('+', '-')}{tail}-s{seed}"


def _ms(row: dict, metric: str) -> str:
    return f"{row[f'{metric}_mean']:.1f} ± {row[f'{metric}_std']:.1f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def markdown(result: dict) -> str:
    raw = result["rows"][0]
    metrics = [*METRICS, "dir_text", "dir_video"]
    head = ["curation", "model", "train rows", *metrics, "train s"]
    lines = [
        f"Held-out: {result['heldout_clips']} clean clips with distinct captions (chance R@1 "
        f"{result['chance_R@1']:.2f} %). Every model trained {result['steps']} steps from random init; "
        f"mean ± standard deviation over seeds {raw['seeds']}. A difference is a gain only beyond two "
        "standard errors.",
        "",
        "| curation | rows kept | clip_filter AUC (mismatched) | precision | recall |",
        "|---|---|---|---|---|",
    ]
    quality = {q["curation"]: q for q in result["filter_quality"]}
    for name, c in result["curation"].items():
        q = quality.get(name, {})
        lines.append(f"| {name} | {c['kept']} of {c['rows']} | {_pct(q.get('auc_mismatched'))} | "
                     f"{_pct(q.get('precision'))} | {_pct(q.get('recall'))} |")  # fmt: skip
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        cells = [row["curation"], row["model"], str(row["train_rows"]), *[_ms(row, m) for m in metrics],
                 f"{row['train_s_mean']:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Against raw (same model, same steps):", "",
              "| curation | metric | difference | 2 SE | gain |", "|---|---|---|---|---|"]  # fmt: skip
    for g in result["gains_vs_raw"]:
        lines.append(f"| {g['curation']} | {g['metric']} | {g['diff']:+.1f} | {2 * g['se']:.1f} | "
                     f"{'yes' if g['gain'] else 'no'} |")  # fmt: skip
    lines += ["", f"Efficiency of the best curation ({result['best_curation']}) against raw's final t2v R@1 "
              f"({_ms(raw, 't2v_R@1')}, {raw['train_rows']} rows, {result['steps']} steps, "
              f"{raw['train_s_mean']:.0f} s):", "",
              "| steps | train rows | t2v_R@1 | train s | reaches raw's |",
              "|---|---|---|---|---|"]  # fmt: skip
    for e in result["efficiency"]:
        reach = e["t2v_R@1_mean"] >= raw["t2v_R@1_mean"]
        lines.append(f"| {e.get('steps', result['steps'])} | {e['train_rows']} | {_ms(e, 't2v_R@1')} | "
                     f"{e['train_s_mean']:.0f} | {'yes' if reach else 'no'} |")  # fmt: skip
    c = result["claim"]
    lines.append("")
    if c["time_ratio"] is None:
        lines.append(f"The best curation did not reach raw's final t2v R@1 in {result['steps']} steps.")
    else:
        lines.append(
            f"The best curation reached raw's final t2v R@1 with {100 * c['data_ratio']:.0f} % of raw's "
            f"training rows and {100 * c['time_ratio']:.0f} % of its training time (means over seeds)."
        )
    return "\n".join(lines) + "\n"


def summary(result: dict) -> str:
    """The README's paragraph (docs/ablation-summary.md, copied between README markers)."""
    raw = result["rows"][0]
    best = next(r for r in result["rows"] if r["curation"] == result["best_curation"])
    gain = next(
        g for g in result["gains_vs_raw"] if g["curation"] == best["curation"] and g["metric"] == "t2v_R@1"
    )
    verdict = "a gain beyond two standard errors" if gain["gain"] else "not a gain beyond two standard errors"
    quality = {q["curation"]: q for q in result["filter_quality"]}.get("pass2", {})
    c = result["claim"]
    reach = (
        f"it reached raw's final t2v R@1 with {100 * c['data_ratio']:.0f} % of raw's rows and "
        f"{100 * c['time_ratio']:.0f} % of its training time"
        if c["time_ratio"] is not None
        else "it did not reach raw's final t2v R@1 with fewer steps or rows"
    )
    return (
        f"Measured by `make ablation` on the training demo corpus ({result['heldout_clips']} held-out clips, "
        f"chance R@1 {result['chance_R@1']:.2f} %; {len(raw['seeds'])} seeds, {result['steps']} steps each): "
        f"held-out t2v R@1 raw {_ms(raw, 't2v_R@1')}, "
        f"best curation ({best['curation']}) {_ms(best, 't2v_R@1')}, "
        f"{verdict} ({gain['diff']:+.1f} against {2 * gain['se']:.1f}); {reach}. The pass-2 filter (the "
        f"rules-pass model as scorer): AUC {_pct(quality.get('auc_mismatched'))} on mismatched captions, "
        f"precision {_pct(quality.get('precision'))}, recall {_pct(quality.get('recall'))}. Training ran at "
        f"{result['samples_per_s']:.0f} samples/s per model, {result.get('parallel', 1)} models side by side "
        f"on this machine's {os.cpu_count()} CPUs; its last invocation took {result['wall_s'] / 60:.0f} min "
        "(an invocation reuses the curations and trainings an earlier, interrupted one finished).\n"
    )


def write(result: dict, out: Path, readme: Path | None = None) -> None:
    """docs/ablation.{json,md} and ablation-summary.md, and the summary into README.md's markers."""
    from vtcurate.config_doc import include

    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ablation.md").write_text(markdown(result))
    (out / SUMMARY).write_text(summary(result))
    if readme is not None and readme.is_file():
        readme.write_text(include(readme.read_text("utf-8"), f"docs/{SUMMARY}", summary(result)), "utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path)
    p.add_argument("--steps", type=int, default=200, help="training steps of every model")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--extra", action="store_true", help="also the STAN-style and proxy-token variants")
    p.add_argument("--parallel", type=int, default=2, help="trainings at a time (one CPU each)")
    p.add_argument(
        "--data-fractions",
        type=float,
        nargs="*",
        default=list(DATA_FRACTIONS),
        help="also train the best curation on these shares of its rows (e.g. 0.25 0.5)",
    )
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--readme", type=Path, help="copy the summary into this README's markers")
    args = p.parse_args(argv)
    result = run(
        args.work,
        args.steps,
        tuple(args.seeds),
        args.extra,
        parallel=args.parallel,
        data_fractions=tuple(args.data_fractions),
    )
    write(result, args.out, args.readme)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
