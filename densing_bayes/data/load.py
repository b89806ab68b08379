"""Read and validate a data folder into a :class:`~densing_bayes.data.schema.DensingData`.

The rules (files, columns, kinds) live in :mod:`densing_bayes.data.schema`; this module applies
them. Validation never stops at the first problem: a user fixing a spreadsheet by hand should see
every problem in one run, each with its file, line and column and a hint on how to fix it. Bad input
is reported as a single :class:`DataValidationError`, never as a Python traceback, and the folder is
only ever read.

Every cell is read as text first so that parsing is under our control (no silent type guessing,
no ``"NA"`` turned into NaN) and problems can quote the raw value. Tokenizing is done with the
standard ``csv`` module rather than ``pandas.read_csv``: pandas stops at the first ragged row and
loses the file's line numbers when there are blank lines or quoted line breaks, while ``csv.reader``
tells us the line of every record.
"""

from __future__ import annotations

import csv
import io
import math
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from densing_bayes.data.schema import (
    BENCHMARKS,
    MODELS,
    REFERENCE_RUNS,
    SCORES,
    Column,
    DataValidationError,
    DensingData,
    FileSchema,
    Problem,
)
from densing_bayes.data.sniff import delimiter_problem, did_you_mean, percentage_problem

# A plain decimal number: no units, percent signs, thousands separators, nan or inf.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
#: What datetime64[ns] can hold (pandas.Timestamp.min/max, whole days).
_DATE_RANGE = (date(1677, 9, 22), date(2262, 4, 11))
#: Plausibility: values outside these get a note (not an error): they may be typos that move the
#: fit (params = 7 meaning 7e9; a release in 1990 meaning 2019).
PLAUSIBLE_MIN_PARAMS = 1e6
PLAUSIBLE_FIRST_RELEASE = date(2015, 1, 1)
#: An input file larger than this is refused before it is read: parsing takes about 25 times
#: the file's size in memory (the bundled reference_runs.csv: about 6 MB).
MAX_FILE_BYTES = 100 * 1024 * 1024

#: What an empty (allowed) cell becomes, and the dtype of the column, per column kind.
_MISSING = {"count": math.nan, "nonnegative": math.nan, "positive": math.nan,
            "fraction": math.nan, "date": pd.NaT, "bool": False, "id": "", "text": ""}
_DTYPE = {"count": "float64", "nonnegative": "float64", "positive": "float64",
          "fraction": "float64", "date": "datetime64[ns]", "bool": "bool", "id": "str",
          "text": "str"}


@dataclass(frozen=True)
class _RawTable:
    """A tokenized CSV file: stripped text cells plus the file line of every data row."""

    schema: FileSchema
    header: list[str]
    header_line: int
    cells: pd.DataFrame  # every column as str, whitespace stripped
    lines: list[int]

    @property
    def filename(self) -> str:
        return self.schema.filename


# ----------------------------------------------------------------------------------------------
# Public API


def load_data(folder: str | Path) -> DensingData:
    """Read, validate and type the CSV files of ``folder``.

    Raises one :class:`DataValidationError` listing every problem found in the folder. On success,
    numeric columns are float64 (empty -> NaN), ``release_date`` is datetime64[ns] (empty -> NaT),
    ``holdout``/``final`` are bool (empty -> False), ids and other text are str, extra columns are
    kept as read, and row order is the file's. ``DensingData.notes`` says what is kept but cannot
    be used by the model.
    """
    folder = Path(folder)
    folder_problem = _folder_problem(folder)
    if folder_problem is not None:
        raise DataValidationError([folder_problem])

    problems: list[Problem] = []
    raw: dict[str, _RawTable] = {}
    for schema in _files_to_read(folder, problems):
        table = _read_table(folder / schema.filename, schema, problems)
        if table is not None:
            raw[schema.filename] = table
    typed = {name: _parse_table(table, problems) for name, table in raw.items()}
    if REFERENCE_RUNS.filename in raw:
        problems += _reference_row_problems(raw[REFERENCE_RUNS.filename])
    notes = _cross_file_checks(raw, problems)
    notes += _plausibility_notes(raw, typed)
    if problems:
        raise DataValidationError(problems)
    return DensingData(
        folder=folder,
        reference_runs=typed[REFERENCE_RUNS.filename],
        models=typed.get(MODELS.filename),
        scores=typed.get(SCORES.filename),
        benchmarks=typed.get(BENCHMARKS.filename),
        notes=tuple(notes),
    )


