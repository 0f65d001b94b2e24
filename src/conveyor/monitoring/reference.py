"""The model's own predictions on its training reference: what prediction drift compares with.

Prediction drift and output anomalies ask "does the model answer live traffic as it answered
the data it was trained on?", so they need the production version's answers on (a sample of)
that data. Computing them means loading the bundle and predicting, a second or so for 10,000
rows; doing that on every monitor round would cost more than the round itself, so the result
is cached in one Parquet file per (bundle, reference, sample), under the project's state
folder. Both inputs are immutable (a bundle digest names exactly one model, the reference
digest covers its column names and every value), so a cached file is never stale and never
needs invalidating; a new version or new reference data gets a new file.

The sample is drawn with a fixed seed, so two monitors on the same data compute, and cache,
the same predictions.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt
    import pandas as pd

    from conveyor.store.artifacts import ArtifactStore

__all__ = [
    "CACHE_DIR",
    "DEFAULT_SAMPLE",
    "ReferencePredictions",
    "reference_digest",
    "reference_predictions",
]

logger = logging.getLogger(__name__)

#: Under the project's state folder (``.conveyor/``).
CACHE_DIR = "monitoring/reference-predictions"
#: Rows of the reference predicted at most: enough for a drift test's reference sketch, and
#: bounded so a 10-million-row training set does not make the first round take minutes.
DEFAULT_SAMPLE = 10_000
_SEED = 0


@dataclass(frozen=True)
class ReferencePredictions:
    """A version's predictions on its reference sample.

    Attributes:
        predictions: The ``predict`` output, one per sampled row.
        rows: The rows predicted on (at most the sample size).
        path: The cache file.
        cached: Whether they were read from the cache rather than computed.
    """

    predictions: npt.NDArray[Any]
    rows: int
    path: Path
    cached: bool


def reference_digest(reference: pd.DataFrame) -> str:
    """A digest of a frame's column names, dtypes and values (not its index)."""
    import pandas as pd

    from conveyor.core.digest import digest_bytes, digest_json

    values = pd.util.hash_pandas_object(reference, index=False).to_numpy().tobytes()
    header = digest_json([[str(c), str(t)] for c, t in reference.dtypes.items()])
    return digest_bytes(header.encode() + values)


def reference_predictions(
    artifacts: ArtifactStore,
    *,
    model: str,
    version: int,
    bundle: str,
    reference: pd.DataFrame,
    cache_dir: Path,
    sample: int = DEFAULT_SAMPLE,
) -> ReferencePredictions:
    """The predictions of ``model`` ``version`` (bundle digest ``bundle``) on ``reference``.

    Args:
        artifacts: Where the bundle is stored.
        model: The model's name (names the cache file, with the version).
        version: Its version.
        bundle: The version's bundle digest.
        reference: The training reference; columns the model does not take are ignored.
        cache_dir: The cache folder (``<project>/.conveyor/monitoring/reference-predictions``).
        sample: Predict on at most this many rows, drawn with a fixed seed.

    Raises:
        NotFoundError: the bundle is not in the artifact store.
        IntegrityError: the bundle's bytes do not match its digest.
        ValidationError: ``sample`` is not positive, or the reference lacks a column the model
            takes, or holds values it cannot predict on.
    """
    if sample < 1:
        raise ValidationError(
            f"reference sample size {sample} must be positive", hint="e.g. 10000 rows"
        )
    from conveyor.core.digest import digest_json

    key = digest_json(
        {"bundle": bundle, "reference": reference_digest(reference), "sample": sample}
    )
    path = cache_dir / f"{model}-v{version}-{key.split(':', 1)[1][:24]}.parquet"
    if path.is_file():
        import pyarrow.parquet as pq

        predictions = pq.read_table(path).column("prediction").to_numpy()
        return ReferencePredictions(predictions, len(predictions), path, cached=True)

    from conveyor.packaging import load_bundle

    loaded = load_bundle(artifacts, bundle)
    inputs = [spec.name for spec in loaded.signature.inputs]
    missing = [c for c in inputs if c not in reference.columns]
    if missing:
        raise ValidationError(
            f"the reference data of model '{model}' v{version} has no column "
            f"{', '.join(repr(c) for c in missing)}, which the model takes",
            hint="give reference data with the model's input columns (--reference FILE)",
        )
    rows = reference[inputs]
    if len(rows) > sample:
        rows = rows.sample(n=sample, random_state=_SEED).sort_index()
    predictions = loaded.predict(rows, outputs=["predict"])["predict"]
    _write(path, predictions)
    return ReferencePredictions(predictions, len(predictions), path, cached=False)


def _write(path: Path, predictions: npt.NDArray[Any]) -> None:
    """One ``prediction`` column; written atomically, so a reader never sees half a file. A
    folder that cannot be written only costs the cache, never the monitor."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.core.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    pq.write_table(pa.table({"prediction": predictions}), buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:  # a read-only project mount (a monitor in a pod): predict next time
        logger.warning(
            "reference predictions not cached (%s); they are computed again at the next start",
            exc,
        )
