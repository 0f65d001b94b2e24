"""A model's signature: the named, typed columns it takes and the outputs it returns.

Datatypes are those of the Open Inference Protocol (KServe v2), so a signature reads the same in
our server, in KServe and in a client: ``FP64``, ``FP32``, ``INT64``, ``INT32``, ``BOOL`` and
``BYTES`` (text). A signature is inferred from the model's input example; a column is nullable
only if the example holds a null in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    import numpy.typing as npt
    import pandas as pd

__all__ = ["DATATYPES", "ColumnSpec", "Signature", "infer_outputs"]

DATATYPES = ("FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES")
#: Outputs a scikit-learn model can produce, by the method that produces them.
OUTPUT_NAMES = ("predict", "predict_proba")


@dataclass(frozen=True)
class ColumnSpec:
    """One named input or output.

    Args:
        name: Column name (inputs) or output name (``predict``, ``predict_proba``).
        datatype: One of :data:`DATATYPES`.
        shape: ``(-1,)`` for one value per row, ``(-1, k)`` for ``k`` values per row.
        nullable: Whether a row may hold a null here.
    """

    name: str
    datatype: str
    shape: tuple[int, ...] = (-1,)
    nullable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(
                f"column name {self.name!r} is not valid", hint="name columns with strings"
            )
        if self.datatype not in DATATYPES:
            raise ValidationError(
                f"column '{self.name}' has datatype {self.datatype!r}, which is not one of "
                f"{', '.join(DATATYPES)}",
                hint="use an Open Inference Protocol datatype",
            )
        # Lists from YAML or JSON are accepted and frozen, so specs compare and hash as values.
        object.__setattr__(self, "shape", tuple(self.shape))
        if not self.shape or not all(isinstance(d, int) and d >= -1 for d in self.shape):
            raise ValidationError(
                f"column '{self.name}' has shape {list(self.shape)}, which is not valid",
                hint="a shape is a list of sizes, -1 for any, e.g. [-1] or [-1, 3]",
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, for YAML and JSON."""
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
            "nullable": self.nullable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        """The spec written by :meth:`to_dict`.

        Raises:
            ValidationError: when a key is missing or a value is not valid.
        """
        try:
            return cls(
                name=data["name"],
                datatype=data["datatype"],
                shape=tuple(data.get("shape", (-1,))),
                nullable=bool(data.get("nullable", False)),
            )
        except (KeyError, TypeError) as exc:
            raise ValidationError(
                f"column spec {dict(data)!r} is not valid ({exc!r})",
                hint="a column spec has name, datatype, and optionally shape and nullable",
            ) from exc


