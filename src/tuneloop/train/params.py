"""A run's parameters: `training:` from tuneloop.yaml with CLI overrides, validated once."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tuneloop.config import TrainingConfig
from tuneloop.errors import ConfigError

# not in tuneloop.yaml, but settable per run (tests and benchmarks cap the number of steps)
RUN_ONLY = {"max_steps": None, "run_name": None, "model_name": None,
            "max_eval_examples": None}  # validation on the first N examples only


def resolve_params(config: TrainingConfig, overrides: dict[str, Any] | None = None) -> dict:
    """Merge overrides (None values are ignored) into the config and validate the result."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    run_only = {k: overrides.pop(k, default) for k, default in RUN_ONLY.items()}
    unknown = sorted(set(overrides) - set(TrainingConfig.model_fields))
    if unknown:
        raise ConfigError(f"unknown training parameter(s) {', '.join(unknown)}",
                          hint="allowed: " + ", ".join(TrainingConfig.model_fields))
    try:
        merged = TrainingConfig.model_validate({**config.model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid training parameters: {problems}",
                          hint="check the training: section of tuneloop.yaml and the flags "
                               "given") from None
    return {**merged.model_dump(), **run_only}
