"""``Model``: what a training step returns. Cheap to import (no pandas, no scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FLAVORS", "Model"]

#: Model flavors Conveyor can package and serve.
FLAVORS = ("sklearn",)


# eq=False: a generated __eq__ would compare the DataFrames, whose truth value pandas refuses.
@dataclass(frozen=True, eq=False)
class Model:
    """A fitted model and a few rows of its input, as a training step returns it.

    Args:
        estimator: A fitted scikit-learn estimator or Pipeline.
        input_example: A few rows of model input (a DataFrame); the model's input signature is
            inferred from its columns and dtypes, and a column may hold nulls in production
            only if it holds one here.
        flavor: How the estimator is saved and called; only ``"sklearn"`` for now.
        features: The feature service the model was trained with and is served with (a
            ``conveyor.features.FeatureService``); the bundle records its exact feature
            versions, so a deployment serving other versions is refused.
    """

    estimator: Any
    input_example: pd.DataFrame
    flavor: str = "sklearn"
    features: Any = None

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValidationError(
                f"model flavor {self.flavor!r} is not supported",
                hint=f"use one of: {', '.join(FLAVORS)}",
            )
        # Checked by duck type so that this module never imports pandas.
        if not (hasattr(self.input_example, "columns") and hasattr(self.input_example, "dtypes")):
            raise ValidationError(
                f"Model.input_example must be a pandas DataFrame, not "
                f"{type(self.input_example).__name__}",
                hint="pass a few rows of the training input, e.g. `X_train.head(5)`",
            )
        # Duck-typed: packaging sits below the feature store and does not import it.
        if self.features is not None and not callable(
            getattr(self.features, "manifest_entry", None)
        ):
            raise ValidationError(
                f"Model.features must be a conveyor.features.FeatureService, not "
                f"{type(self.features).__name__}",
                hint="pass the FeatureService whose features the model was trained on",
            )
        if not hasattr(self.estimator, "predict"):
            raise ValidationError(
                f"Model.estimator must be a fitted scikit-learn estimator with a predict method, "
                f"not {type(self.estimator).__name__}",
                hint="pass the fitted estimator or sklearn Pipeline",
            )
