"""Data-ratio subsets: nested, deterministic by seed, independent of file order."""
import pytest

from handx_jax.data import subsets

NAMES = [f"clip_{i:05d}" for i in range(2000)]


def test_nested_and_sized():
    small = subsets.subset_names(NAMES, 0.05, seed=3)
    medium = subsets.subset_names(NAMES, 0.2, seed=3)
    full = subsets.subset_names(NAMES, 1.0, seed=3)
    assert (len(small), len(medium), len(full)) == (100, 400, 2000)
    assert set(small) < set(medium) < set(full) == set(NAMES)
    assert medium == [n for n in NAMES if n in set(medium)]  # file order kept


def test_deterministic_and_seeded():
    a = subsets.subset_names(NAMES, 0.2, seed=0)
    assert a == subsets.subset_names(NAMES, 0.2, seed=0)
    assert set(a) != set(subsets.subset_names(NAMES, 0.2, seed=1))
    shuffled = NAMES[::-1]
    assert set(subsets.subset_names(shuffled, 0.2, seed=0)) == set(a)


def test_membership_does_not_depend_on_other_clips():
    kept = set(subsets.subset_names(NAMES, 0.5, seed=2))
    subset_of_rank = subsets.clip_rank_keys(NAMES, 2)
    threshold = sorted(subset_of_rank)[999]
    assert kept == {n for n, k in zip(NAMES, subset_of_rank) if k <= threshold}


def test_bad_ratio_and_duplicates():
    with pytest.raises(ValueError, match="ratio"):
        subsets.subset_names(NAMES, 0.0, seed=0)
    with pytest.raises(ValueError, match="unique"):
        subsets.subset_names(["a", "a"], 0.5, seed=0)
    assert subsets.subset_names(["a", "b", "c"], 0.01, seed=0) != []