@dataclass(frozen=True)
class Signature:
    """The inputs a model takes (columns of a frame) and the outputs it returns."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            seen: set[str] = set()
            for spec in specs:
                if spec.name in seen:
                    raise ValidationError(
                        f"signature has two {kind}s named '{spec.name}'",
                        hint="give every column a distinct name",
                    )
                seen.add(spec.name)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, outputs: Sequence[ColumnSpec] = ()) -> Signature:
        """Infer the inputs from a frame's columns and dtypes.

        float -> FP64 (float32 -> FP32), int -> INT64 (int32 -> INT32), bool -> BOOL, and
        text (object or string holding ``str``, or category of ``str``) -> BYTES. A column is
        nullable when it holds a null.

        Raises:
            ValidationError: naming a column whose name or dtype a signature cannot describe.
        """
        inputs = []
        for name in df.columns:
            if not isinstance(name, str):
                raise ValidationError(
                    f"input example column {name!r} is not named by a string",
                    hint="rename the columns to strings, e.g. `df.columns = df.columns.map(str)`",
                )
            column = df[name]
            if not hasattr(column, "dtype"):
                raise ValidationError(
                    f"input example has more than one column named '{name}'",
                    hint="give every column a distinct name",
                )
            datatype = _frame_datatype(name, column)
            inputs.append(ColumnSpec(name, datatype, nullable=bool(column.isna().any())))
        return cls(tuple(inputs), tuple(outputs))

    def to_dict(self) -> dict[str, Any]:
        """The signature as plain data, for YAML and JSON."""
        return {
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """The signature written by :meth:`to_dict`.

        Raises:
            ValidationError: when the data does not describe a signature.
        """
        inputs, outputs = data.get("inputs"), data.get("outputs", [])
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise ValidationError(
                "a signature needs a list of inputs and a list of outputs",
                hint="see Signature.to_dict() for the layout",
            )
        return cls(
            tuple(ColumnSpec.from_dict(spec) for spec in inputs),
            tuple(ColumnSpec.from_dict(spec) for spec in outputs),
        )


def _frame_datatype(name: str, column: pd.Series) -> str:
    import pandas as pd
    from pandas.api import types as pdt

    dtype = column.dtype
    if pdt.is_bool_dtype(dtype):
        return "BOOL"
    if pdt.is_integer_dtype(dtype):
        return "INT32" if getattr(dtype, "itemsize", 8) == 4 else "INT64"
    if pdt.is_float_dtype(dtype):
        return "FP32" if getattr(dtype, "itemsize", 8) == 4 else "FP64"
    if isinstance(dtype, pd.CategoricalDtype) or pdt.is_string_dtype(dtype):
        # Requests arrive as text, so a text column must hold only text for the model to see
        # in production what it saw in training.
        values = column.cat.categories if isinstance(dtype, pd.CategoricalDtype) else column
        kind = pdt.infer_dtype(values, skipna=True)
        if kind not in ("string", "empty"):
            raise ValidationError(
                f"input example column '{name}' ({dtype}) holds {kind} values, not text",
                hint="give the column a numeric or bool dtype, or convert it with `.astype(str)`",
                details={"column": name, "dtype": str(dtype), "inferred": kind},
            )
        return "BYTES"
    raise ValidationError(
        f"input example column '{name}' has dtype {dtype}, which a model signature cannot describe",
        hint="convert it to a number, bool or text column (dates: e.g. to days since an epoch)",
        details={"column": name, "dtype": str(dtype)},
    )


def array_datatype(values: npt.NDArray[Any]) -> str:
    """The datatype of a numpy array of model outputs."""
    kind, size = values.dtype.kind, values.dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT32" if size == 4 and kind == "i" else "INT64"
    if kind == "f":
        return "FP32" if size == 4 else "FP64"
    return "BYTES"


def infer_outputs(estimator: Any, example: pd.DataFrame) -> tuple[ColumnSpec, ...]:
    """Call the estimator on its example to learn the outputs it returns.

    ``predict`` always; ``predict_proba`` for classifiers that have it: one value per row (the
    probability of the positive class) for binary ones, one per class for multiclass ones.

    Raises:
        ValidationError: when the estimator cannot predict on its own input example.
    """
    import numpy as np
    from sklearn.base import is_classifier

    from conveyor.packaging._threads import one_openmp_thread

    try:
        with one_openmp_thread(len(example)):
            predicted = np.asarray(estimator.predict(example))
            proba: np.ndarray[Any, Any] | None = None
            if is_classifier(estimator) and hasattr(estimator, "predict_proba"):
                proba = np.asarray(estimator.predict_proba(example))
    except Exception as exc:
        # Anything the user's estimator raises here means the model cannot be served as is.
        raise ValidationError(
            f"the estimator ({type(estimator).__name__}) cannot predict on its input example: "
            f"{exc}",
            hint="pass the fitted estimator and a few rows of the frame it was fitted on",
        ) from exc
    outputs = [ColumnSpec("predict", array_datatype(predicted), _shape(predicted))]
    # Multi-output classifiers return a list of arrays; only the common case is described.
    if proba is not None and proba.ndim == 2:
        shape = (-1,) if proba.shape[1] == 2 else (-1, proba.shape[1])
        outputs.append(ColumnSpec("predict_proba", array_datatype(proba), shape))
    return tuple(outputs)


def _shape(values: npt.NDArray[Any]) -> tuple[int, ...]:
    return (-1,) if values.ndim <= 1 else (-1, *values.shape[1:])
