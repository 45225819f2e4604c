"""Confidence early exit seen from outside a model (EXIT-1..4).

A port's confidence may differ from the float64 oracle's in the last digits,
so an exit threshold ``tau`` only makes a fair test when no confidence lies
near it. These helpers take the confidences of fixed-depth runs, pick
thresholds in the middle of gaps between them and predict the exit depths.

Shapes: ``conf`` is (depth, B): ``conf[d - 1, b]`` is the max softmax
probability of sample b when the model runs d blocks (EXIT-1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Smallest distance between tau and any confidence for a threshold to be used.
MIN_MARGIN = 1e-3


def max_softmax(logits: np.ndarray) -> np.ndarray:
    """EXIT-1: per-sample max softmax probability of logits (B, 1, C) -> (B,)."""
    z = np.asarray(logits, dtype=np.float64)[:, 0, :]  # (B, C)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).max(axis=-1)


def confidence_table(logits_at_depth: Callable[[int], np.ndarray], depth: int) -> np.ndarray:
    """(depth, B) confidences from ``logits_at_depth(d)`` for d = 1..depth."""
    return np.stack([max_softmax(logits_at_depth(d)) for d in range(1, depth + 1)])


def policy_values(conf: np.ndarray, policy: str) -> np.ndarray:
    """The numbers compared with tau: batch means (EXIT-2) or every sample's (EXIT-3)."""
    return conf.mean(axis=1) if policy == "batch_mean" else conf.ravel()


def margin(conf: np.ndarray, policy: str, tau: float) -> float:
    """Distance from ``tau`` to the nearest confidence the policy compares with it."""
    return float(np.min(np.abs(policy_values(conf, policy) - tau)))


def separated_taus(conf: np.ndarray, policy: str,
                   min_margin: float = MIN_MARGIN) -> list[tuple[float, float]]:
    """Thresholds ``(tau, margin)`` at the middle of every gap >= 2 * min_margin between
    consecutive confidences, ordered by decreasing margin."""
    values = np.unique(policy_values(conf, policy))
    gaps = [((lo + hi) / 2, (hi - lo) / 2) for lo, hi in zip(values[:-1], values[1:], strict=True)]
    return sorted([g for g in gaps if g[1] >= min_margin], key=lambda g: -g[1])


def exit_depths(conf: np.ndarray, tau: float, policy: str) -> np.ndarray:
    """Exit depth per sample (B,) (EXIT-2, EXIT-3): the first d whose confidence >= tau
    (batch mean or own), else the last block."""
    depth, batch = conf.shape
    reached = policy_values(conf, policy).reshape(depth, -1) >= tau  # (depth, 1 or B)
    first = np.where(reached.any(axis=0), reached.argmax(axis=0) + 1, depth)
    return np.broadcast_to(first, (batch,)).astype(np.int64)


def mid_tau(conf: np.ndarray, policy: str, min_margin: float = MIN_MARGIN) -> float | None:
    """A separated threshold giving mid-depth exits: most distinct exit depths first, then
    mean exit depth nearest the middle, then the widest margin. None if no gap qualifies."""
    depth = conf.shape[0]

    def score(candidate: tuple[float, float]) -> tuple:
        depths = exit_depths(conf, candidate[0], policy)
        return (len(set(depths.tolist())), -abs(depths.mean() - (depth + 1) / 2), candidate[1])

    candidates = separated_taus(conf, policy, min_margin)
    return max(candidates, key=score)[0] if candidates else None