def format_problems(err: DataValidationError) -> str:
    """One line per problem, sorted by file then line (file-level problems first), for the CLI."""
    ordered = sorted(err.problems, key=lambda p: (p.file, p.row is not None, p.row or 0))
    return "\n".join(str(p) for p in ordered)


# ----------------------------------------------------------------------------------------------
# Folder and files


def _folder_problem(folder: Path) -> Problem | None:
    """A folder that is not there makes every other check meaningless, so it is reported alone."""
    if not folder.exists():
        return Problem(str(folder), "data folder does not exist; check the path")
    if not folder.is_dir():
        return Problem(str(folder), "is not a directory; pass the folder that contains "
                                    "reference_runs.csv")
    return None


def _files_to_read(folder: Path, problems: list[Problem]) -> list[FileSchema]:
    """The schemas of the files present, after checking the required file and the pairing.

    A lone models.csv or scores.csv is still read so that its own problems are reported too.
    """
    # A broken symlink counts as present, so that it is reported as unreadable, not missing.
    present = [s for s in (REFERENCE_RUNS, MODELS, SCORES, BENCHMARKS)
               if (folder / s.filename).exists() or (folder / s.filename).is_symlink()]
    if REFERENCE_RUNS not in present:
        problems.append(Problem(REFERENCE_RUNS.filename,
                                f"required file is missing from {folder}; every data folder needs "
                                "the reference family's runs"))
    for lone, partner in ((MODELS, SCORES), (SCORES, MODELS)):
        if lone in present and partner not in present:
            problems.append(Problem(partner.filename,
                                    f"file is missing: {lone.filename} is present, and models.csv "
                                    f"and scores.csv come together; add {partner.filename} or "
                                    f"remove {lone.filename}"))
    return present


def _read_table(path: Path, schema: FileSchema, problems: list[Problem]) -> _RawTable | None:
    """Decode, tokenize and check the shape of one file; None when its cells cannot be trusted."""
    try:
        info = path.stat()  # follows a symlink: what matters is what would be read
        if not stat.S_ISREG(info.st_mode):
            problems.append(Problem(schema.filename, "is not a regular file (a device, pipe or "
                                                     "folder); it must be a CSV file"))
            return None
        if info.st_size > MAX_FILE_BYTES:
            problems.append(Problem(schema.filename, f"is {info.st_size / 1e6:.0f} MB, more than "
                                                     f"the {MAX_FILE_BYTES / 1e6:.0f} MB a data "
                                                     "file may have; check that it is the right "
                                                     "file"))
            return None
        data = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(schema.filename, f"cannot be read ({exc.strerror}); it must be a "
                                                 "readable CSV file"))
        return None
    text = _decode(data, schema.filename, problems)
    if text is None:
        return None
    wrong_separator = delimiter_problem(text, schema.filename, schema.required_columns)
    if wrong_separator is not None:  # one line, not one per row
        problems.append(wrong_separator)
        return None
    records = _tokenize(text, schema.filename, problems)
    if records is None:
        return None
    if not records:
        problems.append(Problem(schema.filename, "file is empty; it needs a header line and at "
                                                 "least one data row" + _removal_hint(schema)))
        return None
    return _shape_table(schema, records, problems)


def _removal_hint(schema: FileSchema) -> str:
    """How to get rid of an optional file that has no content, if the file is optional."""
    if schema in (MODELS, SCORES):
        return " (or delete both models.csv and scores.csv to analyse the reference family alone)"
    if schema == BENCHMARKS:
        return " (or delete the file: it is optional)"
    return ""


def _decode(data: bytes, filename: str, problems: list[Problem]) -> str | None:
    """UTF-8 text (a leading byte-order mark, as written by Excel, is accepted) or a problem."""
    bad_at = data.find(b"\x00")
    reason = "NUL byte"
    if bad_at < 0:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            bad_at, reason = exc.start, f"invalid byte 0x{data[exc.start]:02x}"
    line = data[:bad_at].count(b"\n") + 1
    problems.append(Problem(filename, f"is not a UTF-8 CSV text file ({reason}); export it from "
                                      "your spreadsheet as 'CSV UTF-8'", row=line))
    return None


