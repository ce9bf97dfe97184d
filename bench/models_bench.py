"""Which embedding model: each candidate's real compute on this CPU, beside its published quality.

    .venv/bin/python bench/models_bench.py                          # the default candidates
    .venv/bin/python bench/models_bench.py --models ViT-B-32,ViT-L-14 --seconds 20
    .venv/bin/python bench/models_bench.py --openclip-docs /path/to/open_clip/docs   # join open_clip's tables

Each architecture is built with fixed random weights (RAGKIT_CLIP_PRETRAINED=none): the same
compute and memory as the trained model, no download. Each runs in a fresh process, so its memory
is its own: `model MiB` is the peak resident memory of that process minus what the process held
after importing torch and open_clip. `images/s` is ragkit's batched forward (ClipEmbedder.embed_tensors,
batch 32 by default, after one warm-up batch) on ready tensors: the ceiling ingest and reindex approach
(decoding overlaps it, docs/performance.md). `CPU ms/image` is that loop's process CPU time per image,
which other processes' load changes far less than the wall time (a shared machine). `text ms` is one
short query through embed_texts, median of 5.

With --openclip-docs, the published zero-shot and retrieval figures of each (architecture, pretrained
tag) are read from open_clip's docs/openclip_results.csv and docs/openclip_retrieval_results.csv.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Table, loadavg, show  # noqa: E402

# (architecture, the pretrained tag worth using with it): the tag only selects published figures;
# the speed run always builds random weights.
CANDIDATES: list[tuple[str, str]] = [
    ("ViT-B-32", "laion2b_s34b_b79k"),
    ("ViT-B-32", "datacomp_xl_s13b_b90k"),
    ("ViT-B-32-256", "datacomp_s34b_b86k"),
    ("MobileCLIP-S2", "datacompdr"),
    ("ViT-B-16", "datacomp_xl_s13b_b90k"),
    ("ViT-B-16-SigLIP", "webli"),
    ("ViT-B-16-SigLIP2", "webli"),
    ("ViT-L-14", "datacomp_xl_s13b_b90k"),
]

_PROBE = r"""
import json, resource, statistics, sys, time
import torch, open_clip
from ragkit.ingest.embedder import ClipEmbedder, RANDOM_SEED, _register_bundled_configs
arch, batch, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss_mib()
started = time.perf_counter()
note = ""
try:
    embedder = ClipEmbedder(arch, "none", "cpu")
    model, size, dim = embedder._model, embedder.image_size, embedder.dim
    encode = embedder.embed_tensors
except Exception as exc:  # e.g. a tokenizer that needs `transformers`: time the image tower alone
    note = f"{type(exc).__name__}: {exc}"[:160]
    embedder = None
    _register_bundled_configs()
    torch.manual_seed(RANDOM_SEED)
    model = open_clip.create_model(arch, pretrained=None).eval()
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    def encode(tensors):
        with torch.inference_mode():
            return model.encode_image(tensors)
    dim = int(encode(torch.randn(1, 3, size, size)).shape[-1])
load_s = time.perf_counter() - started
params = sum(p.numel() for p in model.parameters()) / 1e6
tensors = torch.randn(batch, 3, size, size)
encode(tensors)  # warm-up: the first call allocates
done, started, cpu_started = 0, time.perf_counter(), time.process_time()
while done == 0 or time.perf_counter() - started < seconds:
    encode(tensors)
    done += batch
images_per_s = done / (time.perf_counter() - started)
cpu_ms_per_image = (time.process_time() - cpu_started) * 1000 / done
text = []
for _ in range(5 if embedder else 0):
    t = time.perf_counter()
    embedder.embed_texts(["red silk cape with gold trim"])
    text.append(time.perf_counter() - t)
print(json.dumps({"dim": dim, "image_size": size, "params_m": params, "load_s": load_s,
                  "images_per_s": images_per_s, "cpu_ms_per_image": cpu_ms_per_image, "timed_images": done,
                  "text_ms": statistics.median(text) * 1000 if text else None,
                  "model_mib": rss_mib() - base, "peak_mib": rss_mib(), "threads": torch.get_num_threads(),
                  "note": note}))
