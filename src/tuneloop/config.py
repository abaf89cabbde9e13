"""The `tuneloop.yaml` schema: the task, its metrics and latency budget, data, models and variants.

`load_config(path)` is the only way in. Every problem becomes one `ConfigError` whose message
names the file, the field path (`sources[2].tier`), the line, what was found and what is allowed.
Rollout state is operational and lives in the store, not here.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneloop.errors import ConfigError

CONFIG_FILE = "tuneloop.yaml"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Tier = Literal[1, 2]
Use = Literal["train", "evaluate", "rag", "view", "export", "deploy-public"]
USES: tuple[str, ...] = ("train", "evaluate", "rag", "view", "export", "deploy-public")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class TaskConfig(_Model):
    """What the model must do."""

    name: Name
    description: str = ""
    format: Literal["chat", "text", "json"] = "chat"
    system_prompt: str = "You are a helpful assistant."
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _json_needs_schema(self) -> TaskConfig:
        if self.format == "json" and not self.json_schema:
            raise ValueError("format 'json' needs a json_schema describing the output")
        return self


class MetricConfig(_Model):
    """One quality metric with its gate."""

    name: str
    threshold: float | None = None
    higher_is_better: bool = True
    required: bool = True
    primary: bool = False
    params: dict[str, Any] = Field(default_factory=dict)


class LatencyConfig(_Model):
    """The latency budget (service level objective) a variant must meet."""

    p95_ms: float = Field(default=5000, gt=0)
    ttft_ms: float = Field(default=1000, gt=0)
    concurrency: int = Field(default=1, ge=1, le=256)


class SourceConfig(_Model):
    """A file or folder of records or documents, with its privacy tier."""

    name: Name
    path: str
    kind: Literal["records", "documents"] = "records"
    format: Literal["auto", "jsonl", "csv", "parquet", "documents"] = "auto"
    tier: Tier
    owner: str = ""
    description: str = ""
    subject_field: str | None = None


class KnowledgeBaseConfig(_Model):
    """Documents indexed for retrieval."""

    sources: list[Name] = Field(default_factory=list)
    chunk_tokens: int = Field(default=256, ge=16, le=4096)
    overlap_tokens: int = Field(default=32, ge=0, le=1024)
    embedding_model: str = "bundled:all-minilm-l6-v2"

    @model_validator(mode="after")
    def _overlap_smaller(self) -> KnowledgeBaseConfig:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError("overlap_tokens must be smaller than chunk_tokens")
        return self


class ModelConfig(_Model):
    """A base model: the bundled one, a local folder or GGUF file, or an OpenAI-compatible URL."""

    name: Name = "smollm2-135m"
    path: str = "bundled:smollm2-135m"
    engine: Literal["auto", "llama.cpp", "transformers", "openai"] = "auto"
    base_url: str | None = None
    api_key_env: str | None = None
    context_length: int = Field(default=2048, ge=128)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> ModelConfig:
        if self.engine == "openai" and not self.base_url:
            raise ValueError("engine 'openai' needs base_url")
        return self


class SplitConfig(_Model):
    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must add up to 1.0, found {total:g}")
        return self


class DatasetConfig(_Model):
    """A recipe that builds a dataset version from sources."""

    name: Name
    sources: list[Name] = Field(min_length=1)
    split: SplitConfig = Field(default_factory=SplitConfig)
    near_dup_threshold: float = Field(default=0.85, gt=0, le=1)
    min_output_tokens: int = Field(default=1, ge=0)
    max_input_tokens: int = Field(default=1024, ge=1)
    max_output_tokens: int = Field(default=512, ge=1)
    redact: bool = True
    seed: int = 0
    slice_field: str | None = None


class TrainingConfig(_Model):
    """Fine-tuning hyperparameters; CLI flags override them."""

    method: Literal["lora", "full"] = "lora"
    epochs: float = Field(default=2, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    # Micro-batch and accumulation: memory grows with the micro-batch (float32 on CPU), the
    # optimizer sees batch_size * gradient_accumulation conversations per step.
    batch_size: int = Field(default=2, ge=1)
    gradient_accumulation: int = Field(default=4, ge=1)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    lr_scheduler: str = "cosine"
    max_seq_length: int = Field(default=512, ge=16)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target_modules: list[str] | str = "all-linear"
    # LoRA on the last N decoder layers only: backward then stops N layers down, so a step
    # costs about one forward pass plus N layers of backward (None: every layer).
    lora_layers: int | None = Field(default=None, ge=1)
    packing: bool = True
    # Matrix products in bfloat16 (weights and optimizer stay float32): "auto" uses it where
    # the processor computes bfloat16 natively (AVX512-BF16 or AMX on CPU, a bf16 GPU), where a
    # step is several times faster; "fp32" turns it off.
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    eval_steps: int = Field(default=50, ge=1)
    save_steps: int = Field(default=50, ge=1)
    early_stopping_patience: int | None = 3
    seed: int = 42
    export_quantization: Literal["f16", "q8_0", "f32"] = "q8_0"
    parity_threshold: float = Field(default=0.8, ge=0, le=1)
    parity_prompts: int = Field(default=8, ge=1, le=256)  # greedy answers compared
    # Retrieval-aware fine-tuning: train on the prompt a RAG variant serves (its sources for
    # each training question, the gold passage where known), so the model learns to copy facts
    # from its sources. The variant is `retrieval_variant`, else the first one with retrieval.
    retrieval: bool = False
    retrieval_variant: str | None = None
    # share of examples whose gold passage is taken out and whose answer says so instead
    retrieval_unanswerable: float = Field(default=0.1, ge=0, lt=1)
    retrieval_abstain: str = "The sources I have do not cover this, so I cannot answer it."
    # loss weight of answer tokens copied from the prompt's sources or question (3 tokens in a
    # row found there, the task's instructions aside): the facts, a few tokens of an answer
    # that is otherwise template (1: every answer token weighs the same)
    copy_weight: float = Field(default=1.0, ge=1, le=20)


class RetrievalConfig(_Model):
    """How a variant retrieves and lays out its sources (see `rag.prompt` for each choice)."""

    enabled: bool = False
    top_k: int = Field(default=4, ge=1, le=100)
    context_tokens: int = Field(default=768, ge=32)
    reranker: str | None = None
    # drop chunks whose fused score is below this share of the best chunk's (0: keep all)
    min_score_ratio: float = Field(default=0.0, ge=0, le=1)
    # keep only this many sentences of each chunk, those sharing most words with the question
    sentences: int | None = Field(default=None, ge=1)
    # where the sources go: end of the system message, or just before the question
    placement: Literal["system", "user"] = "system"
    # what the system message tells the model about the sources (None: `rag.prompt`'s
    # INSTRUCTIONS; "" for none). A fine-tuned model learns the use of sources from its
    # training rows, where every token of a long instruction costs training time.
    instructions: str | None = None


class GenerationConfig(_Model):
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = 0
    # end an answer at its first verbatim repetition of a sentence of 4+ words: a small model
    # at temperature 0 can repeat one sentence until max_tokens
    stop_repeats: bool = False


class VariantConfig(_Model):
    """A deployable recipe: model + prompt template + retrieval + generation parameters."""

    name: Name
    model: str = "base"
    prompt: str | None = None
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    description: str = ""


def _default_retention() -> dict[Tier, int]:
    return {1: 365, 2: 30}


class PrivacyConfig(_Model):
    """What is redacted before anything is stored, and how long logs are kept per tier."""

    redact: list[str] = Field(
        default_factory=lambda: [
            "EMAIL_ADDRESS",
            "PHONE_NUMBER",
            "CREDIT_CARD",
            "IBAN_CODE",
            "IP_ADDRESS",
            "US_SSN",
            "SECRET",
            "PERSON",
        ]
    )
    retention_days: dict[Tier, int] = Field(default_factory=_default_retention)

    @field_validator("retention_days")
    @classmethod
    def _positive(cls, value: dict[int, int]) -> dict[int, int]:
        for tier, days in value.items():
            if days < 1:
                raise ValueError(f"retention for tier {tier} must be at least 1 day, found {days}")
        return value


class RolloutConfig(_Model):
    """Online evidence a variant needs from the internal stage before it may go public."""

    min_rated_requests: int = Field(default=0, ge=0)
    satisfaction_alpha: float = Field(default=0.05, gt=0, lt=1)


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=1, le=65535)
    max_input_tokens: int = Field(default=4096, ge=1)
    max_output_tokens: int = Field(default=1024, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    rate_limit_per_minute: int = Field(default=600, ge=1)
    queue_size: int = Field(default=64, ge=1)
    app_alias: str = "assistant"


class ProjectConfig(_Model):
    """The whole of `tuneloop.yaml`."""

    version: Literal[1] = 1
    task: TaskConfig
    metrics: list[MetricConfig] = Field(default_factory=list)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    knowledge_base: KnowledgeBaseConfig = Field(default_factory=KnowledgeBaseConfig)
    base_model: ModelConfig = Field(default_factory=ModelConfig)
    datasets: list[DatasetConfig] = Field(default_factory=list)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    variants: list[VariantConfig] = Field(default_factory=list)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)

    @model_validator(mode="after")
    def _references(self) -> ProjectConfig:
        _unique(self.sources, "sources")
        _unique(self.datasets, "datasets")
        _unique(self.variants, "variants")
        # Source names are checked when used (`data.sources.check_references`): a source may also
        # be registered with `tuneloop data add`, which the file cannot see.
        primaries = [m.name for m in self.metrics if m.primary]
        if len(primaries) > 1:
            raise ValueError(f"only one metric may be primary, found {primaries}")
        return self

    def source(self, name: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.name == name), None)

    def source_refs(self) -> list[tuple[str, str]]:
        """Every place a source is named: (field path, name), e.g. ("datasets[0].sources[1]", x)."""
        refs = [(f"datasets[{i}].sources[{j}]", src) for i, ds in enumerate(self.datasets)
                for j, src in enumerate(ds.sources)]
        refs += [(f"knowledge_base.sources[{j}]", src)
                 for j, src in enumerate(self.knowledge_base.sources)]
        return refs

    def dataset(self, name: str) -> DatasetConfig | None:
        return next((d for d in self.datasets if d.name == name), None)

    def variant(self, name: str) -> VariantConfig | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def primary_metric(self) -> MetricConfig | None:
        return next(
            (m for m in self.metrics if m.primary), self.metrics[0] if self.metrics else None
        )


class _PathError(ValueError):
    """A cross-field problem that knows its own field path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def check_source_refs(config: ProjectConfig, registered: list[str], *,
                      source: str = CONFIG_FILE, text: str | None = None) -> None:
    """Raise one `ConfigError` for every source name that is neither declared nor registered.

    `registered` are the names `tuneloop data add` stored; `text` (the file's YAML) gives lines.
    """
    declared = [s.name for s in config.sources]
    known = sorted({*declared, *registered})
    node = yaml.compose(text, Loader=yaml.SafeLoader) if text else None
    lines = []
    for path, name in config.source_refs():
        if name in known:
            continue
        line = _line_of(node, _parse_path(path))
        where = f"{source}:{line}" if line else source
        extra = sorted(set(registered) - set(declared))
        lines.append(f"{where}: {path}: unknown source {name!r}{_did_you_mean(name, known)}; "
                     f"declared in {CONFIG_FILE}: {', '.join(declared) or 'none'}; registered "
                     f"with `tuneloop data add`: {', '.join(extra) or 'none'}")
    if lines:
        head = "invalid configuration" if len(lines) == 1 else \
            f"invalid configuration ({len(lines)} problems)"
        raise ConfigError(head + "\n  " + "\n  ".join(lines),
                          hint=f"declare the source under `sources:` in {CONFIG_FILE}, or "
                               "register it: `tuneloop data add PATH --name NAME --tier 1|2`")


