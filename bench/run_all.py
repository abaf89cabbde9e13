"""Run every benchmark in bench/ and write their figures as one Markdown table.

    .venv/bin/python bench/run_all.py            # full benchmarks (tens of minutes)
    .venv/bin/python bench/run_all.py --quick    # small versions, a few minutes
    .venv/bin/python bench/run_all.py --only engines,serve

Each benchmark prints a readable table and, as its very last line, one JSON object with its
figures and their goals (keys `goal_<figure>`). This script runs them one after another (never
in parallel: they measure speed), collects those JSON lines, and writes `bench/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ORDER = ["engines", "pii", "data_build", "retrieval", "train", "serve"]


def discover() -> list[str]:
    found = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("run_all", "__init__")
                   and not p.stem.startswith("_"))
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def last_json_line(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


LOWER_IS_BETTER = ("p50", "p95", "p99", "_ms", "latency", "memory", "peak", "_mb", "_gb",
                   "overhead")


def meets(value: object, goal: object, name: str) -> str:
    """'yes' or 'NO' against the goal; figures about time or memory are better when lower."""
    if not isinstance(value, int | float) or not isinstance(goal, int | float):
        return ""
    lower = any(word in name for word in LOWER_IS_BETTER)
    return "yes" if (value <= goal if lower else value >= goal) else "NO"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run the small version of each")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    console = Console()
    names = [n for n in discover() if not args.only or n in args.only.split(",")]
    rows: list[tuple[str, str, object, object, str]] = []
    figures: dict[str, dict] = {}
    for name in names:
        console.rule(f"bench/{name}.py")
        started = time.perf_counter()
        cmd = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        console.print(proc.stdout[-4000:], highlight=False, markup=False)
        data = last_json_line(proc.stdout)
        if proc.returncode != 0 or data is None:
            console.print(f"[red]{name} failed (exit {proc.returncode})[/]\n{proc.stderr[-2000:]}")
            rows.append((name, "(failed)", proc.returncode, None, "NO"))
            continue
        figures[name] = data
        for key, value in data.items():
            if key.startswith("goal_") or key == "bench":
                continue
            goal = data.get(f"goal_{key}")
            met = meets(value, goal, key) if goal is not None else ""
            rows.append((name, key, value, goal, met))
        rows.append((name, "wall time (s)", round(elapsed, 1), None, ""))

    table = Table(title="tuneloop benchmarks" + (" (quick)" if args.quick else ""))
    for col in ("benchmark", "figure", "value", "goal", "met"):
        table.add_column(col)
    lines = [
        f"# Benchmarks{' (quick)' if args.quick else ''}",
        "",
        f"Measured on {platform.machine()}, {platform.processor() or 'CPU'}, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')} with "
        f"`bench/run_all.py{' --quick' if args.quick else ''}`.",
        "",
        "| benchmark | figure | value | goal | met |",
        "|---|---|---|---|---|",
    ]
    for name, key, value, goal, ok in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        goal_shown = "" if goal is None else str(goal)
        table.add_row(name, key, shown, goal_shown, ok)
        lines.append(f"| {name} | {key} | {shown} | {goal_shown} | {ok} |")
    console.print(table)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")
    print(json.dumps({"bench": "run_all", "quick": args.quick, "figures": figures}))
    return 1 if any(r[1] == "(failed)" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
