"""tuneloop: take an LLM feature into production and keep improving it.

The library is the product; the `tuneloop` CLI and server are thin shells over it.
"""

from tuneloop.config import ProjectConfig, load_config
from tuneloop.errors import (
    ApprovalRequired,
    ConfigError,
    DataError,
    EngineError,
    GateFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    StoreError,
    TrainingError,
    TuneloopError,
)
from tuneloop.project import Project

__version__ = "0.1.0"

__all__ = [
    "ApprovalRequired",
    "ConfigError",
    "DataError",
    "EngineError",
    "GateFailed",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "Project",
    "ProjectConfig",
    "StoreError",
    "TrainingError",
    "TuneloopError",
    "__version__",
    "load_config",
]
