"""Small predictions run on one OpenMP thread; large ones keep the default."""

from __future__ import annotations

from threadpoolctl import threadpool_info

from conveyor.packaging._threads import SMALL_BATCH, one_openmp_thread


def _openmp_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"}


def test_a_small_batch_runs_on_one_openmp_thread() -> None:
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime)

    before = _openmp_threads()
    with one_openmp_thread(5):
        inside = _openmp_threads()
    assert inside in (set(), {1})  # empty only where scikit-learn was built without OpenMP
    assert _openmp_threads() == before


def test_a_large_batch_keeps_the_default_threads() -> None:
    before = _openmp_threads()
    with one_openmp_thread(SMALL_BATCH + 1):
        assert _openmp_threads() == before