def _tokenize(text: str, filename: str,
              problems: list[Problem]) -> list[tuple[int, list[str]]] | None:
    """Non-blank CSV records with the line each starts on; None if the text is not CSV at all."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records = []
    start = 1
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                records.append((start, [f.strip() for f in fields]))
            start = reader.line_num + 1
    except csv.Error as exc:
        problems.append(Problem(filename, f"cannot be parsed as CSV ({exc}); check the quoting",
                                row=start))
        return None
    return records


def _shape_table(schema: FileSchema, records: list[tuple[int, list[str]]],
                 problems: list[Problem]) -> _RawTable | None:
    """Check the header and the number of fields per row; build the text table of the good rows.

    A ragged row is reported and left out, so that the cells of the other rows are still checked.
    None (the file's cells are not checked) when the header is ambiguous or there are no rows,
    since cross-file checks against an empty table would only repeat the same problem.
    """
    header_line, header = records[0]
    header_problems = _header_problems(schema.filename, header, header_line)
    if header_problems:
        problems += header_problems
        return None
    rows = []
    for line, fields in records[1:]:
        if len(fields) == len(header):
            rows.append((line, fields))
        else:
            problems.append(_ragged_problem(schema.filename, line, fields, len(header)))
    cells = pd.DataFrame([fields for _, fields in rows], columns=header, dtype="str")
    table = _RawTable(schema, header, header_line, cells, [line for line, _ in rows])
    problems += _missing_column_problems(table)
    if len(records) == 1:
        problems.append(Problem(schema.filename, "file has a header line but no data rows; add at "
                                                 "least one row" + _removal_hint(schema),
                                row=header_line))
        return None
    return table


def _header_problems(filename: str, header: list[str], line: int) -> list[Problem]:
    """Unnamed or repeated column names would make a cell's meaning ambiguous."""
    problems = []
    for position, name in enumerate(header, start=1):
        if not name:
            problems.append(Problem(filename, f"header field {position} has no column name; name "
                                              "the column or remove the trailing comma", row=line))
        elif header.index(name) < position - 1:
            problems.append(Problem(filename, f"column name appears more than once in the header; "
                                              "rename or remove the repeated column",
                                    column=name, row=line))
    return problems


def _ragged_problem(filename: str, line: int, fields: list[str], expected: int) -> Problem:
    hint = ("quote values that contain commas, e.g. \"a, b\"" if len(fields) > expected
            else "write an empty value as nothing between two commas")
    if any("\n" in f for f in fields):
        hint = "a quote (\") is not closed, so the following lines were read as part of this row"
    return Problem(filename, f"row has {len(fields)} fields but the header has {expected}; {hint}",
                   row=line)


def _missing_column_problems(table: _RawTable) -> list[Problem]:
    found = ", ".join(table.header)
    return [Problem(table.filename, f"required column is missing (columns found: {found}); add "
                                    f"'{name}' to the header line", column=name,
                    row=table.header_line)
            for name in table.schema.required_columns if name not in table.header]


# ----------------------------------------------------------------------------------------------
# Cells


def _parse_table(table: _RawTable, problems: list[Problem]) -> pd.DataFrame:
    """Type the schema's columns; extra columns keep their text. Problems are appended."""
    known = {c.name: c for c in table.schema.columns}
    columns = {}
    for name in table.header:
        text = table.cells[name]
        in_percent = (percentage_problem(text, table.filename, name, table.header_line)
                      if name in known and known[name].kind == "fraction" else None)
        if in_percent is not None:  # one line for the column, not one per row
            problems.append(in_percent)
            columns[name] = pd.Series(math.nan, index=range(len(text)), dtype="float64")
            continue
        columns[name] = (_parse_column(text, known[name], table, problems) if name in known
                         else text)
    return pd.DataFrame(columns)


#: What a numeric column's cells must satisfy, per kind (the per-cell parsers' rules, vectorised).
_NUMERIC_RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "count": lambda v: v > 0, "positive": lambda v: v > 0, "nonnegative": lambda v: v >= 0,
    "fraction": lambda v: (v >= 0) & (v <= 1),
}


