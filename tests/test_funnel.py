"""The funnel's arithmetic (cmp/funnel.py) against published values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmp.funnel import answered, ignored, median_bin, rate, shown_rate, two_proportions, wilson


@pytest.mark.parametrize(
    ("successes", "trials", "interval"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        # Statistics in Medicine 17:857-872, Table II, method 3 (Wilson score).
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_intervals_are_the_published_ones(
    successes: int, trials: int, interval: tuple[float, float]
) -> None:
    assert wilson(successes, trials) == interval


def test_wilson_over_nothing_is_none_and_all_successes_reach_one() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(20, 20) or (0, 0)
    assert high == 1.0 and low == 0.8389  # the mirror of 0/20


def test_two_proportions() -> None:
    # 30/40 against 10/40: pooled 0.5, z = 0.5 / sqrt(0.25 * (1/40 + 1/40)) = sqrt(20).
    test = two_proportions(30, 40, 10, 40)
    assert test.z == round(math.sqrt(20), 4) and test.differs
    assert test.p_value == round(math.erfc(math.sqrt(20) / math.sqrt(2)), 6)
    same = two_proportions(20, 40, 21, 40)
    assert not same.differs and same.p_value is not None and same.p_value > 0.5
    assert two_proportions(0, 0, 1, 2).z is None
    assert not two_proportions(0, 10, 0, 10).differs  # pooled 0: no spread


def test_the_lower_median_of_binned_counts() -> None:
    assert median_bin({}) is None
    assert median_bin({3: 1}) == 3
    assert median_bin({1: 1, 5: 1}) == 1  # the lower of two
    assert median_bin({60: 2, 1: 1, 7: 1, 300: 1}) == 60
    assert rate(1, 3) == 0.3333 and rate(1, 0) is None


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_any_counts_give_proportions_and_answers_beyond_the_showings_count_as_all(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    # Answers may outnumber showings (cmp.funnel.answered): nothing raises, and every
    # rate and interval over showings stays in [0, 1].
    interval = wilson(x1, n1)
    share = shown_rate(x1, n1)
    if n1 == 0:
        assert interval is None and share is None
    else:
        assert interval is not None and share is not None
        assert 0.0 <= interval[0] <= share <= interval[1] <= 1.0
        assert interval == wilson(answered(x1, n1), n1)
    assert two_proportions(x1, n1, x2, n2) == two_proportions(
        answered(x1, n1), n1, answered(x2, n2), n2
    )
    assert ignored(n1, x1) == n1 - answered(x1, n1)