def _unique(items: list[Any], field: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.name in seen:
            raise _PathError(f"{field}[{i}].name", f"{item.name!r} is declared twice")
        seen.add(item.name)


def _did_you_mean(found: Any, allowed: list[str]) -> str:
    if not isinstance(found, str):
        return ""
    close = difflib.get_close_matches(found, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# Loading, with errors that point at the file, the field and the line.


def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate a `tuneloop.yaml`; raise `ConfigError` naming file, field and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file", hint="run `tuneloop init` to create a starter project"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = CONFIG_FILE) -> ProjectConfig:
    """Validate config text; `source` names it in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem}") from None
    if data is None:
        raise ConfigError(f"{source}: the file is empty", hint="run `tuneloop init` for a starter")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}:1: the top level must be a mapping of sections (task, sources, ...), "
            f"found {type(data).__name__}"
        )
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, node, source)) from None


def _format_errors(exc: ValidationError, node: yaml.Node | None, source: str) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        original = err.get("ctx", {}).get("error")
        if isinstance(original, _PathError):
            path = original.path
            loc = _parse_path(path)
            message = str(original)
        else:
            path = _format_path(loc)
            message = _describe(err, loc)
        line = _line_of(node, loc)
        where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {path or '(top level)'}: {message}")
    count = len(lines)
    head = "invalid configuration" if count == 1 else f"invalid configuration ({count} problems)"
    return head + "\n  " + "\n  ".join(lines)


def _describe(err: Any, loc: list[Any]) -> str:
    kind = err["type"]
    found = err.get("input")
    ctx = err.get("ctx", {})
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        field = loc[-1] if loc else "?"
        allowed = _allowed_fields(loc[:-1])
        hint = _did_you_mean(field, allowed)
        return f"unknown field {field!r}{hint}; allowed: {', '.join(allowed)}"
    if kind == "literal_error":
        return f"found {found!r}; allowed: {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return (
            f"found {found!r}; names use lowercase letters, digits, '.', '_' and '-' "
            "(at most 64 characters, starting with a letter or digit)"
        )
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    text = err["msg"]
    text = text[0].lower() + text[1:]
    return f"{text}; found {found!r}"


def _allowed_fields(loc: list[Any]) -> list[str]:
    model: Any = ProjectConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = _inner_model(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _format_path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _parse_path(path: str) -> list[Any]:
    parts: list[Any] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        parts.append(int(index) if index else name)
    return parts


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest YAML node that `loc` reaches."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode) and isinstance(part, str | int):
            nxt = None
            for key, value in node.value:
                if key.value == str(part):
                    line = key.start_mark.line + 1
                    nxt = value
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None and loc:
        line = node.start_mark.line + 1
    return line