def _parse_column_at_once(text: pd.Series, column: Column) -> pd.Series | None:
    """A column parsed all at once when every cell is valid, else None (the caller then parses
    cell by cell to name each bad one). The same values as the cell parsers: the same number
    pattern, NumPy converting each string with Python's float(), the same true/false words.
    Why: cell by cell, the reference runs' 41,000 rows took most of every data load (in every
    fit, report and test)."""
    cells = text.to_numpy(dtype=object)
    empty = cells == ""
    if empty.any() and not column.nullable:
        return None
    if column.kind in ("id", "text"):
        return pd.Series(cells, dtype=_DTYPE[column.kind])
    if column.kind == "bool":
        flags = pd.Series(cells[~empty], dtype=object).str.lower().map(_BOOLEANS)
        if flags.isna().any():
            return None
        values = np.zeros(len(cells), dtype=bool)
        values[~empty] = flags.to_numpy(dtype=bool)
        return pd.Series(values, dtype="bool")
    rule = _NUMERIC_RULES.get(column.kind)
    if rule is None:
        return None
    filled = cells[~empty]
    if filled.size and not pd.Series(filled, dtype=object).str.fullmatch(_NUMBER.pattern).all():
        return None
    numbers = filled.astype(float)
    if not (np.isfinite(numbers).all() and rule(numbers).all()):
        return None
    values = np.full(len(cells), math.nan)
    values[~empty] = numbers
    return pd.Series(values, dtype="float64")


def _parse_column(text: pd.Series, column: Column, table: _RawTable,
                  problems: list[Problem]) -> pd.Series:
    """Parse every cell of one column with the parser of its kind; bad cells become missing."""
    fast = _parse_column_at_once(text, column)
    if fast is not None:
        return fast
    parse = _CELL_PARSERS[column.kind]
    values = []
    for cell, line in zip(text, table.lines):
        value, message = _MISSING[column.kind], None
        if not cell:
            if not column.nullable:
                message = f"empty cell; '{column.name}' needs a value on every row"
        else:
            value, message = parse(cell, column)
        if message is not None:
            problems.append(Problem(table.filename, message, column=column.name, row=line))
            value = _MISSING[column.kind]
        values.append(value)
    return pd.Series(values, dtype=_DTYPE[column.kind])


def _text(cell: str, column: Column) -> tuple[str, str | None]:
    return cell, None


def _number(cell: str, column: Column) -> tuple[float, str | None]:
    if not _NUMBER.fullmatch(cell):
        return math.nan, (f"'{cell}' is not a number; write a plain decimal number such as 0.53 "
                          "or 7e9, without units, '%' or thousands separators"
                          + ("; leave the cell empty if unknown" if column.nullable else ""))
    value = float(cell)
    if not math.isfinite(value):
        return math.nan, (f"'{cell}' is too large to be a number here (it reads as infinity); "
                          "check the exponent")
    return value, None


def _positive(cell: str, column: Column) -> tuple[float, str | None]:
    value, message = _number(cell, column)
    if message is None and value <= 0:
        message = f"'{cell}' is not allowed: {column.name} must be greater than 0"
    return value, message


def _nonnegative(cell: str, column: Column) -> tuple[float, str | None]:
    value, message = _number(cell, column)
    if message is None and value < 0:
        message = f"'{cell}' is not allowed: {column.name} must be 0 or more"
    return value, message


def _fraction(cell: str, column: Column) -> tuple[float, str | None]:
    value, message = _number(cell, column)
    if message is None and not 0 <= value <= 1:
        message = f"'{cell}' is outside [0, 1]: {column.name}s are fractions in [0, 1]"
        if 1 < value <= 100:
            message += "; divide percentages by 100"
    return value, message


def _date(cell: str, column: Column) -> tuple[pd.Timestamp, str | None]:
    """Only YYYY-MM-DD: day-first and month-first dates cannot be told apart, so none is guessed.

    Dates are held as datetime64[ns], which spans 1677-09-22 to 2262-04-11; a date outside
    that is a typo for any model release, and is refused here rather than crash the conversion.
    """
    try:
        if _ISO_DATE.fullmatch(cell):
            day = date.fromisoformat(cell)
            if not _DATE_RANGE[0] <= day <= _DATE_RANGE[1]:
                return pd.NaT, (f"'{cell}' is outside the dates this tool can hold "
                                f"({_DATE_RANGE[0]} to {_DATE_RANGE[1]}); check the year")
            return pd.Timestamp(day), None
    except ValueError:
        pass  # matches the pattern but is no calendar date, e.g. 2023-02-30
    return pd.NaT, f"{column.name} must be an existing date written YYYY-MM-DD; got '{cell}'"


