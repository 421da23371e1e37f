"""Shared by the bench/ scripts: the generated bank seed, baselines, small statistics.

Imported as a sibling module (``python bench/bench_*.py`` puts bench/ on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The project's own baseline scripts (bench/baselines/, see its README.md).
DEFAULT_BASELINE_DIR = Path(__file__).resolve().parent / "baselines"


_console: Any = None


def progress(text: str) -> None:
    """A line of progress on stderr: through rich (time-stamped, kept apart from the
    report on stdout) when a person watches a terminal, plain text in a log or CI."""
    global _console
    if not sys.stderr.isatty():
        print(text, file=sys.stderr, flush=True)
        return
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    _console.log(text, markup=False, highlight=False)


# -- baselines ---------------------------------------------------------------------------


def run_baseline(baseline_dir: Path, script: str, *args: str, timeout: float = 600) -> Any:
    """Run one bench/baselines script (e.g. ``"codec.py"``); its last stdout line is JSON."""
    path = baseline_dir / script
    if not path.is_file():
        raise SystemExit(f"baseline {path} not found (use --baseline-dir)")
    progress(f"baseline: {script} {' '.join(args)}")
    out = subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    progress(f"  {json.dumps(result)[:300]}")
    return result


# -- measurement ------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100); NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
