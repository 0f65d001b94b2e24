"""One OpenMP thread for small predictions.

scikit-learn's OpenMP code (histogram gradient boosting, say) starts a team of threads for each
call, and those threads busy-wait. For a handful of rows on a shared machine that costs far more
than the work: measured with the churn example's 100-tree model on 2 cores next to other busy
processes, a 1-row predict took 144 ms with the default threads and 24 ms with one; even 20,000
rows took 1.6 s against 0.3 s. Thread count does not change the numbers: each row is computed
by one thread either way.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["SMALL_BATCH", "one_openmp_thread"]

#: Up to this many rows, predictions run on one OpenMP thread.
SMALL_BATCH = 10_000


def one_openmp_thread(rows: int) -> AbstractContextManager[Any]:
    """Limit OpenMP to one thread (of the calling thread) if ``rows`` is a small batch."""
    if rows > SMALL_BATCH:
        return contextlib.nullcontext()
    # OpenMP's thread count is a per-thread setting, so concurrent server threads do not
    # disturb each other; BLAS pools are process-wide and left alone.
    limiter: AbstractContextManager[Any] = _controller().limit(limits=1, user_api="openmp")
    return limiter


@functools.cache
def _controller() -> Any:
    # Built once (~5 ms: it inspects the loaded libraries); limit() then costs ~15 us. Built on
    # first use, after scikit-learn has loaded its OpenMP runtime.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