def _bool(cell: str, column: Column) -> tuple[bool, str | None]:
    value = _BOOLEANS.get(cell.lower())
    if value is None:
        return False, (f"'{cell}' is not true/false; write true, false, 1 or 0 (empty means "
                       "false)")
    return value, None


#: Cell parsers per column kind: the value and, for a bad cell, the problem's message.
_CELL_PARSERS: dict[str, Callable[[str, Column], tuple[object, str | None]]] = {
    "id": _text,
    "text": _text,
    "count": _positive,
    "positive": _positive,
    "nonnegative": _nonnegative,
    "fraction": _fraction,
    "date": _date,
    "bool": _bool,
}


def _reference_row_problems(table: _RawTable) -> list[Problem]:
    """A reference row must inform the loss law (params and tokens) or the score curve (score).

    A row with only one of params/tokens cannot locate the run on the (N, D) plane, and a row with
    neither part informs nothing, so both are errors rather than silently dropped rows.
    """
    cells = table.cells
    if not {"params", "tokens"} <= set(table.header):
        return []  # the missing column is already reported
    scores = cells["score"] if "score" in table.header else [""] * len(cells)  # loss law alone
    problems = []
    for line, params, tokens, score in zip(table.lines, cells["params"], cells["tokens"],
                                           scores):
        if bool(params) != bool(tokens):
            given, empty = ("params", "tokens") if params else ("tokens", "params")
            problems.append(Problem(table.filename, f"{given} is given but {empty} is empty; a "
                                                    "run needs both params and tokens, or neither",
                                    column=empty, row=line))
        elif not params and not score:
            problems.append(Problem(table.filename, "row has neither params and tokens nor score, "
                                                    "so it informs nothing; fill in params and "
                                                    "tokens, or score", column="score", row=line))
    return problems


# ----------------------------------------------------------------------------------------------
# Across files


def _cross_file_checks(raw: dict[str, _RawTable], problems: list[Problem]) -> list[str]:
    """Uniqueness and references between files; returns the notes. Skips unreadable files."""
    models = _ids(raw, MODELS, "model")
    if models is not None:
        problems += _duplicate_problems(raw[MODELS.filename], "model")
        if _ids(raw, SCORES, "model") is not None:
            problems += _unknown_problems(raw[SCORES.filename], "model", set(models), "models.csv")
    if _ids(raw, BENCHMARKS, "benchmark") is not None:
        problems += _duplicate_problems(raw[BENCHMARKS.filename], "benchmark")
    return _benchmark_checks(raw, problems)


def _ids(raw: dict[str, _RawTable], schema: FileSchema, column: str) -> pd.Series | None:
    """The column's text, or None when the file or the column is unavailable."""
    table = raw.get(schema.filename)
    if table is None or column not in table.header:
        return None
    return table.cells[column]


def _benchmark_checks(raw: dict[str, _RawTable], problems: list[Problem]) -> list[str]:
    """Benchmarks must be known; scores on benchmarks without reference runs become a note.

    With benchmarks.csv, it is the list of known benchmarks. Without it, the reference runs define
    the known benchmarks, and a score on another benchmark is kept (it may be useful elsewhere)
    but cannot enter the model, which needs a reference curve to turn a score into a loss.
    """
    listed = _ids(raw, BENCHMARKS, "benchmark")
    if listed is not None:
        for schema in (REFERENCE_RUNS, SCORES):
            if _ids(raw, schema, "benchmark") is not None:
                problems += _unknown_problems(raw[schema.filename], "benchmark", set(listed),
                                              BENCHMARKS.filename)
    referenced = _ids(raw, REFERENCE_RUNS, "benchmark")
    scored = _ids(raw, SCORES, "benchmark")
    if referenced is None or scored is None:
        return []
    without_runs = ~scored.isin(set(referenced)) & (scored != "")
    if listed is not None:
        without_runs &= scored.isin(set(listed))  # unlisted ones are already errors
    unusable = scored[without_runs]
    if unusable.empty:
        return []
    names = ", ".join(sorted(set(unusable)))
    count, verb = ("1 row", "is") if len(unusable) == 1 else (f"{len(unusable)} rows", "are")
    return [f"{SCORES.filename}: {count} on benchmarks without reference runs ({names}) {verb} "
            "kept but cannot enter the model"]


