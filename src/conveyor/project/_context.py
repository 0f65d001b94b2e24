"""Opening a project: its configuration and the two stores it names."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.core.config import Config, load_config
from conveyor.store.artifacts import ArtifactStore, open_artifact_store
from conveyor.store.metadata import MetadataStore

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Project", "open_project"]

logger = logging.getLogger(__name__)


@dataclass
class Project:
    """A loaded configuration with its metadata and artifact stores open."""

    config: Config
    metadata: MetadataStore
    artifacts: ArtifactStore
    #: Command-line values that overrode the configuration (they are part of the run lock).
    overrides: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Sign a checkpoint of the audit chain if it grew (so a later truncation shows), then
        close the stores. A checkpoint that cannot be written (a read-only folder or store) is
        logged, never an error of the command that was run."""
        from conveyor.core.errors import ConfigError, InfrastructureError
        from conveyor.project._audit import checkpoint_if_behind

        try:
            checkpoint_if_behind(self)
        except (InfrastructureError, ConfigError) as exc:
            logger.info("no audit checkpoint written: %s", exc)
        finally:
            self.metadata.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_project(
    project_dir: Path | None = None, overrides: dict[str, Any] | None = None
) -> Project:
    """Load ``conveyor.yaml`` (with environment and flag overrides) and open both stores."""
    config = load_config(project_dir, overrides)
    metadata = MetadataStore.open(config.store)
    return Project(config, metadata, open_artifact_store(config.artifacts), dict(overrides or {}))
