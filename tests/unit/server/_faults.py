"""A real model that misbehaves on purpose, for the rollout and shadow tests.

:class:`Faulty` wraps a fitted scikit-learn classifier and, on every ``predict`` /
``predict_proba`` call, can fail (``error_rate``), be slow (``delay_s``) or hang (``hang_s``).
It is packaged, registered and served like any model (the owner trusts its type when packaging),
so the server, the batcher and the router meet the fault exactly as they would meet a broken
model in production. The server subprocesses import it by its module path, ``tests`` being
importable from the repository root.

Faults fire only where ``CONVEYOR_TEST_FAULTS=1`` is set (the server under test), so packaging,
which calls the model on its input example, succeeds.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["ARMED", "Faulty", "faulty_pipeline"]

#: The environment variable that arms the faults.
ARMED = "CONVEYOR_TEST_FAULTS"


class Faulty(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """``inner`` with injected faults; deterministic error pattern from a per-call counter.

    Args:
        inner: The classifier that answers when no fault is injected.
        error_rate: Fraction of calls that raise (every ``round(1/error_rate)``-th call).
        delay_s: Extra seconds every call takes (sleeping: no CPU used).
        hang_s: Seconds every call blocks, as a hung dependency would.
    """

    def __init__(
        self, inner: Any = None, error_rate: float = 0.0, delay_s: float = 0.0, hang_s: float = 0.0
    ) -> None:
        self.inner = inner
        self.error_rate = error_rate
        self.delay_s = delay_s
        self.hang_s = hang_s

    def fit(self, x: Any, y: Any) -> Faulty:
        self.inner.fit(x, y)
        self.classes_ = self.inner.classes_
        return self

    def _fault(self) -> None:
        if os.environ.get(ARMED) != "1":
            return
        if self.hang_s:
            threading.Event().wait(self.hang_s)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.error_rate:
            every = max(1, round(1 / self.error_rate))
            if _next_call() % every == 0:
                raise RuntimeError(f"injected fault (pid {os.getpid()})")

    def predict(self, x: Any) -> Any:
        self._fault()
        return self.inner.predict(x)

    def predict_proba(self, x: Any) -> Any:
        self._fault()
        return self.inner.predict_proba(x)


_calls = itertools.count(1)
_calls_lock = threading.Lock()


def _next_call() -> int:
    with _calls_lock:
        return next(_calls)


def faulty_pipeline(c: float = 1.0, **faults: float) -> Any:
    """The server tests' churn pipeline with a :class:`Faulty` final step, fitted."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from tests.unit.server._support import training_frame

    frame, labels = training_frame()
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "tenure"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                    ]
                ),
            ),
            ("model", Faulty(LogisticRegression(C=c), **faults)),
        ]
    )
    return pipeline.fit(frame, labels)
