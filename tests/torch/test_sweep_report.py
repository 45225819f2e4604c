"""What a reader sees of a sweep: the finding under the table, the table's columns and
flags, and the plot's accuracy axis; on hand-made rows, so every expected value is known."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from adaperceiver.cli.evaluation import Row, axis_effects, finding, mark_pareto, table
from adaperceiver.cli.plot import plot


def _row(name, acc, gflops, *, tau=None, ms=None, trained=True, n=1000, **where) -> Row:
    return Row(name=name, num_images=n, accuracy=acc, ci_low=acc - 0.02, ci_high=acc + 0.02,
               top5=min(1.0, acc + 0.1), nll=1 - acc, gflops=gflops, relative=gflops / 10,
               ms_per_image=ms, tau=tau, trained=trained, policy="per_sample" if tau else None,
               **where)


ROWS = [
    _row("N=4 depth=1 width=8", 0.50, 1.0, num_tokens=4, depth=1, width=8),
    _row("N=8 depth=2 width=8", 0.78, 3.1, num_tokens=8, depth=2, width=8),
    _row("N=8 depth=3 width=16", 0.77, 4.0, num_tokens=8, depth=3, width=16),
    _row("exit tau=0.9 per_sample (N=16 width=16)", 0.79, 6.0, tau=0.9, num_tokens=16,
         width=16, depth=2.5),
    _row("N=16 depth=4 width=16", 0.80, 10.0, num_tokens=16, depth=4, width=16),
]


def test_finding_names_the_cheapest_row_keeping_95_percent():
    """Full 80 %: 95 % of it is 76 %; the cheapest row at >= 76 % is N=8 depth=2 width=8 at
    3.1 of 10 GFLOPs (31 %)."""
    line = finding(ROWS)
    assert line.startswith("keeping 95 % of full accuracy (80.00 % at N=16 depth=4 width=16")
    assert "needs 31 % of the compute: N=8 depth=2 width=8 (78.00 %)" in line
    assert "needs 10 % of the compute: N=4 depth=1 width=8" in finding(ROWS, keep=0.6)
    assert "needs 100 % of the compute: N=16 depth=4 width=16" in finding(ROWS, keep=1.0)


def test_axis_effects_at_full_and_at_the_smallest_setting_of_the_others():
    """A 2 x 2 x 2 grid (N 1/4, depth 1/2, width 8/16; intervals +/- 2 points) where tokens
    matter only at the smallest depth and width: with the others at full N changes 0.80 ->
    0.81 (within), with the others at their smallest 0.50 -> 0.70 (beyond). An exit row
    (depth not a grid value) is ignored."""
    acc = {(1, 1, 8): 0.50, (4, 1, 8): 0.70, (1, 2, 8): 0.60, (4, 2, 8): 0.75,
           (1, 1, 16): 0.55, (4, 1, 16): 0.72, (1, 2, 16): 0.80, (4, 2, 16): 0.81}
    rows = [_row(f"N={n} depth={d} width={w}", a, n * d * w, num_tokens=n, depth=d, width=w)
            for (n, d, w), a in acc.items()]
    rows.append(_row("exit tau=0.9 per_sample (N=4 width=16)", 0.2, 50.0, tau=0.9,
                     num_tokens=4, width=16, depth=1.5))
    at_full, at_smallest = axis_effects(rows).splitlines()
    assert at_full == (
        "each axis with the other two at full: tokens N 1 -> 4: 80.00 -> 81.00 % (within the "
        "intervals); depth 1 -> 2: 72.00 -> 81.00 % (beyond the intervals); width 8 -> 16: "
        "75.00 -> 81.00 % (beyond the intervals)")
    assert at_smallest == (
        "each axis with the other two at their smallest: tokens N 1 -> 4: 50.00 -> 70.00 % "
        "(beyond the intervals); depth 1 -> 2: 50.00 -> 60.00 % (beyond the intervals); "
        "width 8 -> 16: 50.00 -> 55.00 % (beyond the intervals)")


def test_table_shows_intervals_flags_and_time_only_when_measured():
    rows = [*ROWS[:-1], _row("N=16 depth=4 width=16", 0.80, 10.0, trained=False,
                             num_tokens=16, depth=4, width=16)]
    mark_pareto(rows)
    text = table(rows).splitlines()
    assert "95% interval" in text[0] and "top-5 %" in text[0] and "ms/img" not in text[0]
    assert text[2].split()[-1] == "*"  # N=8 depth=2 width=8 is on the front
    assert text[3].split()[-1] != "*"  # N=8 depth=3 width=16: beaten by the row above
    assert "76.00-80.00" in text[2]
    assert text[5].rstrip().endswith("*!")  # Pareto and outside the trained budgets
    rows[0].ms_per_image = 0.125
    timed = table(rows).splitlines()
    assert "ms/img" in timed[0] and "0.125" in timed[1]


@pytest.mark.parametrize("floor", [10.0, 50.0])
def test_plot_axis_starts_at_the_given_floor(tmp_path, monkeypatch, floor):
    """The accuracy axis starts at the caller's floor (chance, a baseline), not at the
    worst point (50 %), and the error bars span each row's interval."""
    seen = {}
    close = plt.close

    def keep(fig):
        seen["ylim"] = fig.axes[0].get_ylim()
        seen["bars"] = [c for c in fig.axes[0].containers if hasattr(c, "has_yerr")]
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    plot(ROWS, tmp_path / "p.png", "t", floor=floor)
    assert seen["ylim"][0] == floor
    assert 82 <= seen["ylim"][1] <= 100
    assert all(bar.has_yerr for bar in seen["bars"]) and seen["bars"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
