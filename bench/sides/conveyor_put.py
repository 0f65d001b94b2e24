"""Row 2, Conveyor side: ingest one file into a fresh local artifact store (hash + store).

    conveyor_put.py STORE_DIR FILE

The harness times the whole process (interpreter start included, as for ``dvc add``); the JSON
line adds the time of ``put_file`` alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EXIT_UNAVAILABLE = 3


def main() -> None:
    store_dir, file = sys.argv[1], Path(sys.argv[2])
    try:
        from conveyor.store.artifacts import open_artifact_store
    except ImportError as exc:
        print(json.dumps({"unavailable": f"conveyor API missing: {exc}"}))
        sys.exit(EXIT_UNAVAILABLE)
    t0 = time.perf_counter()
    store = open_artifact_store(store_dir)
    ref = store.put_file(file)
    put_s = time.perf_counter() - t0
    print(json.dumps({"put_s": put_s, "size": ref.size, "digest": str(ref.digest)}))


if __name__ == "__main__":
    main()