def _plausibility_notes(raw: dict[str, _RawTable], typed: dict[str, pd.DataFrame]) -> list[str]:
    """Notes on values that are valid but likely typos: each one moves the fitted trend.

    Parameter counts below 1e6 (7 meant as 7e9), release dates before 2015 or more than a year
    ahead, and repeated reference rows (which add weight to one measurement).
    """
    notes = []
    latest = date.today() + timedelta(days=366)
    for schema in (REFERENCE_RUNS, MODELS):
        table, frame = raw.get(schema.filename), typed.get(schema.filename)
        if table is None or frame is None or "params" not in frame:
            continue
        small = [line for line, value in zip(table.lines, frame["params"])
                 if value < PLAUSIBLE_MIN_PARAMS]
        if small:
            notes.append(f"{schema.filename}: params below {PLAUSIBLE_MIN_PARAMS:.0e} on "
                         f"{_describe_lines(small)}; parameter counts are plain numbers (7e9, "
                         "not 7): check the unit")
    table, frame = raw.get(MODELS.filename), typed.get(MODELS.filename)
    if table is not None and frame is not None and "release_date" in frame:
        early = [line for line, day in zip(table.lines, frame["release_date"])
                 if pd.notna(day) and day.date() < PLAUSIBLE_FIRST_RELEASE]
        late = [line for line, day in zip(table.lines, frame["release_date"])
                if pd.notna(day) and day.date() > latest]
        if early:
            notes.append(f"{MODELS.filename}: release_date before {PLAUSIBLE_FIRST_RELEASE} on "
                         f"{_describe_lines(early)}; check the year")
        if late:
            notes.append(f"{MODELS.filename}: release_date more than a year ahead ({latest}) on "
                         f"{_describe_lines(late)}; check the year")
    table = raw.get(REFERENCE_RUNS.filename)
    if table is not None and not table.cells.empty:
        repeated = table.cells.duplicated(keep="first")
        if repeated.any():
            lines = [line for line, dup in zip(table.lines, repeated) if dup]
            notes.append(f"{REFERENCE_RUNS.filename}: rows on {_describe_lines(lines)} repeat "
                         "an earlier row exactly; each copy adds weight to one measurement")
    return notes


def _duplicate_problems(table: _RawTable, column: str) -> list[Problem]:
    """One problem per repeated id, at its second line, naming every line it is on."""
    problems = []
    for value, lines in _lines_by_value(table, column).items():
        if len(lines) > 1:
            problems.append(Problem(table.filename, f"{column} '{value}' is listed on "
                                                    f"{_describe_lines(lines)}; list each "
                                                    f"{column} once", column=column, row=lines[1]))
    return problems


def _unknown_problems(table: _RawTable, column: str, known: set[str],
                      known_from: str) -> list[Problem]:
    """One problem per unknown id (not per row), so a single typo does not flood the report."""
    return [Problem(table.filename, f"{column} '{value}' is not in {known_from} (on "
                                    f"{_describe_lines(lines)}){did_you_mean(value, known)}; add "
                                    f"it to {known_from} or fix the spelling", column=column,
                    row=lines[0])
            for value, lines in _lines_by_value(table, column).items()
            if value not in known]


def _lines_by_value(table: _RawTable, column: str) -> dict[str, list[int]]:
    """File lines of each non-empty value of a column (empty ids are reported elsewhere)."""
    by_value: dict[str, list[int]] = {}
    for value, line in zip(table.cells[column], table.lines):
        if value:
            by_value.setdefault(value, []).append(line)
    return by_value


def _describe_lines(lines: list[int], shown: int = 5) -> str:
    """'line 3', 'lines 3 and 7', 'lines 3, 7, 9, 11, 12 and 40 more'."""
    if len(lines) == 1:
        return f"line {lines[0]}"
    if len(lines) <= shown:
        return "lines " + ", ".join(map(str, lines[:-1])) + f" and {lines[-1]}"
    return "lines " + ", ".join(map(str, lines[:shown])) + f" and {len(lines) - shown} more"
