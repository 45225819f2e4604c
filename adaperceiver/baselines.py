"""Pixel baselines for a bundled task, in NumPy: what a model must beat to earn its compute.

- softmax regression: multinomial logistic regression on the standardised pixels, weights
  W (P, C) and bias b (C,) minimising mean cross-entropy + ``l2`` / 2 * |W|^2 by full-batch
  gradient descent with Nesterov momentum;
- k-nearest neighbours: the majority label of the k training images closest in Euclidean
  distance of the raw pixels (ties: the smallest label), for each k.

Both are deterministic for given arrays (no random initialisation) and run in float32.
This module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Baseline:
    """A baseline's name and its number of correct test images."""

    name: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total


def softmax_regression(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                       classes: int, *, steps: int = 200, lr: float = 0.5,
                       momentum: float = 0.9, l2: float = 1e-3) -> np.ndarray:
    """Predicted labels (n_test,) of softmax regression trained on (x_train (n, P), y_train)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a, t = (x_train - mean) / std, (x_test - mean) / std
    onehot = np.eye(classes, dtype=a.dtype)[y_train]  # (n, C)
    W, b = np.zeros((a.shape[1], classes), a.dtype), np.zeros(classes, a.dtype)
    vW, vb = np.zeros_like(W), np.zeros_like(b)
    for _ in range(steps):
        lW, lb = W + momentum * vW, b + momentum * vb  # Nesterov look-ahead
        z = a @ lW + lb  # (n, C)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(a)  # d mean CE / dz
        vW = momentum * vW - lr * (a.T @ g + l2 * lW)
        vb = momentum * vb - lr * g.sum(0)
        W, b = W + vW, b + vb
    return (t @ W + b).argmax(1)


def nearest_neighbours(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                       ks: tuple[int, ...], classes: int, chunk: int = 512
                       ) -> dict[int, np.ndarray]:
    """Predicted labels (n_test,) of k-NN for each k in ``ks``, Euclidean on raw pixels."""
    train_sq = (x_train ** 2).sum(1)  # (n,)
    predicted: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    kmax = max(ks)
    for start in range(0, len(x_test), chunk):
        t = x_test[start:start + chunk]
        d = train_sq[None, :] - 2 * t @ x_train.T  # (c, n): |t - x|^2 - |t|^2, same order
        nearest = np.argpartition(d, kmax - 1, axis=1)[:, :kmax]  # (c, kmax), unordered
        order = np.take_along_axis(d, nearest, 1).argsort(1, kind="stable")
        nearest = np.take_along_axis(nearest, order, 1)  # (c, kmax), closest first
        for k in ks:
            votes = np.zeros((len(t), classes), dtype=np.int64)
            np.add.at(votes, (np.arange(len(t))[:, None], y_train[nearest[:, :k]]), 1)
            predicted[k].append(votes.argmax(1))
    return {k: np.concatenate(v) for k, v in predicted.items()}


def pixel_baselines(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, classes: int, ks: tuple[int, ...] = (1, 5)
                    ) -> list[Baseline]:
    """Softmax regression and k-NN on the flattened pixels of images (n, ...)."""
    a = x_train.reshape(len(x_train), -1).astype(np.float32)  # (n, ...) -> (n, P)
    t = x_test.reshape(len(x_test), -1).astype(np.float32)  # (n_test, ...) -> (n_test, P)
    found = [Baseline("softmax regression on pixels",
                      int((softmax_regression(a, y_train, t, classes) == y_test).sum()),
                      len(y_test))]
    for k, labels in nearest_neighbours(a, y_train, t, ks, classes).items():
        found.append(Baseline(f"{k}-nearest neighbour{'s' if k > 1 else ''} on pixels",
                              int((labels == y_test).sum()), len(y_test)))
    return found
