"""A run's answer in Markdown, with every check that binds it: ``RUN/answer.md``.

The report's header (*How sure is this?*) in a form that pastes into a paper, an issue or the
README. Everything comes from ``RUN/summary.json`` (the headline and the ``model_checks`` the
report stored), so it needs no draws. The README's "Current answer" block is this text for the
committed reference run, replaced in place by ``python -m densing_bayes.presentation.answer
reports/default --readme README.md``; a test fails when the two differ, so the front page cannot
drift from the run it quotes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from densing_bayes.presentation.report import checks_header_context, prob_text

ANSWER_FILE = "answer.md"
BEGIN_MARK = ("<!-- BEGIN generated answer: python -m densing_bayes.presentation.answer "
              "reports/default --readme README.md -->")
END_MARK = "<!-- END generated answer -->"

#: How each status reads, and in which order the groups come: failures first.
_GROUPS = ((False, "Fail"), (None, "Not computed for this run"), (True, "Pass"))


def _verdict_line(verdict: dict) -> str:
    n_failed, n_missing = len(verdict["failed"]), len(verdict["not_computed"])
    computed = verdict["n"] - n_missing
    if verdict["status"] == "sampler_failed":
        head = ("**The sampler did not converge**: every number below may change with longer "
                f"chains. {n_failed} of {computed} computed checks fail")
    elif n_failed:
        head = (f"**{n_failed} of {computed} computed checks fail**: read every number below "
                "with the caveats that follow them")
    elif computed:
        head = f"**All {computed} computed checks pass**"
    else:
        head = "**No check was computed for this run**"
    if n_missing:
        head += f"; {n_missing} more are not computed for this run"
    return head + "."


def _check_item(row: dict) -> str:
    """One check: its label and detail (the detail states the value against its bar in words;
    the bare value only stands in when a record has no detail)."""
    if row.get("detail"):
        return f"- **{row['label']}**: {row['detail']}"
    nominal = "" if row["nominal_text"] == "-" else f" (nominal {row['nominal_text']})"
    return f"- **{row['label']}**: {row['value_text']}{nominal}"


def _days(entry: dict | None) -> str | None:
    if not entry or entry.get("median") is None:
        return None
    ends = ["unbounded" if entry.get(k) is None else f"{entry[k]:.0f}" for k in ("lower", "upper")]
    return f"{entry['median']:.0f} days ({'-'.join(ends)})"


def lead_sentence(summary: dict) -> str | None:
    """The answer in one sentence: the doubling time after the changepoint, the benchmarks'
    range and the slope difference, each with its interval; None without a doubling time."""
    after = _days(summary.get("doubling_time_days"))
    if after is None:
        return None
    ci = round(100 * float(summary.get("ci_prob", 0.9)))
    has_cp = summary.get("doubling_time_days_pre") is not None
    date = (summary.get("trend") or {}).get("changepoint_date", "the changepoint")
    by_bench = summary.get("doubling_time_days_by_benchmark") or {}
    n_bench = len(summary.get("benchmarks") or by_bench)
    text = (f"Averaged over the {n_bench} benchmarks, the density of released models doubles "
            f"every {after.replace(' (', f' ({ci}% interval ')}"
            + (f" after {date}" if has_cp else "") + " (the paper: 95 days)")
    medians = {b: v.get("median") for b, v in by_bench.items() if v.get("median") is not None}
    if len(medians) > 1:
        fast, slow = min(medians, key=medians.get), max(medians, key=medians.get)
        text += (f"; each benchmark reads its own rate, from {fast} {medians[fast]:.0f} days to "
                 f"{slow} {medians[slow]:.0f}")
    diff = summary.get("slope_difference_per_year")
    if has_cp and diff and diff.get("median") is not None:
        text += (f"; the slope after minus the slope before is {diff['median']:+.2f} e-folds "
                 f"per year ({ci}% interval {diff['lower']:+.2f} to {diff['upper']:+.2f}), "
                 f"P(> 0) {prob_text(summary.get('prob_slope_difference_positive'))}")
    return text + "."


def answer_markdown(summary: dict, *, run_label: str) -> str:
    """The answer of the run whose ``summary.json`` is ``summary`` (``run_label``: how the text
    names the run, e.g. its folder), as Markdown without a top-level heading."""
    records = list(summary.get("model_checks") or [])
    benchmarks = list(summary.get("benchmarks") or [])
    ctx = checks_header_context(records, summary, benchmarks)
    ci = round(100 * float(summary.get("ci_prob", 0.9)))
    sampler = summary.get("sampler") or {}
    lines = [f"From the run `{run_label}` (spec `{summary.get('spec', '?')}`, seed "
             f"{summary.get('seed', '?')}, {sampler.get('chains', '?')} chains x "
             f"{sampler.get('draws', '?')} draws; posterior medians with {ci}% "
             f"{summary.get('interval', 'equal-tailed')} intervals). "
             + _verdict_line(ctx["verdict"]), "",
             "| quantity | posterior |", "|---|---|"]
    lead = lead_sentence(summary)
    if lead:
        lines[:0] = [f"**In one sentence:** {lead}", ""]
    lines += [f"| {label} | {value} |" for label, value in ctx["headline"]]
    lines += ["", ctx["estimand"], ""]
    if ctx["binding"]:
        lines += ["**Caveats that bind** (one per failed check):", ""]
        lines += [f"- {c}" for c in ctx["binding"]] + [""]
    lines += ["**What every answer of this model rests on:**", ""]
    lines += [f"- {c}" for c in ctx["standing"]] + [""]
    rows = ctx["check_rows"]
    for passed, title in _GROUPS:
        group = [r for r in rows if r.get("passed") is passed]
        if group:
            lines += [f"**{title} ({len(group)}):**", ""]
            lines += [_check_item(r) for r in group] + [""]
    return "\n".join(lines).rstrip() + "\n"


def run_label(folder: Path) -> str:
    """How the answer names its run: the folder relative to the working directory (as a user
    typed it, e.g. ``reports/default``), never an absolute path of one machine."""
    folder = Path(folder)
    try:
        return folder.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return folder.name


def write_answer(run_folder: Path, summary: dict | None = None) -> Path:
    """Write ``RUN/answer.md`` from ``RUN/summary.json`` (or the ``summary`` given)."""
    run_folder = Path(run_folder)
    if summary is None:
        summary = json.loads((run_folder / "summary.json").read_text(encoding="utf-8"))
    out = run_folder / ANSWER_FILE
    tmp = out.with_name(f".{ANSWER_FILE}.tmp")
    tmp.write_text(answer_markdown(summary, run_label=run_label(run_folder)), encoding="utf-8")
    tmp.replace(out)
    return out


def readme_block(summary: dict, run_label: str) -> str:
    """The README's generated block (markers included) for the run."""
    return f"{BEGIN_MARK}\n{answer_markdown(summary, run_label=run_label)}{END_MARK}"


def replace_block(text: str, block: str, *, name: str = "README") -> str:
    """``text`` with its generated block replaced by ``block``; one marker pair must exist."""
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start < 0 or end < start or text.count(BEGIN_MARK) != 1 or text.count(END_MARK) != 1:
        raise ValueError(f"{name} has no single '{BEGIN_MARK}' ... '{END_MARK}' pair")
    return text[:start] + block + text[end + len(END_MARK):]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m densing_bayes.presentation.answer",
        description="Write RUN/answer.md; with --readme, also replace the README's generated "
                    "answer block (--check: only say whether it is current).")
    parser.add_argument("run", type=Path)
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    path = args.run / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"answer: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    if args.readme is None:
        print(f"wrote {write_answer(args.run, summary)}")
        return 0
    text = args.readme.read_text(encoding="utf-8")
    try:
        new = replace_block(text, readme_block(summary, run_label(args.run)),
                            name=str(args.readme))
    except ValueError as exc:
        print(f"answer: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = new == text
        print(f"{args.readme}: generated answer block is "
              f"{'current' if current else 'out of date'} for {args.run}")
        return 0 if current else 1
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
    print(f"{args.readme}: answer block {'updated' if new != text else 'already current'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
