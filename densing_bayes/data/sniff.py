"""Whole-file and whole-column mistakes, reported once instead of once per row; spelling hints.

A spreadsheet exported with semicolons (European Excel) or a score column typed in percent is
one mistake, but the per-cell checks of :mod:`densing_bayes.data.load` would report it on every
row (193 lines for the bundled-size folder). These checks recognise the pattern first, so the
user reads one line with the fix.
"""

from __future__ import annotations

import difflib
import math
import re

import pandas as pd

from densing_bayes.data.schema import Problem

#: Separators a spreadsheet may have used instead of commas, and how to name them.
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
#: A column is read as percentages when at least this many values, and most of them, exceed 1.
MIN_PERCENT_VALUES = 3
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def delimiter_problem(text: str, filename: str, expected: list[str]) -> Problem | None:
    """One problem when the header is separated by something else than commas.

    ``expected``: the schema's required columns; the file is only blamed when splitting its
    header on the other separator finds one of them (a one-column file stays a normal error).
    """
    header = next((line for line in text.splitlines() if line.strip()), "")
    if "," in header:
        return None
    for sep, name in OTHER_DELIMITERS.items():
        fields = [f.strip().strip('"') for f in header.split(sep)]
        if len(fields) > 1 and set(fields) & set(expected):
            return Problem(filename, f"looks {name}-separated (header: {header.strip()[:60]}); "
                                     "save it as comma-separated CSV (in Excel: 'CSV UTF-8 "
                                     "(Comma delimited)'), with '.' as the decimal point", row=1)
    return None


def percentage_problem(cells: pd.Series, filename: str, column: str,
                       header_line: int) -> Problem | None:
    """One problem when a fraction column was typed in percent (most values in (1, 100])."""
    numbers = [float(c) for c in cells if _NUMBER.fullmatch(c)]
    finite = [v for v in numbers if math.isfinite(v)]
    above = [v for v in finite if 1 < v <= 100]
    if (len(above) < MIN_PERCENT_VALUES or 2 * len(above) <= len(finite)
            or any(v < 0 or v > 100 for v in finite)):
        return None
    return Problem(filename, f"column looks like percentages ({len(above)} of {len(finite)} "
                             f"values above 1, max {max(above):g}); {column}s are fractions in "
                             "[0, 1]: divide the whole column by 100", column=column,
                   row=header_line)


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest of ``choices`` (case-insensitive), else ''."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
