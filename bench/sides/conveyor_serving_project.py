"""Row 5, setup of Conveyor's side: a throwaway project serving the anchors' very model.

    conveyor_serving_project.py MODEL_DIR PROJECT_DIR [--inference-log]
    conveyor_serving_project.py --probe      # exit 3 with the reason when the API is missing

Runs under Conveyor's venv. Removes PROJECT_DIR if it exists and makes it afresh: a metadata
store (``PROJECT_DIR/metadata.db``, SQLite) and an artifact store (``PROJECT_DIR/artifacts``).
Then, as a user's training step and release would: packages MODEL_DIR/mlserver/model.joblib
(the fitted scikit-learn model that MLServer and ``mlflow models serve`` load, written by
``make_serving_model.py``) with ``conveyor.packaging.Model`` and ``build_bundle`` (input
example: MODEL_DIR/example.json), registers it as model "bench" with ``register_version`` and
promotes it to candidate, then to production, with an empty policy. Prints one JSON line: the
store URLs to give the server (CONVEYOR_STORE, CONVEYOR_ARTIFACTS, CONVEYOR_PROJECT_DIR), the
version, the digest. With ``--inference-log`` the project's ``conveyor.yaml`` turns the server's
monitoring log on (every request; it is off by default), for row 5j-5k.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

EXIT_UNAVAILABLE = 3
MODEL = "bench"
ACTOR = "bench"


def _unavailable(reason: str) -> None:
    print(json.dumps({"unavailable": reason}))
    sys.exit(EXIT_UNAVAILABLE)


def probe_imports() -> None:
    try:
        import conveyor.packaging
        import conveyor.registry
        import conveyor.server  # noqa: F401
    except ImportError as exc:
        _unavailable(f"conveyor's server is not importable: {exc}")


def probe() -> None:
    probe_imports()
    print(json.dumps({"ok": True}))


def make(model_dir: Path, project: Path, *, inference_log: bool = False) -> None:
    import joblib
    import pandas as pd

    from conveyor import registry
    from conveyor.packaging import Model, build_bundle
    from conveyor.store.artifacts import open_artifact_store
    from conveyor.store.metadata import MetadataStore

    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    if inference_log:
        (project / "conveyor.yaml").write_text(
            "monitoring:\n  log:\n    enabled: true\n    sample_rate: 1.0\n"
        )
    store_url = f"sqlite:///{project / 'metadata.db'}"
    artifacts_dir = project / "artifacts"

    estimator = joblib.load(model_dir / "mlserver" / "model.joblib")
    example = json.loads((model_dir / "example.json").read_text())
    frame = pd.DataFrame(example["data"], columns=example["columns"])

    metadata = MetadataStore.open(store_url)
    try:
        artifacts = open_artifact_store(str(artifacts_dir))
        bundle = build_bundle(
            artifacts, Model(estimator=estimator, input_example=frame), name=MODEL, metrics={}
        )
        version, _created = registry.register_version(
            metadata,
            model=MODEL,
            artifact_digest=bundle.digest,
            metrics={},
            run_id=None,
            actor=ACTOR,
        )
        policy = registry.load_policy(None)
        for stage in ("candidate", "production"):  # promotion never skips candidate
            registry.promote(
                metadata,
                model=MODEL,
                version=version.version,
                to=stage,
                policy=policy,
                actor=ACTOR,
                reason="benchmark row 5",
            )
    finally:
        metadata.close()
    info = json.dumps(
        {
            "CONVEYOR_STORE": store_url,
            "CONVEYOR_ARTIFACTS": str(artifacts_dir),
            "CONVEYOR_PROJECT_DIR": str(project),
            "model": MODEL,
            "version": version.version,
            "digest": bundle.digest,
        }
    )
    (project / "bench.json").write_text(info + "\n")  # for conveyor_inprocess_predict.py
    print(info)


def main() -> None:
    if sys.argv[1:] == ["--probe"]:
        probe()
    elif len(sys.argv) in (3, 4) and sys.argv[3:] in ([], ["--inference-log"]):
        probe_imports()
        make(
            Path(sys.argv[1]).resolve(),
            Path(sys.argv[2]).resolve(),
            inference_log=sys.argv[3:] == ["--inference-log"],
        )
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
