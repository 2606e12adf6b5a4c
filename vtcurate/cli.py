"""The `vtcurate` command line.  Heavy libraries are imported inside commands so --help is instant."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path


def _shorter_flow_command(args: argparse.Namespace, flow: list[str]) -> str:
    """This `vtcurate run` command with `--stages` replaced by a config whose stages are `flow`."""
    cmd = ["vtcurate", *(["-" + "v" * args.verbose] if args.verbose else []), "run", args.config]
    cmd += ["--input", args.input, "--run-dir", args.run_dir]
    cmd += ["--runner", args.runner] if args.runner else []
    for assignment in args.set:
        if assignment.partition("=")[0].strip() != "stages":
            cmd += ["--set", assignment]
    cmd += ["--set", f"stages=[{','.join(flow)}]"]
    cmd += ["--ray-address", args.ray_address] if args.ray_address else []
    cmd += ["--fresh"] if args.fresh else []
    return shlex.join(cmd)


def _cmd_run(args: argparse.Namespace) -> int:
    from vtcurate.config import load_config
    from vtcurate.errors import UserError
    from vtcurate.pipeline.executor import StageSelectionError
    from vtcurate.pipeline.stats import format_funnel
    from vtcurate.workflow import run

    config = load_config(args.config, args.set)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    try:
        stats = run(config, args.input, args.run_dir, runner=args.runner, stages=stages,
                    ray_address=args.ray_address, fresh=args.fresh)  # fmt: skip
    except StageSelectionError as err:
        raise UserError(f"{err}, that is:\n  {_shorter_flow_command(args, err.flow)}") from None
    print(format_funnel(stats))
    shards = Path(args.run_dir) / "shards" / "index.json"
    if shards.exists():
        index = json.loads(shards.read_text("utf-8"))
        print(f"\n{index['samples']} samples in {len(index['shards'])} shard(s): {shards.parent}")
    trained = Path(args.run_dir) / "train" / "train.json"
    if config.stages[-1] == "train" and trained.exists():
        from vtcurate.train.evaluate import print_report

        info = json.loads(trained.read_text("utf-8"))
        if info.get("eval"):
            print("\n" + print_report(info["eval"]))
        print(f"model: {trained.parent / 'model.pt'} ({info['steps_run']} steps this run)")
    report = Path(args.run_dir) / "report" / "index.html"
    if report.exists():
        print(f"report: {report}")
    return 0


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    from vtcurate.bootstrap import bootstrap, markdown
    from vtcurate.config import load_config
    from vtcurate.errors import UserError

    if bool(args.annotations) != bool(args.videos):
        raise UserError("bootstrap's held-out set needs both --annotations and --videos")
    overrides = [*args.set, *([f"bootstrap.passes={args.passes}"] if args.passes else [])]
    config = load_config(args.config, overrides)
    heldout = (Path(args.annotations), Path(args.videos)) if args.annotations else None
    result = bootstrap(config, args.input, args.work_dir, heldout, runner=args.runner)
    print(markdown(result))
    print(f"{Path(args.work_dir) / 'bootstrap.json'}")
    return 0


def _cmd_stages(args: argparse.Namespace) -> int:
    from pydantic_core import to_jsonable_python

    from vtcurate.config import FLOW, TRAIN, PipelineConfig

    fields = PipelineConfig.model_fields
    for name in (*FLOW, TRAIN):
        print(name)
        model = fields[name].annotation
        for key, field in model.model_fields.items():
            default = json.dumps(
                to_jsonable_python(field.get_default(call_default_factory=True)), ensure_ascii=False
            )
            desc = f"  # {field.description}" if field.description else ""
            kind = "" if name == TRAIN else ("[decision] " if key in model.decision_keys else "[scoring] ")
            print(f"  {kind}{name}.{key} = {default}{desc}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from vtcurate.pipeline.stats import format_funnel, funnel_json, load_stats

    stats = load_stats(args.run_dir)
    if not stats:
        print(f"no finished stage in {args.run_dir}", file=sys.stderr)
        return 1
    if args.filter_quality:
        return _print_filter_quality(args)
    print(json.dumps(funnel_json(stats), indent=2) if args.json else format_funnel(stats))
    return 0


def _print_filter_quality(args: argparse.Namespace) -> int:
    from vtcurate.pipeline.rundir import RunDir
    from vtcurate.report.answer_key import answer_key_path
    from vtcurate.report.filter_quality import filter_quality, format_quality

    key = args.answer_key or answer_key_path(RunDir(args.run_dir).read_run_json() or {})
    quality = filter_quality(args.run_dir, key)
    if quality is None:
        print(f"vtcurate: error: no answer key ({key or 'none beside the input'}); give --answer-key",
              file=sys.stderr)  # fmt: skip
        return 2
    print(json.dumps(quality, indent=2) if args.json else format_quality(quality))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from vtcurate.report.render import write_report

    if not (Path(args.run_dir) / "run.json").exists():
        print(f"vtcurate: error: {args.run_dir} is not a run directory (no run.json)", file=sys.stderr)
        return 2
    print(write_report(args.run_dir, args.answer_key))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from vtcurate.pipeline.shards import inspect_tar

    for line in inspect_tar(args.shard, args.n):
        print(line)
    return 0


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from vtcurate.demo.corpus import generate

    summary = generate(args.out, args.clips, args.seed)
    print(
        f"demo corpus: {summary['rows']} rows ({summary['clean']} clean clips, "
        f"{summary['planted']} planted cases) in {summary['dir']}"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from vtcurate.config import load_config
    from vtcurate.train.evaluate import print_report
    from vtcurate.train.loop import train

    config = load_config(args.config, args.set)
    info = train(config.train, args.shards, args.out)
    if info.get("eval"):
        print(print_report(info["eval"]))
    if info:
        rate = info["samples_per_s"]
        print(f"\ntrained {info['steps_run']} steps at {rate} samples/s: {args.out}/model.pt")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from vtcurate.errors import UserError
    from vtcurate.train.evaluate import evaluate_folder, evaluate_shards, print_report
    from vtcurate.train.loop import load_trained

    if bool(args.shards) == bool(args.annotations) or bool(args.annotations) != bool(args.videos):
        raise UserError("eval needs either --shards, or --annotations with --videos")
    model = load_trained(args.checkpoint, args.device)
    out = args.out or str(Path(args.checkpoint).parent / "eval")
    if args.shards:
        report = evaluate_shards(model, args.shards, args.split, out, args.batch_size)
    else:
        report = evaluate_folder(model, args.annotations, args.videos, out, args.batch_size)
    print(print_report(report))
    print(f"\n{out}/eval.json")
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    from vtcurate.config import load_config, validate
    from vtcurate.pipeline.manifest import write_manifest

    config = load_config(args.config, args.set) if args.config else validate({})
    rows = write_manifest(args.input, args.out, config.manifest)
    print(f"{rows} rows: {args.out}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from vtcurate.config import load_config
    from vtcurate.pipeline.preflight import preflight

    config = load_config(args.config, args.set)
    preflight(config, config.stages)
    print(f"{args.config}: every model, weight, file and GPU its stages need is here")
    return 0


def _cmd_models_fetch(args: argparse.Namespace) -> int:
    from vtcurate.config import load_config
    from vtcurate.errors import UserError
    from vtcurate.models.store import fetch

    config = load_config(args.config, args.set)
    store = args.cache or config.models.store
    if not store:
        raise UserError("models fetch needs --cache DIR or models.store in the config")
    listing = fetch(config, store)
    for repo, entry in sorted(listing.items()):
        print(f"{entry['key']}: {repo} ({len(entry['files'])} files)")
    print(f"{store}: set models.store to it; workers then read it and never call a hub")
    return 0


def _format_whatif(funnel: list[dict]) -> str:
    lines = [f"{'stage':<12} {'rows_in':>8} {'kept':>8} {'rejected':>9} {'unscored':>9}  kept/in by language"]
    for s in funnel:
        langs = ", ".join(f"{k} {v['kept']}/{v['kept'] + v['rejected']}" for k, v in s["by_language"].items())
        counts = f"{s['rows_in']:>8} {s['kept']:>8} {s['rejected']:>9} {s['unscored']:>9}"
        lines.append(f"{s['stage']:<12} {counts}  {langs}")
        lines += [f"{'':<14}- {reason}: {n}" for reason, n in s["rejected_by_reason"].items()]
    return "\n".join(lines)


def _answer_key_counts(run_dir: str, dropped: dict) -> dict | None:
    """Planted cases caught and clean rows lost under a decision, where the run has an answer key."""
    from vtcurate.config import FLOW
    from vtcurate.pipeline.rundir import RunDir
    from vtcurate.report.answer_key import answer_key_path, evaluate_answer_key

    rd = RunDir(run_dir)
    finished = [s for s in FLOW if rd.stage(s).done]
    result = evaluate_answer_key(rd, answer_key_path(rd.read_run_json() or {}), finished, dropped)
    if result is None:
        return None
    return {"planted_caught": result["summary"].get("caught", 0),
            "planted": len(result["cases"]) - sum(c["expect_stage"] is None for c in result["cases"]),
            "clean_lost": len(result["clean_wrongly_dropped"])}  # fmt: skip


def _cmd_whatif(args: argparse.Namespace) -> int:
    from vtcurate.pipeline.decisions import whatif, whatif_run

    if not args.sweep:
        funnel = whatif(args.run_dir, args.set)
        print(json.dumps(funnel, indent=1, ensure_ascii=False) if args.json else _format_whatif(funnel))
        return 0
    key, _, values = args.sweep.partition("=")
    table, stored = [], {}
    for value in (v.strip() for v in values.split(",")):
        funnel, dropped = whatif_run(args.run_dir, [*args.set, f"{key}={value}"], stored)
        last = funnel[-1]
        table.append({key: value, "kept": last["kept"], "unscored": last["unscored"],
                      "kept_by_language": {k: v["kept"] for k, v in last["by_language"].items()},
                      "answer_key": _answer_key_counts(args.run_dir, dropped), "funnel": funnel})  # fmt: skip
    if args.json:
        print(json.dumps(table, indent=1, ensure_ascii=False))
        return 0
    keyed = table[0]["answer_key"] is not None
    answer = "  planted caught / clean lost" if keyed else ""
    print(f"{key:>24} {'kept':>8} {'unscored':>9}{answer}  kept by language (after {funnel[-1]['stage']})")
    for row in table:
        langs = ", ".join(f"{k} {v}" for k, v in row["kept_by_language"].items())
        ak = row["answer_key"]
        got = f"  {ak['planted_caught']:>6}/{ak['planted']:<6} {ak['clean_lost']:>10}" if keyed else ""
        print(f"{row[key]:>24} {row['kept']:>8} {row['unscored']:>9}{got}  {langs}")
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from vtcurate.report.diff import diff, format_diff

    for run in (args.run_a, args.run_b):
        if not (Path(run) / "run.json").exists():
            print(f"vtcurate: error: {run} is not a run directory (no run.json)", file=sys.stderr)
            return 2
    entries = diff(args.run_a, args.run_b)
    if args.html:
        from vtcurate.report.diff import render_html
        from vtcurate.storage import write_text

        write_text(render_html(args.run_a, args.run_b, entries), Path(args.html))
        print(f"{len(entries)} clips differ: {args.html}")
        return 0
    if args.json:
        print(json.dumps(entries, indent=1, ensure_ascii=False))
    else:
        print(format_diff(args.run_a, args.run_b, entries))
    return 0


def _cmd_train_demo_data(args: argparse.Namespace) -> int:
    from vtcurate.demo.train_corpus import generate_training_corpus

    try:
        noise = {k: float(v) for k, v in (item.split("=", 1) for item in args.noise)}
        s = generate_training_corpus(args.out, args.clips, args.heldout, args.mismatch, args.partly_wrong,
                                     args.seed, args.seconds, noise)  # fmt: skip
    except ValueError as err:
        print(f"vtcurate: error: {err}", file=sys.stderr)
        return 2
    planted = ", ".join(f"{kind} {n}" for kind, n in s["planted"].items())
    print(
        f"training corpus: {s['rows']} rows in {s['manifest']}: {s['clean']} clean, planted {planted} "
        f"(answer key {s['answer_key']}); held-out: {s['heldout_clips']} clips in {s['heldout']} "
        f"(chance R@1 {s['chance_R@1']:.2f}%); {s['seconds']:.0f} s"
    )
    return 0


VERBOSE = "also other libraries' INFO lines, and vtcurate's DEBUG ones; -vv: DEBUG from all"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtcurate", description="Bilingual video-text data curation.")
    p.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the configured stages over a manifest")
    run.add_argument("config", help="YAML config (see configs/)")
    run.add_argument("--input", required=True, help="a manifest (.jsonl/.csv/.parquet), video folder or tars")
    run.add_argument("--run-dir", required=True, help="run directory; rerunning resumes it")
    run.add_argument("--runner", choices=["local", "ray", "beam"], help="override the config's runner")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set langid.min_confidence.en=0.6",
    )
    run.add_argument(
        "--stages",
        help="run only these of the config's stages (comma-separated), to resume or redo part of a run: "
        "each still reads the stage before it in the config, selected or finished in the run "
        "directory.  A shorter flow is the config's: --set 'stages=[ingest,langid,keyframes,shard]'",
    )
    run.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS or embedded)")
    run.add_argument("--fresh", action="store_true", help="discard what the run directory holds")
    run.set_defaults(func=_cmd_run)

    boot = sub.add_parser("bootstrap", help="curate, train, curate again scored by the trained model")
    boot.add_argument("config", help="YAML config; its stages must include clip_filter, shard and train")
    boot.add_argument("--input", required=True, help="a manifest, video folder or tars (as for run)")
    boot.add_argument("--work-dir", required=True, help="WORK/pass1, pass2, ...; rerunning resumes them")
    boot.add_argument("--passes", type=int, help="curate + train rounds (default: bootstrap.passes)")
    boot.add_argument("--annotations", help="held-out MSR-VTT-style jsonl each pass's model is evaluated on")
    boot.add_argument("--videos", help="folder of the held-out videos")
    boot.add_argument("--runner", choices=["local", "ray", "beam"], help="override the config's runner")
    boot.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    boot.set_defaults(func=_cmd_bootstrap)

    check = sub.add_parser("check", help="preflight: does this machine have what the config's stages need")
    check.add_argument("config")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    check.set_defaults(func=_cmd_check)

    manifest = sub.add_parser("manifest", help="write the manifest that a video folder or tars stand for")
    manifest.add_argument("input", help="a manifest, a folder of videos with sidecars, or WebDataset tars")
    manifest.add_argument("-o", "--out", required=True, help="manifest to write: .parquet, .jsonl or .csv")
    manifest.add_argument("--config", help="config whose `manifest` section says how to read the input")
    manifest.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    manifest.set_defaults(func=_cmd_manifest)

    models = sub.add_parser("models", help="model weights: `models fetch` fills a store workers read")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    mfetch = models_sub.add_parser("fetch", help="download every weight the config needs into a store")
    mfetch.add_argument("config")
    mfetch.add_argument("--cache", help="the store: a folder or fsspec URL (default: models.store)")
    mfetch.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    mfetch.set_defaults(func=_cmd_models_fetch)

    whatif = sub.add_parser("whatif", help="the funnel a decision change would give, from stored scores")
    whatif.add_argument("run_dir")
    whatif.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a decision key")
    whatif.add_argument("--sweep", metavar="KEY=V1,V2,...", help="a table over one decision key's values")
    whatif.add_argument("--json", action="store_true", help="as JSON, in the shape of stats --json")
    whatif.set_defaults(func=_cmd_whatif)

    dif = sub.add_parser("diff", help="the clips two runs kept or dropped differently, per stage and reason")
    dif.add_argument("run_a")
    dif.add_argument("run_b")
    dif.add_argument("--json", action="store_true", help="[{stage, clip_id, a, b}, ...]")
    dif.add_argument("--html", metavar="OUT.html", help="write it as an HTML page in the report's style")
    dif.set_defaults(func=_cmd_diff)

    stages = sub.add_parser("stages", help="list the stages and their config keys")
    stages.set_defaults(func=_cmd_stages)

    stats = sub.add_parser("stats", help="the funnel of a run: rows in, kept, rejected by reason")
    stats.add_argument("run_dir")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.add_argument("--filter-quality", action="store_true",
                       help="instead: each stage's precision, recall and score AUC against an answer key")
    stats.add_argument("--answer-key", help="jsonl answer key (default: beside the manifest)")
    stats.set_defaults(func=_cmd_stats)

    report = sub.add_parser("report", help="write RUN_DIR/report/index.html and report.json")
    report.add_argument("run_dir")
    report.add_argument("--answer-key", help="jsonl answer key (default: beside the manifest)")
    report.set_defaults(func=_cmd_report)

    inspect = sub.add_parser("inspect", help="samples of a WebDataset shard")
    inspect.add_argument("shard")
    inspect.add_argument("-n", type=int, default=5, help="samples to show (0: all)")
    inspect.set_defaults(func=_cmd_inspect)

    demo = sub.add_parser("demo-data", help="generate the built-in demo corpus")
    demo.add_argument("out")
    demo.add_argument("--clips", type=int, default=48, help="clean clips (planted cases are extra)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo_data)

    train = sub.add_parser("train", help="train a video-text model on a run's shards (config: train)")
    train.add_argument("config", help="YAML config; its train section is used")
    train.add_argument("--shards", required=True, help="a run's shards/ directory (with index.json)")
    train.add_argument("--out", required=True, help="output directory; rerunning resumes it")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. train.steps=100")
    train.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", help="text-video retrieval metrics of a trained model")
    ev.add_argument("checkpoint", help="model.pt written by `vtcurate train`")
    ev.add_argument("--shards", help="a run's shards/ directory")
    ev.add_argument("--split", default="val", help="shard split to evaluate (default: val)")
    ev.add_argument("--annotations", help="MSR-VTT-style jsonl: clip_id, text[, lang]")
    ev.add_argument("--videos", help="folder of <clip_id>.<ext> videos for --annotations")
    ev.add_argument("--out", help="directory for eval.json (default: eval/ beside the checkpoint)")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--device", default="cpu", help="cpu or cuda")
    ev.set_defaults(func=_cmd_eval)

    tdemo = sub.add_parser("train-demo-data", help="generate the training demo corpus and held-out set")
    tdemo.add_argument("out")
    tdemo.add_argument("--clips", type=int, default=1024, help="training rows, planted noise included")
    tdemo.add_argument("--heldout", type=int, default=256, help="clean held-out clips (distinct captions)")
    tdemo.add_argument("--mismatch", type=float, default=0.4, help="share with another clip's caption")
    tdemo.add_argument("--partly-wrong", type=float, default=0.1, help="share with one attribute wrong")
    tdemo.add_argument("--noise", action="append", default=[], metavar="KIND=SHARE",
                       help="share of another planted kind (boilerplate_tags, boilerplate_cta, foreign, "
                       "reupload, static, blank, unreadable); 0 plants none")  # fmt: skip
    tdemo.add_argument("--seconds", type=float, default=2.0, help="clip length")
    tdemo.add_argument("--seed", type=int, default=0)
    tdemo.set_defaults(func=_cmd_train_demo_data)
    for command in sub.choices.values():  # also after the command: `vtcurate run ... -v`
        command.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=VERBOSE)
    return p


# Ray warns at every start of an embedded cluster that it turned token authentication on (its
# default; RAY_AUTH_MODE=disabled opts out): a notice about Ray, not about the run.
RAY_TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def configure_logging(verbose: int) -> None:
    """vtcurate's own progress, warnings and errors; other libraries' warnings and errors (open_clip
    logs a dozen INFO lines through the root logger per model loaded).  -v: their INFO lines too,
    and vtcurate's DEBUG; -vv: DEBUG from everything.  A program that calls main() with logging
    already set up (pytest too) keeps its own."""
    if logging.getLogger().handlers:
        return
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("vtcurate").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger(RAY_TOKEN_AUTH_LOGGER).setLevel(logging.NOTSET if verbose else logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    from vtcurate.errors import UserError

    try:
        return args.func(args)
    except UserError as err:
        print(f"vtcurate: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
