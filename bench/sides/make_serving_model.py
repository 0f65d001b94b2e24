"""Row 5, setup: one scikit-learn model, saved for MLServer and as an MLflow model.

    make_serving_model.py OUT_DIR

Writes OUT_DIR/mlserver/ (model.joblib + model-settings.json), OUT_DIR/mlflow-model/,
OUT_DIR/example.json (the first 5 training rows, for Conveyor's packaging, which infers the
signature from them) and the same single row as three request bodies: body-mlserver.json (Open
Inference Protocol v2, one [1, 20] tensor, as MLServer's sklearn runtime takes it),
body-conveyor.json (the same protocol, one [1] tensor per column, as Conveyor's signature names
them) and body-mlflow.json (dataframe_split). The model: logistic regression on 20 numeric
features. Conveyor's side (``conveyor_serving_project.py``) packages this very model.joblib.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

FEATURES = 20


def main() -> None:
    import joblib
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    out = Path(sys.argv[1])
    rng = np.random.default_rng(5)
    x = rng.normal(size=(5000, FEATURES))
    y = (x @ rng.normal(size=FEATURES) + rng.normal(size=5000) > 0).astype(int)
    columns = [f"f{i:02d}" for i in range(FEATURES)]
    frame = pd.DataFrame(x, columns=columns)
    model = LogisticRegression(max_iter=500).fit(frame, y)

    ms = out / "mlserver"
    ms.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, ms / "model.joblib")
    (ms / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "bench",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            },
            indent=2,
        )
    )

    # Saved afresh next to model.joblib every time, so that the two copies are always the same
    # fitted estimator (MLflow refuses to save into an existing folder).
    mf = out / "mlflow-model"
    if mf.exists():
        shutil.rmtree(mf)
    mlflow.sklearn.save_model(
        model,
        str(mf),
        signature=infer_signature(frame, model.predict(frame)),
        pip_requirements=["scikit-learn", "pandas"],
    )

    row = [round(float(v), 6) for v in x[0]]
    (out / "body-mlserver.json").write_text(
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, FEATURES], "datatype": "FP64", "data": row}
                ]
            }
        )
    )
    (out / "body-conveyor.json").write_text(
        json.dumps(
            {
                "inputs": [
                    {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
                    for name, value in zip(columns, row, strict=True)
                ]
            }
        )
    )
    (out / "example.json").write_text(json.dumps({"columns": columns, "data": x[:5].tolist()}))
    (out / "body-mlflow.json").write_text(
        json.dumps({"dataframe_split": {"columns": columns, "data": [row]}})
    )
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
