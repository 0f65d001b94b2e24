"""``python -m conveyor.server [PROJECT_DIR] [--model NAME [--version N]]``: the server without
the CLI, for process managers.

Configuration comes from ``conveyor.yaml`` and the ``CONVEYOR_*`` variables, as for
``conveyor serve``; ``--model`` (repeatable) overrides ``serve.models``. ``--version N`` serves
version N of the one ``--model`` in place of its production version, whatever its stage: the
inference test of a promotion gate measures a version this way before it is promoted.

Exits 0 after a clean stop (SIGTERM), 130 on Ctrl-C, else the error's documented exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from conveyor.core.config import load_config
from conveyor.core.env import CONVEYOR_LOG_LEVEL
from conveyor.core.errors import ConveyorError
from conveyor.core.redact import install_log_redaction
from conveyor.server.serve import serve


def main(argv: list[str]) -> int:
    """Load the configuration of the project folder in ``argv`` (or found from here) and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m conveyor.server",
        description="Serve the production version of each model (Open Inference Protocol v2). "
        "Settings: conveyor.yaml `serve:` and CONVEYOR_HOST, CONVEYOR_PORT, "
        "CONVEYOR_POLL_INTERVAL, CONVEYOR_STORE, CONVEYOR_ARTIFACTS, CONVEYOR_LOG_LEVEL.",
    )
    parser.add_argument("project_dir", nargs="?", type=Path, help="folder of conveyor.yaml")
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="NAME",
        help="serve only this model (repeatable)",
    )
    parser.add_argument(
        "--version",
        type=_version_number,
        metavar="N",
        help="serve this version of the one --model instead of its production version",
    )
    args = parser.parse_args(argv)
    if args.project_dir is not None and not args.project_dir.is_dir():
        parser.error(f"{args.project_dir} is not a folder")
    if args.version is not None and len(args.models or ()) != 1:
        parser.error("--version needs exactly one --model")
    level = os.environ.get(CONVEYOR_LOG_LEVEL, "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_log_redaction()
    try:
        serve(load_config(args.project_dir, {"models": args.models}), version=args.version)
    except ConveyorError as exc:
        logging.getLogger("conveyor.server").error("%s", exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130  # 128 + SIGINT, as a shell reports an interrupted command
    return 0


def _version_number(text: str) -> int:
    if not text.isdigit() or not text.isascii() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number (1, 2, ...)")
    return int(text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
