"""Retrieval metrics from a similarity matrix whose diagonal holds the true pairs.

`sim[i, j]` is the similarity of query i to candidate j; the right answer for query i is j = i.
A rank is 1 + the number of wrong candidates scoring at least as high as the right one: ties count
against the model, so a constant similarity matrix scores chance-level, not perfect.
"""

from __future__ import annotations

import numpy as np


def ranks(sim: np.ndarray) -> np.ndarray:
    """1-based rank of the right candidate of each query (row)."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"need a square similarity matrix, got shape {sim.shape}")
    right = np.diag(sim)[:, None]
    at_least = (sim >= right).sum(axis=1)  # includes the right candidate itself
    return at_least.astype(np.int64)


def recall_metrics(sim: np.ndarray) -> dict[str, float]:
    """R@1/5/10 (percent of queries whose right candidate is in the top k), median and mean rank."""
    r = ranks(sim)
    return {
        "R@1": float(100 * np.mean(r <= 1)),
        "R@5": float(100 * np.mean(r <= 5)),
        "R@10": float(100 * np.mean(r <= 10)),
        "MdR": float(np.median(r)),
        "MnR": float(np.mean(r)),
    }


def dual_softmax(sim: np.ndarray, temperature: float = 100.0) -> np.ndarray:
    """Dual-softmax re-ranking (CAMoE's DSL): each query's scores are weighted by how strongly each
    candidate prefers that query over the other queries (a softmax down the columns)."""
    sim = np.asarray(sim, dtype=np.float64)
    z = temperature * sim
    z = z - z.max(axis=0, keepdims=True)
    prior = np.exp(z)
    prior /= prior.sum(axis=0, keepdims=True)
    return sim * prior


def retrieval_report(text: np.ndarray, video: np.ndarray, langs: list[str]) -> dict:
    """t2v and v2t metrics (plain and DSL) overall and per language (candidates: that language's
    clips only), from L2-normalised text and video embeddings of the same N clips."""
    langs_arr = np.asarray(langs)
    groups = {"overall": np.arange(len(langs))}
    for lang in sorted(set(langs)):
        groups[lang] = np.flatnonzero(langs_arr == lang)
    out = {}
    for name, idx in groups.items():
        sim = text[idx] @ video[idx].T  # rows: texts, columns: videos
        out[name] = {
            "n": int(len(idx)),
            "chance_R@1": float(100 / len(idx)) if len(idx) else 0.0,
            "t2v": recall_metrics(sim),
            "v2t": recall_metrics(sim.T),
            "t2v_dsl": recall_metrics(dual_softmax(sim)),
            "v2t_dsl": recall_metrics(dual_softmax(sim.T)),
        }
    return out


def format_table(report: dict) -> str:
    cols = ("R@1", "R@5", "R@10", "MdR", "MnR")
    lines = [f"{'set':<9}{'n':>5}  {'direction':<9}" + "".join(f"{c:>8}" for c in cols)]
    for name, block in report.items():
        for direction in ("t2v", "v2t", "t2v_dsl", "v2t_dsl"):
            m = block[direction]
            lines.append(f"{name:<9}{block['n']:>5}  {direction:<9}" + "".join(f"{m[c]:>8.1f}" for c in cols))
    return "\n".join(lines)
