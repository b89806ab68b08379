"""The input schema of a data folder: one place that says which files and columns exist.

A *data folder* holds up to four CSV files (documented in README.md, "Input schema"):

* ``reference_runs.csv`` (required): the reference family's runs, one row per (run, benchmark).
* ``models.csv`` and ``scores.csv`` (together or not at all): the evaluated models and their
  reported benchmark scores.
* ``benchmarks.csv`` (optional): chance level and item count per benchmark.

Extra columns are kept. Everything that validates the files reads its rules from here, so adding
a column to the schema is a one-line change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: Column kinds understood by the validator.
#: ``id``: non-empty text; ``count``: number > 0 (parameters, tokens, items);
#: ``nonnegative``: number >= 0 (shots: 0-shot is common); ``positive``: number > 0;
#: ``fraction``: number in [0, 1]; ``date``: YYYY-MM-DD; ``bool``: true/false/1/0, empty = false;
#: ``text``: anything.
ColumnKind = str


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    required: bool = True  # the column must exist in the header
    nullable: bool = False  # an empty cell is allowed (means "missing", never imputed)
    doc: str = ""


@dataclass(frozen=True)
class FileSchema:
    filename: str
    columns: tuple[Column, ...]
    doc: str = ""

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


REFERENCE_RUNS = FileSchema(
    "reference_runs.csv",
    (
        Column("run_id", "id", doc="identifier of the reference run / checkpoint"),
        Column("benchmark", "id", doc="benchmark id, e.g. mmlu"),
        Column("params", "count", nullable=True, doc="parameter count N (empty on curve-only rows)"),
        Column("tokens", "count", nullable=True, doc="training tokens D (empty on curve-only rows)"),
        Column("loss", "positive", doc="conditional loss on the benchmark (> 0)"),
        Column("score", "fraction", required=False, nullable=True,
               doc="benchmark score in [0, 1] (empty on loss-law-only rows; no column: the "
               "loss law alone is fitted)"),
        Column("holdout", "bool", required=False, nullable=True,
               doc="'true' marks a run kept out of the fit for validation (e.g. OLMo 7B)"),
        Column("final", "bool", required=False, nullable=True,
               doc="'true' marks a final checkpoint (informs the loss law)"),
    ),
    doc="Reference-family runs: rows with params, tokens and loss inform the loss law; rows with "
    "loss and score inform the loss-to-score sigmoid.",
)

MODELS = FileSchema(
    "models.csv",
    (
        Column("model", "id", doc="unique model name"),
        Column("release_date", "date", nullable=True,
               doc="YYYY-MM-DD; empty = unknown (the model is then left out of the trend)"),
        Column("params", "count", doc="parameter count (total; MoE totals are flagged)"),
        Column("family", "text", required=False, nullable=True),
        Column("training_tokens", "count", required=False, nullable=True),
        Column("flags", "text", required=False, nullable=True,
               doc="';'-separated known problems, e.g. chat_only;proxy_date"),
    ),
    doc="Evaluated models.",
)

SCORES = FileSchema(
    "scores.csv",
    (
        Column("model", "id"),
        Column("benchmark", "id"),
        Column("score", "fraction", doc="fraction in [0, 1]; divide percentages by 100"),
        Column("source", "text", required=False, nullable=True, doc="who reported it"),
        Column("source_kind", "text", required=False, nullable=True,
               doc="provenance class: own, other, aggregator, harness, third_party"),
        Column("shots", "nonnegative", required=False, nullable=True),
        Column("n_items", "count", required=False, nullable=True),
    ),
    doc="Reported benchmark scores; several rows per (model, benchmark) are repeated measurements.",
)

BENCHMARKS = FileSchema(
    "benchmarks.csv",
    (
        Column("benchmark", "id"),
        Column("chance", "fraction", doc="score of random guessing (0 for generative tasks)"),
        Column("n_items", "count", required=False, nullable=True),
    ),
    doc="Per-benchmark constants.",
)

ALL_FILES: tuple[FileSchema, ...] = (REFERENCE_RUNS, MODELS, SCORES, BENCHMARKS)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as possible."""

    file: str
    message: str
    column: str | None = None
    row: int | None = None  # line number in the file (the header is line 1)

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", line {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


class DataValidationError(ValueError):
    """Raised once per data folder with *every* problem found, never just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class DensingData:
    """A validated data folder. Missing cells are NaN / NaT, never filled in.

    Numeric columns are float64, ``release_date`` is datetime64, ids are str.
    ``models``/``scores`` are None when the folder only describes a reference family;
    ``benchmarks`` is None when the folder has no benchmarks.csv.
    """

    folder: Path
    reference_runs: pd.DataFrame
    models: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    benchmarks: pd.DataFrame | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_evaluated_models(self) -> bool:
        return self.models is not None and self.scores is not None


#: Spellings of "true" accepted in boolean-ish columns that are not parsed by the loader
#: (extra columns such as ``preferred``, or frames built in code).
TRUE_STRINGS = frozenset({"true", "1", "yes"})


def truthy(column: pd.Series) -> pd.Series:
    """A boolean view of a bool or text column ('true'/'1'/'yes', any case, are True)."""
    if column.dtype == bool:
        return column
    return column.astype(str).str.strip().str.lower().isin(TRUE_STRINGS)

