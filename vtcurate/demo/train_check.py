"""Check a held-out evaluation of `make train-demo`: text->video R@1 must be >= FACTOR x chance.

python -m vtcurate.demo.train_check EVAL_JSON [--factor 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("eval_json")
    p.add_argument("--factor", type=float, default=5.0)
    args = p.parse_args(argv)
    report = json.loads(Path(args.eval_json).read_text("utf-8"))
    overall = report["overall"]
    r1, chance = overall["t2v"]["R@1"], overall["chance_R@1"]
    ok = r1 >= args.factor * chance
    print(
        f"{'ok ' if ok else 'BAD'} held-out text->video R@1 {r1:.1f}% over {overall['n']} clips: "
        f"{r1 / chance:.1f}x chance ({chance:.1f}%), needed {args.factor:g}x"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
