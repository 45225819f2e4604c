"""Pixel baselines (``adaperceiver.baselines``) on data whose answers are known by hand."""

from __future__ import annotations

import numpy as np

from adaperceiver.baselines import Baseline, nearest_neighbours, pixel_baselines, softmax_regression


def test_softmax_regression_separates_separable_classes():
    """Three well-separated Gaussian blobs in 5 dimensions: every test point right."""
    rng = np.random.default_rng(0)
    centres = np.eye(3, 5) * 6
    y = np.repeat(np.arange(3), 40)
    x = centres[y] + rng.normal(size=(120, 5))
    y_test = np.arange(3).repeat(5)
    x_test = centres[y_test] + rng.normal(size=(15, 5))
    assert (softmax_regression(x, y, x_test, 3) == y_test).all()


def test_nearest_neighbours_by_hand():
    """Points on a line: 0, 1, 2 labelled 0 and 10, 11 labelled 1. The query 4 is closest to
    2 (1-NN: 0); its 5 nearest are all five points, three of them 0 (5-NN: 0); the query 9
    is closest to 10 (1-NN: 1) and 5-NN votes 3 to 2 for 0."""
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    y = np.array([0, 0, 0, 1, 1])
    got = nearest_neighbours(x, y, np.array([[4.0], [9.0]]), (1, 5), classes=2)
    assert got[1].tolist() == [0, 1]
    assert got[5].tolist() == [0, 0]


def test_nearest_neighbours_ties_go_to_the_smallest_label():
    x = np.array([[0.0], [2.0]])
    got = nearest_neighbours(x, np.array([3, 1]), np.array([[1.0]]), (2,), classes=4)
    assert got[2].tolist() == [1]


def test_pixel_baselines_count_correct_images():
    """Images (n, 1, 2, 2) whose class is which pixel is lit: both baselines are perfect,
    and each Baseline counts its correct images."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 60)
    x = np.zeros((60, 1, 2, 2), dtype=np.float32)
    x.reshape(60, 4)[np.arange(60), y] = 1
    found = pixel_baselines(x[:40], y[:40], x[40:], y[40:], classes=4)
    assert [b.name for b in found] == ["softmax regression on pixels",
                                       "1-nearest neighbour on pixels",
                                       "5-nearest neighbours on pixels"]
    assert all(b.correct == 20 and b.total == 20 and b.accuracy == 1.0 for b in found)
    assert Baseline("b", 3, 4).accuracy == 0.75
