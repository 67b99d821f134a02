"""`make bench`: run every benchmarks/bench_*.py, collect their JSON into one file and a table.

Each script prints one JSON object; its figures are medians over repeated runs and its speed
claims are ratios measured within the same run. A script that fails is recorded with its error
instead of stopping the others.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run_one(script: Path, quick: bool, timeout: int) -> dict[str, Any]:
    cmd = [sys.executable, str(script), *(["--quick"] if quick else [])]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    seconds = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                else f"exit {proc.returncode}", "seconds": seconds}
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": "did not print one JSON object", "seconds": seconds}
    result["seconds"] = seconds
    return result


def flatten(prefix: str, obj: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), value, rows)
    elif isinstance(obj, (int, float, str, bool)) and not prefix.endswith(("repeats", "note")):
        rows.append((prefix, f"{obj:.4g}" if isinstance(obj, float) else str(obj)))


def to_markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["# Benchmark results", "", "| benchmark | figure | value |", "|---|---|---|"]
    for name, result in results.items():
        rows: list[tuple[str, str]] = []
        flatten("", result, rows)
        lines += [f"| {name} | {key} | {value} |" for key, value in rows
                  if not key.endswith(("min_ms", "p95_ms")) or "latency" in key]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller inputs")
    parser.add_argument("--only", nargs="*", help="bench names, e.g. enhance synth")
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    results = {}
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(script, args.quick, args.timeout)
        status = results[name].get("error", "ok")
        print(f"  {name}: {status} ({results[name].get('seconds', '?')} s)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "benchmarks.md").write_text(to_markdown(results))
    print(f"wrote {args.out / 'benchmarks.json'} and {args.out / 'benchmarks.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
