"""Dataset build benchmark: a million synthetic support records through the full pipeline
(validate, normalise, redact, exact and near dedup, token-length filters, split, write), with its
records per second and peak memory. The baseline, measured in the same run, is reading and
parsing the same file with nothing else done.

    .venv/bin/python bench/data_build.py [--quick] [--records N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console
from rich.table import Table

TOPICS = ["reset my password", "export invoices", "add a seat", "set up SSO", "restore a file",
          "change my card", "fix a sync conflict", "raise the upload limit", "rotate a token",
          "close my account", "share a folder", "install on Linux"]
FILLER = ["since yesterday", "on two laptops", "for our finance team", "after the update",
          "when I am on the VPN", "every morning", "for large videos", "in the mobile app",
          "with the desktop client", "from the admin console"]
NAMES = ["Anna Berg", "Tom Reyes", "Priya Shah", "Luca Romano", "Chen Wei", "Maria Lopez"]


def write_records(path: Path, n: int, seed: int = 0) -> None:
    """`n` chat records, about 2% exact and 3% near duplicates, some with PII, streamed out."""
    rng = random.Random(seed)
    previous: list[str] = []
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            roll = rng.random()
            if previous and roll < 0.02:
                handle.write(rng.choice(previous))
                continue
            topic = rng.choice(TOPICS)
            detail = " ".join(rng.sample(FILLER, 3))
            user = f"Ticket {i}: I cannot {topic} {detail}."
            if rng.random() < 0.2:
                user += f" Regards, {rng.choice(NAMES)} ({i}@example.com)"
            answer = (f"To {topic}, open Settings > {topic.split()[-1].title()} and follow step "
                      f"{i % 9}. If it still fails {rng.choice(FILLER)}, reply with a screenshot.")
            if previous and roll < 0.05:
                user = user.replace(f"Ticket {i}:", "Hello again,")
            line = json.dumps({"messages": [{"role": "user", "content": user},
                                            {"role": "assistant", "content": answer}],
                               "metadata": {"category": topic.split()[-1]}}) + "\n"
            if len(previous) < 1000:
                previous.append(line)
            elif rng.random() < 0.01:
                previous[rng.randrange(1000)] = line
            handle.write(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    n = 20_000 if args.quick else args.records
    console = Console()
    from tuneloop import Project
    from tuneloop.data.build import build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        (root / "data").mkdir(parents=True)
        data = root / "data" / "records.jsonl"
        console.print(f"writing {n:,} records ...")
        write_records(data, n)
        (root / "tuneloop.yaml").write_text(
            "version: 1\ntask: {name: bench}\nsources:\n  - {name: records, path: "
            "data/records.jsonl, tier: 1}\ndatasets:\n  - {name: big, sources: [records], "
            "slice_field: category}\n", encoding="utf-8")
        os.environ.pop("TUNELOOP_DATABASE_URL", None)
        project = Project.init(root)
        start = time.perf_counter()
        with data.open(encoding="utf-8") as handle:
            parsed = sum(1 for line in handle if json.loads(line))
        read_rps = parsed / (time.perf_counter() - start)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        marks = set()

        def report(done: int) -> None:
            # A line per 100,000 records read, so a long run shows its pace and memory as it goes.
            mark = done // 100_000
            if mark and mark not in marks:
                marks.add(mark)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                console.print(f"  {done:,} read, {done / (time.perf_counter() - start):,.0f} "
                              f"records/s, peak {rss:,.0f} MB")

        version = build_dataset(project, project.actor(), "big", progress=report)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        build_rps = n / seconds
        steps = version.manifest["steps"]
        table = Table(title=f"Building {n:,} records")
        for col in ("measure", "value"):
            table.add_column(col)
        table.add_row("baseline: read + parse JSONL", f"{read_rps:,.0f} records/s")
        table.add_row("full build", f"{build_rps:,.0f} records/s ({seconds:,.1f} s)")
        table.add_row("build / baseline", f"{build_rps / read_rps:.3f}")
        table.add_row("peak memory (RSS)", f"{peak_mb:,.0f} MB (before build {rss_before:,.0f} MB)")
        table.add_row("kept", f"{steps['kept']:,}")
        for step, reasons in steps["removed"].items():
            table.add_row(f"removed: {step}", ", ".join(f"{k} {v:,}" for k, v in reasons.items()))
        table.add_row("PII redacted", ", ".join(f"{k} {v:,}" for k, v in
                                                version.manifest["pii_redacted"].items()))
        console.print(table)
        project.close()
    print(json.dumps({"bench": "data_build", "records": n, "records_per_s": round(build_rps, 1),
                      "baseline_read_records_per_s": round(read_rps, 1),
                      "ratio_to_baseline": round(build_rps / read_rps, 4),
                      "peak_memory_mb": round(peak_mb), "goal_peak_memory_mb": 2048,
                      "kept": steps["kept"]}))


if __name__ == "__main__":
    main()
