"""adaperceiver.stats: the Wilson score interval against published values."""

from __future__ import annotations

import pytest

from adaperceiver.stats import wilson_interval

# Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (score interval
# without continuity correction), 95 %: (k, n) -> (low, high), four decimals.
NEWCOMBE_1998 = [
    ((81, 263), (0.2553, 0.3662)),
    ((15, 148), (0.0624, 0.1605)),
    ((0, 20), (0.0000, 0.1611)),
    ((1, 29), (0.0061, 0.1718)),
]


@pytest.mark.parametrize("kn, expected", NEWCOMBE_1998, ids=[f"{k}/{n}" for (k, n), _ in
                                                             NEWCOMBE_1998])
def test_wilson_matches_newcombe_1998(kn, expected):
    low, high = wilson_interval(*kn)
    assert low == pytest.approx(expected[0], abs=5e-5)
    assert high == pytest.approx(expected[1], abs=5e-5)


def test_wilson_is_symmetric_and_shrinks_with_n():
    """k/n and (n-k)/n mirror each other; 100 times the trials, a tenth of the width."""
    low, high = wilson_interval(30, 100)
    mirrored = wilson_interval(70, 100)
    assert mirrored == pytest.approx((1 - high, 1 - low), abs=1e-12)
    wide, narrow = high - low, (lambda i: i[1] - i[0])(wilson_interval(3000, 10000))
    assert narrow == pytest.approx(wide / 10, rel=0.05)


@pytest.mark.parametrize("k, n, z, phrase", [
    (1, 0, 1.96, "n must"), (5, 4, 1.96, "k must"), (-1, 4, 1.96, "k must"),
    (1.5, 4, 1.96, "k must"), (1, 4, 0, "z must"), (1, 4, float("nan"), "z must")])
def test_wilson_rejects_bad_arguments(k, n, z, phrase):
    with pytest.raises(ValueError, match=phrase):
        wilson_interval(k, n, z)
