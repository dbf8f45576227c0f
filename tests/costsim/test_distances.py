import math

import pytest

from costsim.services.distances import distribution_distances, percentile_element


def _rounded(p, q):
    kl, js = distribution_distances(p, q)
    return round(kl, 4), round(js, 4)


def test_identical_distributions_have_no_distance():
    # then
    assert distribution_distances([100] * 5, [100] * 5) == (0.0, 0.0)


def test_spread_q_against_a_point_p():
    # when
    kl, js = distribution_distances([100] * 5, [50, 150, 75, 125, 100])

    # then: P sits in one bin that holds a fifth of Q
    assert round(kl, 4) == 1.6094
    assert kl == pytest.approx(math.log(5), abs=1e-9)
    assert round(js, 4) == 0.781


def test_disjoint_supports_give_the_smoothed_kl_and_maximal_js():
    # then
    assert _rounded([10] * 3, [20] * 3) == (23.0259, 1.0)


@pytest.mark.parametrize(("p", "q"), [([], [1, 2]), ([1, 2], []), ([], [])])
def test_an_empty_list_gives_zero(p, q):
    # then
    assert distribution_distances(p, q) == (0.0, 0.0)


def test_values_below_one_count_as_one():
    # when
    distances = distribution_distances([0, 0.5, 1], [1, 1, -3])

    # then: all clamp to 1, so lo == hi
    assert distances == (0.0, 0.0)


def test_the_maximum_falls_in_the_last_bin():
    # given: lo 1, hi 11, width 1; 11 would be bin 10 without the cap
    p = [1, 11]
    q = [1, 10.5]

    # then: 11 and 10.5 both land in bin 9, so the histograms are equal
    assert distribution_distances(p, q) == (0.0, 0.0)


def test_js_distance_stays_within_bounds_and_kl_is_not_negative():
    # given
    cases = [([1, 2, 3], [3, 2, 1]), ([1, 1, 50], [50, 50, 1]), ([5, 7], [5, 7, 7, 7, 100])]

    # then
    for p, q in cases:
        kl, js = distribution_distances(p, q)
        assert kl >= 0.0
        assert 0.0 <= js <= 1.0


def test_percentile_element_takes_the_floor_index():
    # given
    values = list(range(10))

    # then
    assert percentile_element(values, 0.5) == 5
    assert percentile_element(values, 0.9) == 9
    assert percentile_element([3], 0.9) == 3
    assert percentile_element([1, 2], 0.5) == 2
    assert percentile_element(values, 1.0) == 9


def test_percentile_element_of_an_empty_list_raises():
    # then
    with pytest.raises(ValueError):
        percentile_element([], 0.5)
