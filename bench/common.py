"""Shared pieces of the benchmarks: tables, load average, machine facts, settings, timing.

Benchmarks print tables; they are not tests and assert nothing about speed. Every table
header carries the 1-minute load average when its measurements started and when they
ended, because numbers taken while other work runs on the same cores are not comparable.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BENCH_DIR = REPO / "bench"
CACHE_DIR = BENCH_DIR / ".cache"          # generated inputs (JPEG sets, synthetic libraries); gitignored
RESULTS_DIR = BENCH_DIR / "results"       # saved tables (JSON + markdown); gitignored
TMP_DIR = CACHE_DIR / "tmp"               # scratch libraries, deleted after each run

# Speed runs use the real architecture with fixed random weights: the same compute as the real model.
BENCH_MODEL = "ViT-B-32"
BENCH_PRETRAINED = "none"


def loadavg() -> float:
    return os.getloadavg()[0]


def quiet_logs() -> None:
    import pymilvus  # noqa: F401 - importing pymilvus resets its logger level, so import it first
    from ragkit.storage.connection import quiet_milvus_logging
    quiet_milvus_logging()
    for name in ("faiss", "streamlit"):  # pymilvus, milvus_lite, grpc: quiet_milvus_logging()
        logging.getLogger(name).setLevel(logging.CRITICAL)


# `bench/run.py --uri URI` puts the benchmark libraries on a Milvus server: these variables say which
# (the environment, so that the app probe's own process follows too).
SERVER_URI_VAR, SERVER_TOKEN_VAR = "RAGKIT_BENCH_MILVUS_URI", "RAGKIT_BENCH_MILVUS_TOKEN"


def bench_server() -> tuple[str, str] | None:
    """(uri, token) of the Milvus server benchmark libraries live on now; None: embedded files."""
    uri = os.environ.get(SERVER_URI_VAR, "")
    return (uri, os.environ.get(SERVER_TOKEN_VAR, "")) if uri else None


def bench_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of a ragkit process on a benchmark library (random ViT-B-32 on the CPU), on the
    benchmark's Milvus server when there is one (its files stay in data_dir)."""
    env = {"RAGKIT_DATA_DIR": str(data_dir), "RAGKIT_CLIP_MODEL": BENCH_MODEL,
           "RAGKIT_CLIP_PRETRAINED": BENCH_PRETRAINED, "RAGKIT_DEVICE": "cpu"}
    server = bench_server()
    if server:
        env["RAGKIT_MILVUS_URI"], env["RAGKIT_MILVUS_TOKEN"] = server
    return {**env, **extra}


def bench_settings(data_dir: Path):
    from ragkit.config import Settings
    return Settings.load(env=bench_env(data_dir), cwd=data_dir.parent, secrets_files=[])


_EMBEDDER = None


def shared_embedder():
    """One random-weight ViT-B-32 per benchmark process (loading it is measured separately)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        from ragkit.ingest.embedder import ClipEmbedder
        _EMBEDDER = ClipEmbedder(BENCH_MODEL, BENCH_PRETRAINED, "cpu")
    return _EMBEDDER


# --- statistics ---------------------------------------------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "n/a"
    value = seconds * 1000
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- tables -------------------------------------------------------------------------------
@dataclass
class Table:
    """An aligned text table; also rendered as markdown and JSON for bench/results/."""
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_start: float = field(default_factory=loadavg)
    load_end: float | None = None
    seconds: float = 0.0
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def add(self, *cells: Any) -> None:
        self.rows.append([("" if c is None else c) for c in cells])

    def note(self, text: str) -> None:
        self.notes.append(text)

    def finish(self) -> "Table":
        self.load_end = loadavg()
        self.seconds = time.perf_counter() - self._started
        return self

    def header(self) -> str:
        end = self.load_end if self.load_end is not None else loadavg()
        return (f"{self.title}   [load avg 1-min: {self.load_start:.2f} at start, {end:.2f} at end; "
                f"{self.seconds:.0f} s]")

    def text(self) -> str:
        cells = [[str(c) for c in self.columns]] + [[str(c) for c in row] for row in self.rows]
        widths = [max(len(row[i]) if i < len(row) else 0 for row in cells) for i in range(len(self.columns))]

        def line(row: list[str]) -> str:
            parts = []
            for i, width in enumerate(widths):
                value = row[i] if i < len(row) else ""
                parts.append(value.ljust(width) if i == 0 else value.rjust(width))
            return "  ".join(parts).rstrip()

        out = [self.header(), line(cells[0]), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in cells[1:]]
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"**{self.header()}**", "",
               "| " + " | ".join(str(c) for c in self.columns) + " |",
               "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"]
        out += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out)

    def to_dict(self) -> dict:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes,
                "load_avg_1min_start": round(self.load_start, 2),
                "load_avg_1min_end": round(self.load_end if self.load_end is not None else loadavg(), 2),
                "seconds": round(self.seconds, 1)}


def show(table: Table, sink: list[Table] | None = None) -> Table:
    if table.load_end is None:
        table.finish()
    print("\n" + table.text(), flush=True)
    if sink is not None:
        sink.append(table)
    return table


# --- machine ------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _version(module: str) -> str:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is reported as such
        return "not installed"


def machine_facts() -> dict[str, str]:
    import torch
    facts = {
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "memory": f"{_mem_total_gib():.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} intra-op threads)",
    }
    for pkg in ("open_clip_torch", "pymilvus", "milvus-lite", "faiss-cpu", "pillow", "numpy", "streamlit"):
        facts[pkg] = _version(pkg)
    return facts


def machine_table() -> Table:
    table = Table("Machine", ["what", "value"])
    for key, value in machine_facts().items():
        table.add(key, value)
    return table


def save_results(tables: list[Table], args: dict, started: float) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    json_path = RESULTS_DIR / f"bench-{stamp}.json"
    md_path = RESULTS_DIR / f"bench-{stamp}.md"
    json_path.write_text(json.dumps({"started": stamp, "args": args, "tables": [t.to_dict() for t in tables]},
                                    indent=2, default=str))
    md_path.write_text(f"# ragkit benchmark {stamp}\n\n`{' '.join(sys.argv)}`\n\n"
                       + "\n\n".join(t.markdown() for t in tables) + "\n")
    return json_path, md_path