"""


def measure(arch: str, batch: int, seconds: float) -> dict:
    """One architecture in a fresh process (so that its memory is its own)."""
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", _PROBE, arch, str(batch), str(seconds)], cwd=repo,
                         capture_output=True, text=True, timeout=1800,
                         env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"{arch}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def published(docs: Path | None) -> dict[tuple[str, str], dict[str, str]]:
    """(name, pretrained) -> the row of open_clip's zero-shot table merged with its retrieval row."""
    if docs is None:
        return {}
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for name in ("openclip_results.csv", "openclip_retrieval_results.csv"):
        with open(docs / name, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows.setdefault((row["name"], row["pretrained"]), {}).update(row)
    return rows


def _pct(row: dict[str, str], column: str) -> str:
    value = row.get(column, "")
    return f"{float(value) * 100:.1f}" if value else "—"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated architectures (default: the candidates)")
    parser.add_argument("--batch", type=int, default=32, help="images per forward (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timed forward per model, after the warm-up batch (at least one batch; default 10)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="fresh processes per model; the best images/s is kept (other load only slows it; "
                             "default 1)")
    parser.add_argument("--openclip-docs", type=Path, default=None,
                        help="open_clip's docs/ folder, for the published figures")
    args = parser.parse_args(argv)
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    candidates = [(a, t) for a, t in CANDIDATES if not wanted or a in wanted]
    candidates += [(a, "") for a in wanted if a not in {c[0] for c in CANDIDATES}]
    figures = published(args.openclip_docs)
    table = Table(f"Embedding models: random weights on the CPU, batch {args.batch}",
                  ["model", "pretrained tag", "dim", "px", "params M", "images/s", "CPU ms/image", "text ms",
                   "model MiB",
                   "IN-1k %", "avg 38 %", "COCO img R@1 %", "Flickr img R@1 %"])
    measured: dict[str, dict] = {}
    for arch, tag in candidates:
        if arch not in measured:
            print(f"measuring {arch} (load avg {loadavg():.2f})…", file=sys.stderr, flush=True)
            runs = [measure(arch, args.batch, args.seconds) for _ in range(max(1, args.repeat))]
            measured[arch] = max(runs, key=lambda run: run["images_per_s"])
            if measured[arch]["note"]:
                table.note(f"{arch}: ragkit can't load it as it is ({measured[arch]['note']}); "
                           "image tower timed alone")
        m, row = measured[arch], figures.get((arch, tag), {})
        text_ms = f"{m['text_ms']:.0f}" if m["text_ms"] is not None else "n/a"
        table.add(arch, tag or "—", m["dim"], m["image_size"], f"{m['params_m']:.0f}", f"{m['images_per_s']:.1f}",
                  f"{m['cpu_ms_per_image']:.0f}", text_ms, f"{m['model_mib']:.0f}", _pct(row, "ImageNet 1k"),
                  _pct(row, "Average perf. on 38 datasets"),
                  _pct(row, "MSCOCO image retr. R@1"), _pct(row, "Flickr image retr. R@1"))
    table.note("images/s: ClipEmbedder.embed_tensors on ready tensors, batch as above, after one warm-up batch "
               f"({args.seconds:.0f} s or at least one batch; best of {max(1, args.repeat)}); torch threads "
               f"{next(iter(measured.values()))['threads'] if measured else '?'}")
    table.note("CPU ms/image: the process's CPU time (all its threads) per image in the same loop: what load from "
               "other processes changes least; a quiet machine with N free cores approaches N*1000/that images/s")
    table.note("model MiB: peak RSS of a fresh process minus its RSS after importing torch and open_clip")
    if figures:
        table.note(f"published figures: open_clip {args.openclip_docs}/openclip_results.csv and "
                   "openclip_retrieval_results.csv ('—': that model and tag are not in the tables)")
    show(table)


if __name__ == "__main__":
    main()
