"""Build a model bundle into an artifact store, and load one back, verified.

A bundle is a manifest plus the files it names by digest, each stored as its own artifact::

    manifest.yaml                  the bundle digest is this file's digest
    model/model.skops              the estimator, saved with skops (never pickle)
    model/input_example.parquet    a few rows of input; the signature was inferred from them
    env/requirements.txt           the locked versions, installable with pip

Loading fetches the manifest by digest and every file by the digest the manifest gives; the
artifact store checks each against its digest, and so does the loader, so a corrupt or swapped
byte stops the load. The estimator is then built trusting only the types recorded at packaging.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.digest import digest_bytes, parse_digest
from conveyor.core.errors import IntegrityError, NotFoundError, ValidationError
from conveyor.core.names import validate_name
from conveyor.packaging._codec import decode_frame, dump_estimator, encode_frame, load_estimator
from conveyor.packaging._env import environment_drift, lock_environment
from conveyor.packaging._manifest import (
    EXAMPLE_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    REQUIREMENTS_FILE,
    Manifest,
    plain_metrics,
    plain_params,
)
from conveyor.packaging._model import FLAVORS, Model
from conveyor.packaging._signature import OUTPUT_NAMES, Signature, infer_outputs
from conveyor.packaging._threads import one_openmp_thread
from conveyor.packaging._validate import coerce_frame

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt
    import pandas as pd

    from conveyor.packaging._signature import ColumnSpec
    from conveyor.store.artifacts import ArtifactRef, ArtifactStore

__all__ = ["Bundle", "LoadedModel", "build_bundle", "load_bundle"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bundle:
    """A stored bundle.

    Attributes:
        digest: The bundle's identity: the digest of its manifest.
        manifest: What the manifest says.
        files: Every stored file by its path in the bundle, ``manifest.yaml`` included.
    """

    digest: str
    manifest: Manifest
    files: dict[str, ArtifactRef]


def build_bundle(
    artifacts: ArtifactStore,
    model: Model,
    *,
    name: str,
    metrics: dict[str, float],
    run_id: str | None = None,
    datasets: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    created_by: str | None = None,
) -> Bundle:
    """Package a model: store its files and a manifest naming them, and return the bundle.

    The same model with the same metadata in the same environment always gives the same
    digest: the manifest holds no timestamp and no version number, and the model file is
    written canonically.

    Args:
        artifacts: Where to store the files.
        model: The fitted estimator and its input example.
        name: The model's registered name.
        metrics: Evaluation metrics, recorded in the manifest.
        run_id: The run that produced the model.
        datasets: Role -> dataset version digest, e.g. ``{"train": "blake3:..."}``.
        params: Training parameters (plain values), recorded in the manifest.
        created_by: Who packaged it. It is part of the digest, so two people packaging the
            same model get two bundles; leave it out unless that is what you want.

    Raises:
        ValidationError: when the model cannot be packaged (the estimator cannot predict on its
            example, skops cannot save it, a column's dtype has no signature type ...).
    """
    validate_name("model", name)
    if not isinstance(model, Model):
        raise ValidationError(
            f"build_bundle takes a conveyor.Model, not {type(model).__name__}",
            hint="wrap the estimator: conveyor.Model(estimator=..., input_example=...)",
        )
    example = model.input_example
    if len(example) == 0:
        raise ValidationError(
            f"the input example of model '{name}' has no rows",
            hint="pass a few rows of the training input, e.g. `X_train.head(5)`",
        )
    inputs = Signature.from_frame(example).inputs
    # Outputs are inferred from the example as the server will see it, coerced to the
    # signature, so a model that cannot take its own validated input fails here, not in serving.
    coerced = coerce_frame(example, inputs, model=f"model '{name}'")
    signature = Signature(inputs, infer_outputs(model.estimator, coerced))
    saved = dump_estimator(model.estimator)
    lock = lock_environment(saved.packages)
    contents = {
        MODEL_FILE: saved.data,
        EXAMPLE_FILE: encode_frame(example),
        REQUIREMENTS_FILE: lock.requirements_txt().encode(),
    }
    files = {path: artifacts.put_bytes(data) for path, data in contents.items()}
    manifest = Manifest(
        name=name,
        flavor=model.flavor,
        signature=signature,
        files=files,
        env=lock,
        trusted_types=saved.trusted,
        metrics=plain_metrics(metrics),
        params=plain_params(params or {}),
        datasets=_datasets(datasets or {}),
        run_id=run_id,
        created_by=created_by,
        features=_features(model),
    )
    ref = artifacts.put_bytes(manifest.to_yaml())
    if saved.trusted:
        logger.info(
            "model bundle %s trusts types beyond skops' defaults: %s",
            ref.digest,
            ", ".join(saved.trusted),
            extra={"bundle": ref.digest, "trusted_types": list(saved.trusted)},
        )
    return Bundle(ref.digest, manifest, {**files, MANIFEST_FILE: ref})


def load_bundle(artifacts: ArtifactStore, digest: str) -> LoadedModel:
    """Load a bundle, verifying the manifest and every file against their digests.

    Logs a warning (and loads anyway) when the installed versions of the model's packages
    differ from the bundle's lock.

    Raises:
        NotFoundError: when the manifest or a file is not in the store.
        IntegrityError: when stored bytes do not match the digest they are listed under.
        ValidationError: when the digest is not a bundle's, or the model file holds types that
            were not trusted at packaging, or cannot be loaded with the installed packages.
    """
    label = f"model bundle {parse_digest(digest)}"
    manifest = Manifest.from_yaml(
        _fetch(artifacts, digest, f"the manifest of {label}"), source=f"artifact {digest}"
    )
    _check_loadable(manifest, label)
    contents = {
        path: _fetch_file(artifacts, ref, path, label)
        for path, ref in sorted(manifest.files.items())
    }
    drift = environment_drift(manifest.env)
    if drift:
        logger.warning(
            "%s was packaged with %s but this process has %s; its predictions may differ "
            "(install its env/requirements.txt to match)",
            label,
            ", ".join(f"{name}=={locked}" for name, (locked, _) in drift.items()),
            ", ".join(f"{name} {now or '(not installed)'}" for name, (_, now) in drift.items()),
            extra={"bundle": digest, "drift": {k: list(v) for k, v in drift.items()}},
        )
    estimator = load_estimator(
        contents[MODEL_FILE], manifest.trusted_types, what=f"{MODEL_FILE} of {label}"
    )
    return LoadedModel(
        digest=digest, manifest=manifest, estimator=estimator, example=contents[EXAMPLE_FILE]
    )


class LoadedModel:
    """A verified bundle, loaded and ready to predict.

    Attributes:
        digest: The bundle digest.
        manifest: The bundle's manifest.
        signature: Its inputs and outputs.
    """

    def __init__(self, *, digest: str, manifest: Manifest, estimator: Any, example: bytes) -> None:
        self.digest = digest
        self.manifest = manifest
        self.signature: Signature = manifest.signature
        self._estimator = estimator
        self._example = example
        self._label = f"model '{manifest.name}'"
        self._head = _split_pipeline(estimator)

    def __repr__(self) -> str:
        return f"<LoadedModel {self.manifest.name} {self.digest}>"

    @property
    def estimator(self) -> Any:
        """The loaded scikit-learn estimator."""
        return self._estimator

    @property
    def input_example(self) -> pd.DataFrame:
        """The input example packaged with the model (a new frame on each call)."""
        return decode_frame(self._example)

    def validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Coerce ``frame`` to the signature's columns, order and dtypes.

        Raises:
            ValidationError: naming the first column that is missing, unexpected, null where
                it must not be, or holding a value of the wrong type, and what was expected.
        """
        return coerce_frame(frame, self.signature.inputs, model=self._label)

    def predict(
        self, frame: pd.DataFrame, *, outputs: Sequence[str] | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        """Validate ``frame`` and return the model's outputs, keyed by the signature's names.

        ``predict`` is the label (or value, for a regressor); ``predict_proba`` is, for a
        binary classifier, the probability of the positive class (``classes_[1]``), and for a
        multiclass one a row per input with a column per class. Batches of up to 10,000 rows
        run on one OpenMP thread (see ``_threads``).

        Args:
            frame: The input rows.
            outputs: Compute only these outputs (the Open Inference Protocol's ``outputs``);
                default: every output of the signature.

        Raises:
            ValidationError: when the frame does not fit the signature, has no rows, the
                estimator rejects it, or ``outputs`` names an output the model does not have.
        """
        specs = self._wanted(outputs)
        rows = self.validate(frame)
        if len(rows) == 0:
            raise ValidationError(
                f"{self._label}: nothing to predict, the frame has no rows",
                hint="send at least one row",
            )
        result: dict[str, npt.NDArray[Any]] = {}
        try:
            with one_openmp_thread(len(rows)):
                final, features = self._features(rows, len(specs))
                for spec in specs:
                    if spec.name == "predict":
                        result["predict"] = np.asarray(final.predict(features))
                    else:
                        proba = np.asarray(final.predict_proba(features))
                        result[spec.name] = proba[:, 1] if len(spec.shape) == 1 else proba
        except (ValueError, TypeError) as exc:
            # scikit-learn reports data it cannot take as ValueError or TypeError.
            raise ValidationError(
                f"{self._label} ({self.digest}) cannot predict on this input: {exc}",
                hint="check the values against the model's signature and input example",
            ) from exc
        return result

    def _wanted(self, outputs: Sequence[str] | None) -> list[ColumnSpec]:
        if outputs is None:
            return list(self.signature.outputs)
        by_name = {spec.name: spec for spec in self.signature.outputs}
        for name in outputs:
            if name not in by_name:
                raise ValidationError(
                    f"{self._label} has no output '{name}'",
                    hint=f"its outputs are: {', '.join(by_name)}",
                )
        return [by_name[name] for name in dict.fromkeys(outputs)]

    def _features(self, rows: pd.DataFrame, calls: int) -> tuple[Any, Any]:
        """The estimator that answers, and its input.

        A pipeline asked for two outputs would run its transformers (and scikit-learn's input
        checks) once per output; this runs them once and asks the final step for both, which
        is what ``Pipeline.predict`` and ``predict_proba`` do internally.
        """
        if calls < 2 or self._head is None:
            return self._estimator, rows
        head, final = self._head
        return final, head.transform(rows)


def _split_pipeline(estimator: Any) -> tuple[Any, Any] | None:
    """A plain scikit-learn pipeline as (its transformers, its final step), else None."""
    from sklearn.pipeline import Pipeline

    # Exactly Pipeline: a subclass may change what predict does.
    if type(estimator) is not Pipeline or len(estimator.steps) < 2:
        return None
    final = estimator.steps[-1][1]
    if final is None or final == "passthrough":
        return None
    return estimator[:-1], final


def _check_loadable(manifest: Manifest, label: str) -> None:
    if manifest.flavor not in FLAVORS:
        raise ValidationError(
            f"{label} has flavor {manifest.flavor!r}, which this Conveyor cannot load",
            hint=f"flavors it loads: {', '.join(FLAVORS)}; upgrade conveyor",
        )
    missing = [path for path in (MODEL_FILE, EXAMPLE_FILE) if path not in manifest.files]
    if missing:
        raise ValidationError(
            f"{label} lists no {', '.join(missing)} in its manifest",
            hint="the manifest is incomplete; rebuild the bundle from its training run",
        )
    unknown = [spec.name for spec in manifest.signature.outputs if spec.name not in OUTPUT_NAMES]
    if unknown:
        raise ValidationError(
            f"{label} has outputs this Conveyor cannot produce: {', '.join(unknown)}",
            hint=f"outputs it produces: {', '.join(OUTPUT_NAMES)}; upgrade conveyor",
        )


def _fetch(artifacts: ArtifactStore, digest: str, what: str) -> bytes:
    try:
        return artifacts.get_bytes(digest)
    except NotFoundError as exc:
        raise NotFoundError(
            f"{what} is not in the artifact store at {artifacts.uri}",
            hint="check the digest (`conveyor model list` shows them) and that "
            "CONVEYOR_ARTIFACTS points to the store the model was registered in",
        ) from exc
    except IntegrityError as exc:
        raise IntegrityError(
            f"{what} is corrupt: {exc.message}", hint=exc.hint, details=exc.details
        ) from exc


def _fetch_file(artifacts: ArtifactStore, ref: ArtifactRef, path: str, label: str) -> bytes:
    data = _fetch(artifacts, ref.digest, f"file {path} ({ref.digest}) of {label}")
    # The store checked the digest already; a store implementation is a plug-in, so the bundle
    # checks again (BLAKE3 at ~3 GB/s makes it cheap) along with the size.
    actual = digest_bytes(data)
    if actual != ref.digest or len(data) != ref.size:
        raise IntegrityError(
            f"file {path} of {label} does not match its manifest: expected {ref.digest} "
            f"({ref.size} bytes), got {actual} ({len(data)} bytes)",
            hint="the bundle was altered; rebuild it from its training run",
            details={"path": path, "expected": ref.digest, "actual": actual},
        )
    return data


def _datasets(datasets: dict[str, str]) -> dict[str, str]:
    for role, ref in datasets.items():
        if not isinstance(role, str) or not isinstance(ref, str):
            raise ValidationError(
                f"dataset {role!r}: {ref!r} is not a role name and a dataset version",
                hint='pass datasets as {"train": "<dataset version digest>"}',
            )
    return dict(datasets)


def _features(model: Model) -> dict[str, Any] | None:
    """The manifest's ``features`` entry from the model's feature service, checked."""
    if model.features is None:
        return None
    entry = model.features.manifest_entry()
    shape = {"service": str, "version": str, "entity": str, "features": list}
    if not isinstance(entry, dict) or any(
        not isinstance(entry.get(k), t) for k, t in shape.items()
    ):
        raise ValidationError(
            f"Model.features gave a manifest entry {entry!r}",
            hint="pass a conveyor.features.FeatureService as Model(features=...)",
        )
    checked = {k: entry[k] for k in shape}
    ttls = entry.get("ttl_seconds")
    if ttls:
        if not isinstance(ttls, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in ttls.values()
        ):
            raise ValidationError(
                f"Model.features gave TTLs {ttls!r}, not feature name -> seconds",
                hint="pass a conveyor.features.FeatureService as Model(features=...)",
            )
        checked["ttl_seconds"] = {str(k): float(v) for k, v in ttls.items()}
    return checked
