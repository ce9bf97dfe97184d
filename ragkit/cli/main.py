"""Command-line interface: `python -m ragkit ingest | search | stats | delete | tag | rights | trash | ...`.

With ``--json`` stdout carries exactly one JSON document; progress and messages go to
stderr. Exit status: 0 = everything done, 3 = done but some inputs were rejected,
1 = failure (one line on stderr, no traceback), 2 = bad command-line usage.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from ragkit.config import Settings
from ragkit.cli import models_cmd
from ragkit.errors import InvalidImageError, InvalidInputError, RagkitError
from ragkit.messages import user_message
from ragkit.records import SOURCES
from ragkit.text import printable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
MAX_HITS = 1024  # the store returns at most this many hits per search
MAX_BATCH_SIZE = 1024
MAX_WORKERS = 64
MAX_COPY_BATCH = 16384  # Milvus' query result window (quotaAndLimits.limits.maxQueryResultWindow)


def _err(message: str) -> None:
    """A message line on stderr; names and reasons in it are user data (see printable)."""
    print(printable(message), file=sys.stderr, flush=True)


def _out(text: str, *, keep_newlines: bool = False) -> None:
    """Human-readable output on stdout, through the same filter (JSON is printed as is)."""
    print(printable(text, keep_newlines=keep_newlines))


def _open_library(settings: Settings):
    from ragkit.library import Library
    library = Library.open(settings)
    if library.expired_on_open:
        _err(f"emptied {library.expired_on_open} asset(s) from the trash: they were deleted more than "
             f"{settings.trash_days} days ago (RAGKIT_TRASH_DAYS)")
    return library


def _asset_ids(texts: Sequence[str]) -> list[str]:
    """Asset ids from the command line, checked and without repeats (a bad one stops the command)."""
    from ragkit.storage.filters import validate_sha256
    return list(dict.fromkeys(validate_sha256(text) for text in texts))


def _bulk_json(result, done_key: str) -> dict:
    """A BulkResult as JSON: the assets as they are now, and what was not done, with why."""
    return {done_key: [asset.to_dict() for asset in result.done],
            "skipped": [{"sha256": sha, "reason": why} for sha, why in result.skipped.items()],
            "not_found": result.missing}


def _report_left_out(result) -> None:
    for sha, why in result.skipped.items():
        _err(f"skipped {sha}: {why}")
    for sha in result.missing:
        _err(f"not found: {sha}")


def _warn_random(library) -> None:
    """Load the model now (ingest and search need it) and say loudly if it is untrained."""
    if library.embedder.random_weights:
        _err("warning: the CLIP model has RANDOM weights (RAGKIT_CLIP_PRETRAINED="
             f"{library.settings.clip_pretrained}); similarities are meaningless. "
             "Use a real pretrained tag or checkpoint for real search.")


class _Progress:
    """A tqdm bar on a terminal; silence when stderr is piped (logs stay readable)."""
    def __init__(self, enabled: bool) -> None:
        self._bar = None
        self._enabled = enabled

    def __call__(self, progress) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=progress.total, unit="img", file=sys.stderr, dynamic_ncols=True)
        self._bar.set_postfix(added=progress.added, dup=progress.duplicates, rejected=progress.rejected)
        self._bar.update(progress.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _CountProgress:
    """(done, total) progress: a tqdm bar on a terminal; in a log, one line per tenth of the work."""
    def __init__(self, verb: str, unit: str = "asset") -> None:
        self._verb, self._unit = verb, unit
        self._bar = None
        self._logged = -1

    def __call__(self, done: int, total: int) -> None:
        if not total:
            return
        if sys.stderr.isatty():
            if self._bar is None:
                from tqdm import tqdm
                self._bar = tqdm(total=total, unit=self._unit, file=sys.stderr, dynamic_ncols=True)
            self._bar.update(done - self._bar.n)
        elif (tenth := done * 10 // total) > self._logged:
            self._logged = tenth
            _err(f"{self._verb} {done} of {total}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cmd_ingest(args, settings: Settings) -> int:
    if args.describe:
        from ragkit.studio.captions import Captioner
        Captioner.from_settings(settings).close()  # no key -> a clear error before anything is added
    library = _open_library(settings)
    _warn_random(library)
    bar = _Progress(sys.stderr.isatty() and not args.quiet)
    try:
        report = library.ingest_paths(args.paths, tags=args.tag, on_progress=bar,
                                      batch_size=args.batch_size, workers=args.workers)
    finally:
        bar.close()
    for rejected in report.rejected:
        _err(f"rejected: {rejected.path}: {rejected.reason}")
    rate = len(report.added) / report.seconds if report.seconds and report.added else 0.0
    restored = f", restored from the trash {len(report.restored)}" if report.restored else ""
    _err(f"added {len(report.added)}, duplicates {len(report.duplicates)}{restored}, rejected {len(report.rejected)} "
         f"in {report.seconds:.1f}s ({rate:.1f} images/s)")
    described = _describe_added(library, report, args.concurrency) if args.describe else None
    if args.json:
        print(json.dumps({**report.to_dict(), **({"describe": described.to_dict()} if described else {})},
                         ensure_ascii=False))
    described_all = described is None or described.counts()["done"] == len(report.added)
    return EXIT_OK if report.ok and described_all else EXIT_PARTIAL


def _describe_added(library, report, concurrency: int):
    """ingest --describe: captions for the images just added (`describe --all` finishes an interrupted run)."""
    from ragkit.studio import describe
    from ragkit.studio.cost import format_usd
    if not report.added:
        return None
    plan = describe.plan_describe(library, ids=[asset.sha256 for _, asset in report.added])
    outcome = _run_describe(library, plan, concurrency)
    for item in outcome.items:
        if item.reason:
            _err(f"not described: {item.sha256[:12]}…: {item.reason}")
    if outcome.error:
        _err(f"error: {outcome.error} (`python -m ragkit describe --all` describes the rest)")
    _err(f"described {outcome.counts()['done']} of {len(report.added)}, cost {format_usd(outcome.cost_usd)}")
    return outcome


def cmd_search(args, settings: Settings) -> int:
    filters = {"filters": _filters(args), "min_score": args.min_score}  # bad filters: before the model loads
    library = _open_library(settings)
    _warn_random(library)
    if args.usable:
        from ragkit.rights import now_ms
        filters["usable_at"] = now_ms()
    data = None
    if args.image:
        from ragkit.ingest.pipeline import MAX_FILE_BYTES, read_image_file
        try:
            data = read_image_file(Path(args.image), MAX_FILE_BYTES)
        except InvalidImageError as exc:
            raise InvalidImageError(f"The example image {args.image} can't be used: {exc}") from None
    if (args.image or args.similar) and (args.text or args.not_text):  # "like this, but red"
        hits = library.search_composed(image=data, similar=args.similar, text=args.text or "",
                                       text_weight=args.text_weight, not_text=args.not_text, k=args.k, **filters)
    elif args.image:
        hits = library.search_image(data, args.k, **filters)
    elif args.similar:
        hits = library.search_similar(args.similar, args.k, **filters)
    else:
        hits = library.search_text(args.text or "", args.k, keywords=not args.no_keywords, **filters)
        if not args.no_keywords and library.keyword_search_unavailable and not args.json:
            _err(f"note: words in names and tags are not searched: {library.keyword_search_unavailable}")
    if args.json:
        print(json.dumps({"query": args.text or args.image or args.similar,
                          "hits": [hit.to_dict() for hit in hits]}, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        _err("no matches" + (" (the library is empty: run `python -m ragkit ingest FOLDER`)"
                             if library.count() == 0 else ""))
        return EXIT_OK
    _out(f"{'#':>2}  {'score':>6}  {'sha256':<12}  {'source':<9}  filename  [tags]")
    for rank, hit in enumerate(hits, 1):
        asset = hit.asset
        tags = f"  [{', '.join(asset.tags)}]" if asset.tags else ""
        found = "  (by words: " + ", ".join(hit.matched) + ")" if hit.matched else ""
        _out(f"{rank:>2}  {hit.score:6.3f}  {asset.sha256[:12]}  {asset.source:<9}  {asset.filename}{tags}{found}")
        if asset.prompt:
            _out(f"{'':>34}prompt: {asset.prompt[:100]}")
    return EXIT_OK


def cmd_stats(args, settings: Settings) -> int:
    from ragkit.studio.cost import CostLedger, format_usd
    library = _open_library(settings)
    stats = library.stats()
    spent = CostLedger(settings.data_dir).totals()
    if args.json:
        print(json.dumps({**stats.to_dict(), "generation_cost_usd": spent.known_cost,
                          "generations": spent.generations, "generations_unpriced": spent.unpriced,
                          "ledger_damaged_lines": spent.damaged, "ledger_problem": spent.problem},
                         ensure_ascii=False))
        return EXIT_OK
    _out(f"assets     {stats.assets}")
    _out(f"generated  {stats.generated}")
    _out(f"model      {stats.model}{'  (RANDOM WEIGHTS: demo/test only)' if stats.random_weights else ''}")
    _out(f"database   {stats.db_uri}  (collection {stats.collection})")
    _out(f"files      {stats.data_dir}")
    _out(f"generated  {spent.generations} time(s) in the Studio, cost {format_usd(spent.known_cost)}{spent.summary()}")
    if stats.advice:
        _out(f"advice     {stats.advice}")
    _print_models(stats)
    return EXIT_OK


def _print_models(stats) -> None:
    """The model part of `stats`: a configured model the library does not use, a reindex, other models."""
    if stats.configured_model:
        _out(f"note       RAGKIT_CLIP_MODEL/RAGKIT_CLIP_PRETRAINED name {stats.configured_model}, but this library "
             f"uses {stats.model} (recorded in its data folder, model.json). To move it to that model: "
             "python -m ragkit reindex --model ARCH --pretrained TAG_OR_PATH")
    if stats.reindex:
        state = stats.reindex
        how = ("no progress for a while: it was probably stopped; run the same reindex again to resume"
               if state["stalled"] else "in progress")
        _out(f"reindex    to {state['model_id']}: {state['done']} of {state['total']} ({how})")
    for other in stats.other_collections:
        filling = "" if other["complete"] else ", being filled"
        _out(f"other      {other['model']}: {other['count']} rows (collection {other['collection']}{filling})")


def cmd_reindex(args, settings: Settings) -> int:
    from ragkit.ingest.embedder import model_identity, weights_are_random
    from ragkit.lifecycle.reindex import reindex
    library = _open_library(settings)
    model = args.model or library.active_model.choice.model  # --drop-old alone: the current model
    pretrained = args.pretrained or library.active_model.choice.pretrained
    if model_identity(model, pretrained) != library.model_id:
        _err(f"re-indexing {library.count()} assets with {model_identity(model, pretrained)}: the library keeps "
             f"using {library.model_id} until the new index is complete and verified; safe to interrupt "
             "(run the same command again to resume)")
        if weights_are_random(pretrained):
            _err("warning: the new model has RANDOM weights; similarities will be meaningless.")
    progress = _CountProgress("re-indexed")
    try:
        report = reindex(library, model, pretrained, on_progress=progress, drop_old=args.drop_old,
                         batch_size=args.batch_size, workers=args.workers)
    finally:
        progress.close()
    dropped = f"; dropped {', '.join(report.dropped)}" if report.dropped else ""
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    elif not report.switched:
        _err(f"the library already uses {report.model} ({report.assets} assets){dropped}")
    else:
        _err(f"switched: the library now uses {report.model}, {report.assets} assets; embedded {report.embedded} in "
             f"{report.seconds:.0f}s ({report.images_per_second:.1f} images/s), {report.verified} checked"
             + (f", {report.updated} updated and {report.removed} removed during the reindex"
                if report.updated or report.removed else "") + dropped)
        if not report.dropped:
            _err(f"the index of {report.previous} is kept (python -m ragkit reindex --drop-old removes it)")
    return EXIT_OK


def cmd_delete(args, settings: Settings) -> int:
    library = _open_library(settings)
    ids = _asset_ids(args.sha256)
    if not library.has_trash:
        return _delete_for_good(library, ids, args.json)
    result = library.trash(ids)
    _report_left_out(result)
    if args.json:
        print(json.dumps({"deleted": len(result.done), "to_trash": True, "not_found": result.missing,
                          "already_in_trash": list(result.skipped)}))
    else:
        _err(f"moved {len(result.done)} asset(s) to the trash; `python -m ragkit trash restore SHA...` brings "
             f"them back, `python -m ragkit trash empty` deletes them for good (so does time: after "
             f"{settings.trash_days} days)")
    return EXIT_OK if not result.missing else EXIT_PARTIAL


def _delete_for_good(library, ids: list[str], as_json: bool) -> int:
    """A library of schema 1 has no trash: delete as before, and say how to get the trash."""
    found = {asset.sha256 for asset in library.get_many(ids)}
    missing = [sha for sha in ids if sha not in found]
    deleted = library.delete([sha for sha in ids if sha in found])
    for sha in missing:
        _err(f"not found: {sha}")
    _err(f"deleted {deleted} asset(s) for good: this library has no trash yet; "
         "`python -m ragkit upgrade` adds it (deleted images can then be restored)")
    if as_json:
        print(json.dumps({"deleted": deleted, "to_trash": False, "not_found": missing, "already_in_trash": []}))
    return EXIT_OK if not missing else EXIT_PARTIAL


def cmd_tag(args, settings: Settings) -> int:
    library = _open_library(settings)
    result = library.update_tags_many(_asset_ids(args.sha256), add=args.add, remove=args.remove)
    _report_left_out(result)
    if args.json:
        print(json.dumps(_bulk_json(result, "updated"), ensure_ascii=False))
    else:
        for asset in result.done:
            _out(f"{asset.sha256[:12]}  {', '.join(asset.tags) or '(no tags)'}")
    return EXIT_OK if result.complete else EXIT_PARTIAL


def cmd_rights(args, settings: Settings) -> int:
    from ragkit.rights import describe, now_ms, rights_change
    library = _open_library(settings)
    ids = _asset_ids(args.sha256)
    no_reference = True if args.no_reference else (False if args.allow_reference else None)
    change = rights_change(until=args.until, no_until=args.no_until, note=args.note, no_reference=no_reference)
    if change.empty:  # nothing to change: show them
        from ragkit.records import BulkResult
        found = {asset.sha256: asset for asset in library.get_many(ids)}
        result = BulkResult(done=[found[sha] for sha in ids if sha in found],
                            missing=[sha for sha in ids if sha not in found])
    else:
        result = library.set_rights(ids, change)
    _report_left_out(result)
    if args.json:
        print(json.dumps(_bulk_json(result, "assets"), ensure_ascii=False))
    else:
        now = now_ms()
        for asset in result.done:
            _out(f"{asset.sha256[:12]}  {describe(asset, now) or '(no usage rights recorded)'}")
    return EXIT_OK if result.complete else EXIT_PARTIAL


def cmd_trash(args, settings: Settings) -> int:
    from ragkit.lifecycle.trash import require_trash
    library = _open_library(settings)
    require_trash(library)
    if args.action == "restore":
        return _trash_restore(library, _asset_ids(args.sha256), args.json)
    if args.action == "empty":
        return _trash_empty(library, _asset_ids(args.sha256) if args.sha256 else None, args.json)
    trashed = library.trashed()
    if args.json:
        print(json.dumps({"count": len(trashed), "trash_days": settings.trash_days,
                          "assets": [asset.to_dict() for asset in trashed]}, ensure_ascii=False))
        return EXIT_OK
    if not trashed:
        _err("the trash is empty")
        return EXIT_OK
    from datetime import datetime
    for asset in trashed:
        when = datetime.fromtimestamp(asset.trashed_at / 1000).strftime("%Y-%m-%d %H:%M")
        _out(f"{asset.sha256}  deleted {when}  {asset.filename}")  # whole: to paste into `trash restore`
    _err(f"{len(trashed)} asset(s) in the trash; each is deleted for good {settings.trash_days} days after it "
         "was deleted (RAGKIT_TRASH_DAYS)")
    return EXIT_OK


def _trash_restore(library, ids: list[str], as_json: bool) -> int:
    result = library.restore(ids)
    _report_left_out(result)
    if as_json:
        print(json.dumps(_bulk_json(result, "restored"), ensure_ascii=False))
    else:
        _err(f"restored {len(result.done)} asset(s)")
    return EXIT_OK if result.complete else EXIT_PARTIAL


def _trash_empty(library, ids: list[str] | None, as_json: bool) -> int:
    progress = _CountProgress("emptying the trash:")
    try:
        result = library.empty_trash(ids, on_progress=progress)
    finally:
        progress.close()
    _report_left_out(result)
    if as_json:
        print(json.dumps({"deleted": len(result.done), "deleted_ids": [a.sha256 for a in result.done],
                          "skipped": [{"sha256": sha, "reason": why} for sha, why in result.skipped.items()],
                          "not_found": result.missing}))
    else:
        _err(f"deleted {len(result.done)} asset(s) for good")
    return EXIT_OK if result.complete else EXIT_PARTIAL


def cmd_doctor(args, settings: Settings) -> int:
    from ragkit.lifecycle import doctor
    library = _open_library(settings)
    report = doctor.repair(library) if args.repair else doctor.check(library)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _out(f"rows {report.rows} ({report.in_trash} in the trash), original files {report.files}")
        problems = [("rows whose original is missing", report.rows_without_original),
                    ("rows whose thumbnail is missing", report.rows_without_thumbnail),
                    ("files without a row", report.files_without_row),
                    ("unfinished writes", report.temp_files)]
        for label, items in problems:
            if items:
                _out(f"{label}: {len(items)}")
        for action in report.actions:
            _out(f"repaired: {action}")
        if report.healthy:
            _out("healthy: files and database agree")
        elif not args.repair:
            _out("run `python -m ragkit doctor --repair` to fix these")
    return EXIT_OK if report.healthy or args.repair else EXIT_PARTIAL


def cmd_export(args, settings: Settings) -> int:
    from ragkit.ingest.portable import export_library
    filters = _filters(args)
    library = _open_library(settings)
    report = export_library(library, args.out, filters=filters)
    for sha in report.missing:
        _err(f"missing original, not exported: {sha} (run `python -m ragkit doctor`)")
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _err(f"exported {report.assets} asset(s) to {report.path} ({report.bytes / 2**20:.1f} MiB)")
    return EXIT_OK if not report.missing else EXIT_PARTIAL


def cmd_import(args, settings: Settings) -> int:
    from ragkit.ingest.portable import import_library
    library = _open_library(settings)
    _warn_random(library)
    report = import_library(library, args.archive)
    for rejected in report.rejected:
        _err(f"rejected: {rejected.path}: {rejected.reason}")
    _err(f"imported {len(report.added)}, duplicates {len(report.duplicates)}, rejected {len(report.rejected)}")
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    return EXIT_OK if report.ok else EXIT_PARTIAL


SIZE_HELP = "output size: 512, 1K, 2K or 4K, as the model offers (default: the model's, 1K)"


def _check_model(settings: Settings, model: str | None, aspect: str | None, size: str | None) -> None:
    """Before any job or request: the model is offered for this key (ModelGoneError: one line with the
    live replacements), and takes this aspect ratio and size."""
    from ragkit.studio.discovery import require_offered
    from ragkit.studio.models import check_output, default_model, model_info, normalise_size
    chosen = default_model(model or settings.gemini_model)
    require_offered(settings, chosen, "image", "--model" if model else "RAGKIT_GEMINI_MODEL")
    if problem := check_output(model_info(chosen), aspect, normalise_size(size)):
        raise InvalidInputError(problem)


def cmd_generate(args, settings: Settings) -> int:
    from ragkit.ingest.images import EXTENSION_BY_MIME
    from ragkit.studio import ImageGenerator, generate_from, save_generated_image
    if args.edit:
        return __import__("ragkit.cli.edit", fromlist=["cmd_edit"]).cmd_edit(args, settings, _open_library)
    generator = ImageGenerator.from_settings(settings)  # no key -> a clear error before anything loads
    _check_model(settings, args.model, args.aspect, args.size)
    library = _open_library(settings)
    _err(f"generating {args.n} image(s) with {args.model or settings.gemini_model} "
         f"from {len(args.ref)} reference(s)…")
    generation = generate_from(library, generator, args.brief, args.ref, model=args.model,
                               aspect_ratio=args.aspect, variations=args.n, size=args.size)
    for warning in generation.warnings:
        _err(f"warning: {warning}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    stamp = __import__("time").strftime("%Y%m%d-%H%M%S")
    for index, image in enumerate(generation.images, 1):
        path = out_dir / f"ragkit-{stamp}-{index}{EXTENSION_BY_MIME.get(image.mime, '.png')}"
        path.write_bytes(image.data)
        entry = {"path": str(path), "mime": image.mime}
        if args.save:
            entry["sha256"] = save_generated_image(library, generation, image, tags=args.tag).sha256
        images.append(entry)
        _err(f"wrote {path}" + (f" (saved to library as {entry['sha256'][:12]})" if args.save else ""))
    if args.json:
        print(json.dumps({"images": images, "text": generation.text, "model": generation.model,
                          "size": generation.size, "usage": generation.usage, "seconds": round(generation.seconds, 2),
                          "warnings": generation.warnings}, ensure_ascii=False))
    elif generation.text:
        _out(generation.text, keep_newlines=True)
    return EXIT_OK if not generation.warnings else EXIT_PARTIAL


def cmd_brand_kit(args, settings: Settings) -> int:
    from ragkit.studio import kits
    store = kits.kit_store(settings)
    if args.action == "list":
        return _list_kits(args, store, _open_library(settings))
    if args.action == "delete":
        damaged = store.damaged_file(args.name) if store.find(args.name) is None else None
        if not store.delete(args.name):
            raise kits.KitNotFoundError(f"No brand kit named {printable(args.name)!r}; "
                                        "`python -m ragkit brand-kit list` shows the kits.")
        _err(f"deleted the damaged brand kit file {damaged.path.name}" if damaged else
             f"deleted brand kit {kits.clean_name(args.name)!r}; images made with it keep its name")
        return EXIT_OK
    library = _open_library(settings)
    damaged = store.damaged_file(args.name)
    if damaged is not None and damaged.path == store.path_for(args.name):
        _err(f"the kit's file {damaged.path.name} was damaged ({damaged.reason}): it is replaced")
    current = store.find(args.name)
    kit = kits.make_kit(args.name,
                        args.style if args.style is not None else (current.style if current else ""),
                        [] if args.no_refs else args.ref or (current.reference_ids if current else ()),
                        args.avoid if args.avoid is not None else (current.avoid if current else ()),
                        args.aspect if args.aspect is not None else (current.aspect if current else None))
    _check_kit_references(library, kit)
    saved = store.save(kit)  # last write wins; the version it prints tells
    if args.json:
        print(json.dumps(saved.to_dict(), ensure_ascii=False))
    _err(f"saved brand kit {saved.name!r}, version {saved.version}")
    return EXIT_OK


def _check_kit_references(library, kit) -> None:
    """A kit's references must be in the library (a usable one, or it can't be sent)."""
    from ragkit.studio.kits import check_usable
    check_usable(library, kit, saving=True)


def _list_kits(args, store, library) -> int:
    from ragkit.studio.kits import reference_problems
    found, damaged = store.scan()
    listed = [(kit, reference_problems(library, kit)) for kit in found]
    status = EXIT_FAILURE if damaged else EXIT_OK
    if args.json:
        print(json.dumps({"kits": [{**kit.to_dict(), "problems": problems} for kit, problems in listed],
                          "damaged": [{"file": str(d.path), "name": d.name, "reason": d.reason} for d in damaged]},
                         ensure_ascii=False))
        return status
    for entry in damaged:
        _err(f"damaged: {printable(entry.describe())}")
    if not listed and not damaged:
        _err("no brand kits yet: `python -m ragkit brand-kit set NAME --style TEXT [--ref SHA]`")
    for kit, problems in listed:
        _out(f"{kit.name}  (version {kit.version}, {len(kit.reference_ids)} reference(s), "
             f"aspect {kit.aspect or 'auto'})")
        if kit.style:
            _out(f"    style: {kit.style[:100]}")
        if kit.avoid:
            _out(f"    avoid: {', '.join(kit.avoid)}")
        for problem in problems:
            _out(f"    can't be used: {problem}")
    return status


def cmd_batch(args, settings: Settings) -> int:
    from ragkit.studio import ImageGenerator, batch
    from ragkit.studio.cost import format_usd
    ImageGenerator.from_settings(settings).close()  # no key -> a clear error before anything loads
    if not args.resume:
        _check_model(settings, args.model, args.aspect, args.size)
    library = _open_library(settings)
    store = batch.job_store(settings)
    if args.cancel:
        from ragkit.studio import half_price
        job = half_price.cancel(store, args.cancel, library)
        _err(f"batch job {job.id}: the half-price batch was cancelled; --resume {job.id} --retry-failed sends it again")
        return EXIT_OK
    job = store.load(args.resume) if args.resume else store.create(_plan_batch(args, library, settings))
    for skipped in job.spec.skipped:
        _err(f"skipped: {skipped['reference'][:12]}…: {skipped['reason']}")
    pending = job.counts()[batch.PENDING] + (job.counts()[batch.FAILED] if args.retry_failed else 0)
    _err(f"batch job {job.id}: {len(job.spec.products)} product(s) x {job.spec.variations} with "
         f"{job.spec.model}; {pending} request(s) to send, "
         + ("as one half-price Gemini batch (results within a day; Ctrl-C is safe, --resume polls it again)"
            if job.spec.half_price else f"{args.concurrency} at a time"))
    progress = _CountProgress("finished", unit="image")
    try:
        job = batch.run_batch(store, job.id, library, concurrency=args.concurrency, approve=args.approve,
                              retry_failed=args.retry_failed, on_progress=progress)
    finally:
        progress.close()
    report = batch.job_report(job)
    counts = job.counts()
    if job.error:
        _err(f"error: {job.error}")
    for item in report["items"]:
        if item["reason"]:
            _err(f"{item['status']}: {item['reference'][:12]}…: {item['reason']}")
    _err(f"{counts[batch.DONE]} of {len(job.takes)} image(s) made, {counts[batch.FAILED]} failed, "
         f"{counts[batch.PENDING]} not sent; cost {format_usd(job.cost_usd)}. "
         + (f"Saved to the library with the tag {job.tag}." if args.approve else
            f"Review them in the Studio › Batch (job {job.id}), or run again with --approve to keep them all."))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    if counts[batch.DONE] == 0:
        return EXIT_FAILURE
    return EXIT_OK if counts[batch.DONE] == len(job.takes) and not job.spec.skipped else EXIT_PARTIAL


def cmd_describe(args, settings: Settings) -> int:
    from ragkit.studio import describe
    from ragkit.studio.captions import Captioner
    from ragkit.studio.cost import format_usd
    from ragkit.studio.models import bare_id
    Captioner.from_settings(settings).close()  # no key -> a clear error before anything loads
    library = _open_library(settings)
    plan = describe.plan_describe(library, everything=args.all, tag=args.tag, ids=args.sha256,
                                  retry_failed=args.retry_failed, new=args.new)
    _err(f"describing {plan.assets} image(s) with {bare_id(settings.caption_model)}, "
         f"{args.concurrency} at a time" + (f"; {len(plan.skipped)} skipped" if plan.skipped else ""))
    outcome = _run_describe(library, plan, args.concurrency, args.retry_failed)
    for skipped in outcome.skipped:
        _err(f"skipped: {skipped['sha256'][:12]}…: {skipped['reason']}")
    for item in outcome.items:
        if item.reason:
            _err(f"{item.status}: {item.sha256[:12]}…: {item.reason}")
    counts = outcome.counts()
    if outcome.error:
        _err(f"error: {outcome.error}")
    _err(f"{counts[describe.DONE]} described, {counts[describe.FAILED]} failed, {counts[describe.PENDING]} not sent; "
         f"cost {format_usd(outcome.cost_usd)}. Suggested tags wait in each image's details until accepted.")
    if args.json:
        print(json.dumps(outcome.to_dict(), ensure_ascii=False))
    elif not args.all and not args.tag:
        for item in outcome.items:
            if item.caption:
                _out(f"{item.sha256[:12]}  {item.caption}  [suggested: {', '.join(item.suggested_tags) or '-'}]")
    if plan.assets and counts[describe.DONE] == 0:
        return EXIT_FAILURE
    return EXIT_OK if counts[describe.DONE] == plan.assets and not outcome.skipped else EXIT_PARTIAL


def _run_describe(library, plan, concurrency: int, retry_failed: bool = False):
    """Describe with a progress line; the outcome (ragkit.studio.describe.Outcome)."""
    from ragkit.studio import describe
    progress = _CountProgress("described", unit="image")
    try:
        return describe.describe(library, plan, concurrency=concurrency, retry_failed=retry_failed,
                                 on_progress=progress)
    finally:
        progress.close()


def _plan_batch(args, library, settings: Settings):
    from ragkit.studio import batch, kits
    if not args.brief:
        raise InvalidInputError("Give the brief with --brief TEXT (or --resume ID to finish a job).")
    kit = kits.kit_store(settings).get(args.brand_kit) if args.brand_kit else None
    return batch.plan_batch(library, args.brief, tag=args.tag, ref_each=args.ref_each, with_refs=args.with_ref,
                            kit=kit, variations=args.n, model=args.model, aspect=args.aspect, new=args.new,
                            half_price=args.half_price, size=args.size)


def cmd_migrate(args, settings: Settings) -> int:
    from ragkit.lifecycle.migrate import migrate_library
    library = _open_library(settings)
    progress = _CountProgress("copied")
    try:
        report = migrate_library(library, args.to, args.token or "", on_progress=progress, batch=args.batch_size)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _err(f"copied {report.copied} asset(s) to {report.target} (collection {report.collection}); "
             f"{report.already_there} were already there; the target now holds {report.target_rows}.")
        _err(f"Next: set RAGKIT_MILVUS_URI={report.target} (and RAGKIT_MILVUS_TOKEN) for the app and the CLI, "
             f"and keep RAGKIT_DATA_DIR={settings.data_dir} reachable by every process. "
             "The embedded file is untouched.")
    return EXIT_OK


def cmd_upgrade(args, settings: Settings) -> int:
    library = _open_library(settings)
    if library.needs_upgrade:
        _err(f"upgrading the library ({library.count()} assets) to the current format: rows and vectors are "
             "copied, nothing is re-embedded; the old collection stays until --drop-old")
    progress = _CountProgress("copied")
    try:
        report = library.upgrade(on_progress=progress, drop_old=args.drop_old, batch=args.batch_size)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    elif report.from_version == report.to_version:
        _err(f"the library is already in the current format (schema {report.to_version}), {report.assets} assets"
             + ("; the old collection was dropped" if report.dropped_old else ""))
    else:
        _err(f"upgraded: schema {report.from_version} -> {report.to_version}, {report.assets} assets "
             f"(collection {report.collection})" + ("; the old collection was dropped" if report.dropped_old else ""))
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors (which quote what was typed) made safe to print."""
    def error(self, message: str):
        super().error(printable(message))


def _fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {printable(text)[:40]}")
    return value


def _whole_number(low: int, high: int):
    """An argparse type: an int in [low, high], or a usage error that says the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value
    return parse


def _checked(parse, what: str):
    """An argparse type from a ragkit.storage.filters parser: its InvalidInputError becomes a usage error (exit 2)."""
    def check(text: str):
        try:
            return parse(text)
        except RagkitError as exc:
            raise argparse.ArgumentTypeError(printable(str(exc))) from None
    check.__name__ = what  # argparse names the type in some messages
    return check


def _add_filter_flags(command: argparse.ArgumentParser) -> None:
    """The filters `search` and `export` share (ragkit.storage.filters.Filters)."""
    from ragkit.storage.filters import FILE_TYPES, ORIENTATIONS, MAX_SIDE, file_type, parse_day, parse_min_side
    command.add_argument("--tag", action="append", default=[], help="only assets with this tag (repeatable)")
    command.add_argument("--source", choices=SOURCES, help="only uploaded or only generated assets")
    command.add_argument("--since", type=_checked(lambda t: parse_day(t, "--since"), "date"), metavar="YYYY-MM-DD",
                         help="only assets added on or after this day (UTC)")
    command.add_argument("--until", type=_checked(lambda t: parse_day(t, "--until"), "date"), metavar="YYYY-MM-DD",
                         help="only assets added on or before this day (UTC)")
    command.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                         type=_checked(file_type, "type"),
                         help=f"only this file type (repeatable): {', '.join(FILE_TYPES)}")
    command.add_argument("--orientation", type=str.lower, choices=ORIENTATIONS,
                         help="only wider than tall, taller than wide, or square pictures")
    command.add_argument("--min-side", type=_checked(parse_min_side, "pixels"), default=0, metavar="PX",
                         help=f"only pictures whose shorter side has at least PX pixels (up to {MAX_SIDE:,})")


def _filters(args):
    """The Filters of `search` or `export` (InvalidInputError, e.g. --since after --until)."""
    from ragkit.storage.filters import Filters
    return Filters(tags=tuple(args.tag), source=args.source, since=args.since, until=args.until,
                   types=tuple(args.types), orientation=args.orientation, min_side=args.min_side)


def _threshold_arg(text: str) -> float:
    """--threshold: a cosine similarity in (0, 1], or a usage error (exit 2)."""
    from ragkit.search.duplicates import validate_threshold
    try:
        return validate_threshold(text)
    except RagkitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _candidates_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"give a whole number from 1 to 256, not {printable(text)[:40]!r}")
    return value


def cmd_duplicates(args, settings: Settings) -> int:
    from ragkit.search.duplicates import assets_to_delete, find_duplicate_groups
    library = _open_library(settings)
    if library.random_weights:
        _err("warning: the CLIP model has RANDOM weights: unrelated pictures score as near-duplicates, "
             "so these groups are meaningless. Use a real pretrained tag or checkpoint.")
    bar = _CountProgress("compared")
    try:
        groups = find_duplicate_groups(library, args.threshold, candidates=args.candidates, on_progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps({"threshold": args.threshold, "model": library.model_id,
                          "random_weights": library.random_weights,
                          "groups": [group.to_dict() for group in groups]}, ensure_ascii=False))
        return EXIT_OK
    for number, group in enumerate(groups, 1):
        _out(f"group {number}: {len(group.assets)} assets, lowest similarity {group.min_score:.3f}")
        for asset, score in zip(group.assets, group.scores):
            mark = "keep" if asset.sha256 == group.keep else f"{score:.3f}"
            _out(f"  {mark:>5}  {asset.sha256[:12]}  {asset.width}x{asset.height}  "
                 f"{asset.size_bytes / 1024:,.0f} KiB  {asset.filename}")
        _out("")
    _err(f"{len(groups)} group(s) at similarity >= {args.threshold}; keeping the first of each would delete "
         f"{assets_to_delete(groups)} asset(s)" + (" (`python -m ragkit delete SHA256...`)" if groups else ""))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m ragkit",
        description="ragkit: search your image library by description, and generate promo images from it.",
        epilog="Exit status: 0 ok, 3 some inputs rejected (the rest done), 1 failure, 2 usage error. "
               "Settings come from RAGKIT_* environment variables (see README).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="add image files or folders (recursive) to the library")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--tag", action="append", default=[], help="tag every added image (repeatable)")
    ingest.add_argument("--batch-size", type=_whole_number(1, MAX_BATCH_SIZE), default=32,
                        help=f"images per model call, 1-{MAX_BATCH_SIZE} (default 32)")
    ingest.add_argument("--workers", type=_whole_number(1, MAX_WORKERS), default=2,
                        help=f"decoding threads, 1-{MAX_WORKERS} (default 2)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.add_argument("--describe", action="store_true",
                        help="then caption the added images with Gemini (RAGKIT_CAPTION_MODEL; needs GEMINI_API_KEY)")
    ingest.add_argument("--concurrency", type=_whole_number(1, 16), default=4, metavar="C",
                        help="with --describe: requests at a time, 1-16 (default 4)")
    ingest.set_defaults(handler=cmd_ingest)

    search = commands.add_parser("search", help="find images by text, by an example image, or similar to an asset")
    search.add_argument("text", nargs="?", help="what you are looking for")
    search.add_argument("--image", metavar="FILE", help="search by an example image (with TEXT: like it, moved by the words)")
    search.add_argument("--similar", metavar="SHA256", help="images similar to an asset (with TEXT: moved by the words)")
    search.add_argument("--text-weight", type=_fraction, default=0.5, metavar="W",
                        help="with --image/--similar and TEXT: 0 = the picture only .. 1 = the words only (default 0.5)")
    search.add_argument("--not", dest="not_text", default="", metavar="TEXT",
                        help="with --image/--similar: move away from this (e.g. 'people')")
    search.add_argument("--no-keywords", action="store_true",
                        help="TEXT by what pictures show only (CLIP), not also by words in names, tags and briefs")
    search.add_argument("-k", type=_whole_number(1, MAX_HITS), default=6,
                        help=f"number of hits, 1-{MAX_HITS} (default 6)")
    _add_filter_flags(search)
    search.add_argument("--min-score", type=float, default=None, help="drop hits below this cosine similarity")
    search.add_argument("--usable", action="store_true",
                        help="only assets within their usage rights today (leaves out those past their "
                             "usable-until date; see `rights`)")
    search.set_defaults(handler=cmd_search)

    stats = commands.add_parser("stats", help="library size, model and database")
    stats.set_defaults(handler=cmd_stats)

    delete = commands.add_parser(
        "delete", help="move assets to the trash (restorable; `trash empty` deletes for good)",
        description="Move assets to the trash: out of the library, search and export, restorable as they were "
                    "with `trash restore` until `trash empty` or RAGKIT_TRASH_DAYS delete them for good. "
                    "(A library made by an older ragkit has no trash until `upgrade`: there this deletes for good.)")
    delete.add_argument("sha256", nargs="+", metavar="SHA256")
    delete.set_defaults(handler=cmd_delete)

    tag = commands.add_parser("tag", help="add or remove tags of one or many assets")
    tag.add_argument("sha256", nargs="+", metavar="SHA256")
    tag.add_argument("--add", action="append", default=[], metavar="TAG", help="a tag to add (repeatable)")
    tag.add_argument("--remove", action="append", default=[], metavar="TAG", help="a tag to remove (repeatable)")
    tag.set_defaults(handler=cmd_tag)

    rights = commands.add_parser(
        "rights", help="usage rights of assets: licence note, usable-until date, not as a reference",
        description="Set the usage rights of one or many assets; without options, show them. An asset past its "
                    "usable-until date (the whole day counts, UTC) is marked expired: left out of the Studio's "
                    "suggestions, batch products and `search --usable`.")
    rights.add_argument("sha256", nargs="+", metavar="SHA256")
    until = rights.add_mutually_exclusive_group()
    until.add_argument("--until", metavar="YYYY-MM-DD", help="the last day the assets may be used")
    until.add_argument("--no-until", action="store_true", help="remove the usable-until date")
    rights.add_argument("--note", metavar="TEXT", help="licence or usage note ('' removes it)")
    reference = rights.add_mutually_exclusive_group()
    reference.add_argument("--no-reference", action="store_true", help="do not use them as references")
    reference.add_argument("--allow-reference", action="store_true", help="they may be used as references again")
    rights.set_defaults(handler=cmd_rights)

    trash = commands.add_parser(
        "trash", help="list the trash; `trash restore SHA...`; `trash empty [SHA...]` deletes for good",
        description="Deleted assets wait in the trash for RAGKIT_TRASH_DAYS days (default 30), then they are "
                    "deleted for good when the app or a command next opens the library.")
    trash.set_defaults(handler=cmd_trash, sha256=[])
    trash_actions = trash.add_subparsers(dest="action", metavar="ACTION")
    trash_restore = trash_actions.add_parser("restore", help="bring assets back from the trash, as they were")
    trash_restore.add_argument("sha256", nargs="+", metavar="SHA256")
    trash_empty = trash_actions.add_parser("empty", help="delete for good everything in the trash, or these assets")
    trash_empty.add_argument("sha256", nargs="*", metavar="SHA256")

    doctor = commands.add_parser("doctor", help="check that database rows and files agree (and --repair)")
    doctor.add_argument("--repair", action="store_true",
                        help="fix what it finds: adopt orphan files, drop rows whose original is gone, "
                             "rebuild missing thumbnails, remove unfinished writes")
    doctor.set_defaults(handler=cmd_doctor)

    export = commands.add_parser("export", help="write originals + metadata.json to a zip you can take away")
    export.add_argument("--out", required=True, metavar="FILE.zip")
    _add_filter_flags(export)
    export.set_defaults(handler=cmd_export)

    import_ = commands.add_parser("import", help="bring back an export (tags and provenance included)")
    import_.add_argument("archive", metavar="FILE.zip")
    import_.set_defaults(handler=cmd_import)

    generate = commands.add_parser("generate", help="Nano Banana: brief + reference assets -> new images")
    generate.add_argument("brief", help="what to make, e.g. 'a model wearing these on the beach'")
    generate.add_argument("--ref", action="append", default=[], metavar="SHA256",
                          help="a library asset to use as reference (repeatable)")
    generate.add_argument("--model", default=None,
                          help="an image model id (default RAGKIT_GEMINI_MODEL); `python -m ragkit models` lists them")
    generate.add_argument("--aspect", default=None, help="aspect ratio, e.g. 1:1, 16:9, 9:16")
    generate.add_argument("--size", default=None, metavar="SIZE", help=SIZE_HELP)
    generate.add_argument("-n", type=int, default=1, choices=range(1, 9), metavar="N",
                          help="number of variations, 1-8 (requested concurrently)")
    generate.add_argument("--save", action="store_true", help="also save the images into the library")
    generate.add_argument("--tag", action="append", default=[], help="tags for saved images (repeatable)")
    generate.add_argument("--out", default="out", metavar="DIR", help="where image files are written (default out/)")
    generate.add_argument("--edit", default=None, metavar="SHA256",
                          help="edit this library asset instead: BRIEF is the change ('make the background blue'); "
                               "the new version is saved with its parent in its provenance")
    generate.set_defaults(handler=cmd_generate)

    brand_kit = commands.add_parser("brand-kit", help="brand kits: a style, references and words to avoid for "
                                                      "every brief that uses them")
    kit_actions = brand_kit.add_subparsers(dest="action", required=True, metavar="ACTION")
    kit_set = kit_actions.add_parser("set", help="create a kit, or change the options given (a new version)")
    kit_set.add_argument("name", metavar="NAME")
    kit_set.add_argument("--style", default=None, metavar="TEXT", help="added to every brief, e.g. 'pastel, flat light'")
    kit_set.add_argument("--ref", action="append", default=[], metavar="SHA256",
                         help="a reference sent with every request: logo, palette, mascot (repeatable; replaces the kit's)")
    kit_set.add_argument("--no-refs", action="store_true", help="remove the kit's references")
    kit_set.add_argument("--avoid", action="append", default=None, metavar="TEXT",
                         help="words or phrases the images must not show (repeatable or comma-separated; '' clears)")
    kit_set.add_argument("--aspect", default=None, help="default aspect ratio, e.g. 4:5")
    kit_list = kit_actions.add_parser("list", help="the kits, and any reference that can't be used any more")
    kit_delete = kit_actions.add_parser("delete", help="remove a kit (images made with it keep its name)")
    kit_delete.add_argument("name", metavar="NAME")
    for sub in (kit_set, kit_list, kit_delete):
        sub.set_defaults(handler=cmd_brand_kit)
        sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    batch = commands.add_parser(
        "batch", help="one brief x many products: each product the first reference of its own requests",
        description="Make N variations for every product (an asset tagged --tag, or each --ref-each id): each "
                    "request carries its product first, then the --with-ref assets and the brand kit's references. "
                    "The job is kept in RAGKIT_DATA_DIR/jobs/: run the same command again (or --resume ID) after an "
                    "interruption and only the unfinished requests are sent. The images wait for review in the "
                    "Studio's Batch tab unless --approve saves them all to the library (tag batch-<job id>).")
    batch.add_argument("--brief", default=None, metavar="TEXT", help="what every product's picture should show")
    products = batch.add_mutually_exclusive_group()
    products.add_argument("--tag", default=None, help="the products: every usable asset with this tag")
    products.add_argument("--ref-each", nargs="+", default=[], metavar="SHA256", help="the products, by id")
    products.add_argument("--resume", default=None, metavar="ID", help="finish the job with this id")
    batch.add_argument("--with-ref", action="append", default=[], metavar="SHA256",
                       help="a reference added to every request, after the product (repeatable)")
    batch.add_argument("--brand-kit", default=None, metavar="NAME", help="add this kit's style, references and words to avoid")
    batch.add_argument("-n", type=_whole_number(1, 8), default=1, metavar="N", help="variations per product, 1-8 (default 1)")
    batch.add_argument("--model", default=None,
                       help="an image model id (default RAGKIT_GEMINI_MODEL); `python -m ragkit models` lists them")
    batch.add_argument("--aspect", default=None, help="aspect ratio, e.g. 1:1, 4:5, 9:16 (default: the kit's, or auto)")
    batch.add_argument("--size", default=None, metavar="SIZE", help=SIZE_HELP)
    batch.add_argument("--concurrency", type=_whole_number(1, 16), default=4, metavar="C",
                       help="requests at a time, 1-16 (default 4)")
    batch.add_argument("--approve", action="store_true", help="save every image to the library (no review)")
    batch.add_argument("--retry-failed", action="store_true", help="send the requests that failed again, too")
    batch.add_argument("--new", action="store_true", help="a new job even if these parameters made one before")
    batch.add_argument("--half-price", action="store_true",
                       help="through Gemini's Batch API at half the price, results within a day (the command waits; "
                            "stop it any time: --resume ID polls the same batch later)")
    products.add_argument("--cancel", default=None, metavar="ID", help="cancel the half-price batch of this job")
    batch.set_defaults(handler=cmd_batch)

    models_cmd.register(commands)

    describe = commands.add_parser(
        "describe", help="captions and suggested tags from Gemini (RAGKIT_CAPTION_MODEL) for images",
        description="Ask a Gemini text model for a one-sentence caption and up to 8 suggested tags per image. "
                    "The caption is stored on the image and found by words in searches; suggested tags wait in "
                    "the image's details until someone accepts them. --all and --tag describe the images without "
                    "a caption (not those that failed before, unless --retry-failed); run the same command again "
                    "after an interruption and only the rest is sent. Costs go to the ledger (`stats`).")
    which = describe.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every image without a caption")
    which.add_argument("--tag", default=None, help="the images with this tag and without a caption")
    which.add_argument("sha256", nargs="*", default=[], metavar="SHA256", help="these images (described again if "
                       "they have a caption; a finished job of the same ids is not sent again unless --new)")
    describe.add_argument("--concurrency", type=_whole_number(1, 16), default=4, metavar="C",
                          help="requests at a time, 1-16 (default 4)")
    describe.add_argument("--retry-failed", action="store_true", help="send the images that failed before again, too")
    describe.add_argument("--new", action="store_true", help="with ids: describe them again even if a job did")
    describe.set_defaults(handler=cmd_describe)

    migrate = commands.add_parser(
        "migrate", help="copy the library (vectors included, no re-embedding) to a Milvus server",
        description="Copy every asset of the current model's collection to the Milvus at --to. Safe to run "
                    "again: it copies only what is missing, so an interrupted run is completed by the next. "
                    "The embedded file is left as it is; image files stay in RAGKIT_DATA_DIR.")
    migrate.add_argument("--to", required=True, metavar="URI", help="the target, e.g. http://milvus.lan:19530")
    migrate.add_argument("--batch-size", type=_whole_number(1, MAX_COPY_BATCH), default=256, metavar="N",
                         help=f"assets per copy step, 1-{MAX_COPY_BATCH} (default 256)")
    migrate.add_argument("--token", default="", metavar="TOKEN",
                         help="user:password or API key of the target (or write user:password@ into the URI)")
    migrate.set_defaults(handler=cmd_migrate)

    upgrade = commands.add_parser(
        "upgrade", help="bring a library made by an older ragkit to the current format (no re-embedding)",
        description="Copy the library's rows and vectors into a collection of the current schema, which adds "
                    "the trash, usage rights, captions and keyword search. Safe to interrupt: the library keeps "
                    "using the old collection until the copy is complete, and the next run completes it.")
    upgrade.add_argument("--drop-old", action="store_true", help="then drop the old collection")
    upgrade.add_argument("--batch-size", type=_whole_number(1, MAX_COPY_BATCH), default=256, metavar="N",
                         help="assets per copy step (default 256)")
    upgrade.set_defaults(handler=cmd_upgrade)

    reindex = commands.add_parser(
        "reindex", help="embed every image again with another CLIP model, then switch the library to it",
        description="Embed every original again with --model/--pretrained into that model's own index, while the "
                    "current one keeps serving search; once complete and verified the library switches to it "
                    "(recorded in RAGKIT_DATA_DIR/model.json: every process follows). Safe to interrupt: the next "
                    "run resumes. The old index stays until --drop-old.")
    reindex.add_argument("--model", default="", metavar="ARCH", help="open_clip architecture, e.g. ViT-B-16")
    reindex.add_argument("--pretrained", default="", metavar="TAG_OR_PATH",
                         help="an open_clip pretrained tag, a checkpoint file, or none (random weights)")
    reindex.add_argument("--drop-old", action="store_true",
                         help="then drop the other models' indexes (alone: drop them now)")
    reindex.add_argument("--batch-size", type=_whole_number(1, MAX_BATCH_SIZE), default=32,
                         help=f"images per model call, 1-{MAX_BATCH_SIZE} (default 32)")
    reindex.add_argument("--workers", type=_whole_number(1, MAX_WORKERS), default=2,
                         help=f"decoding threads, 1-{MAX_WORKERS} (default 2)")
    reindex.set_defaults(handler=cmd_reindex)


    from ragkit.search.duplicates import DEFAULT_CANDIDATES, DEFAULT_THRESHOLD
    duplicates = commands.add_parser(
        "duplicates", help="groups of near-duplicate assets (resized, re-encoded, cropped, rotated copies)",
        description="List groups of assets whose CLIP vectors have a cosine similarity >= THRESHOLD, "
                    "linked transitively (a copy of a copy joins the group). Each group names the copy "
                    "to keep by default (most pixels, then biggest file). Nothing is deleted.")
    duplicates.add_argument("--threshold", type=_threshold_arg, default=DEFAULT_THRESHOLD, metavar="T",
                            help="cosine similarity, above 0 and at most 1 (default %(default)s)")
    duplicates.add_argument("--candidates", type=_candidates_arg, default=DEFAULT_CANDIDATES, metavar="K",
                            help="neighbours compared per asset, 1-256 (default %(default)s); bigger groups "
                                 "still join up through their members")
    duplicates.set_defaults(handler=cmd_duplicates)

    for sub in (ingest, search, stats, delete, tag, rights, trash, trash_restore, trash_empty, doctor, export,
                import_, generate, batch, describe, migrate, upgrade, duplicates, reindex):
        sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A file name that is not UTF-8 must not crash the output (strict locales) or break the JSON
    # (C locales write the raw byte): \udcff is printed as that escape, which JSON reads back as is.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "search":
        examples = bool(args.image) + bool(args.similar)
        if examples > 1 or not (examples or args.text):
            parser.error("search takes TEXT, --image FILE or --similar SHA256 (TEXT may go with one of the other two)")
        if args.not_text and not examples:
            parser.error("--not goes with --image or --similar (words alone can't be 'not' something)")
    if args.command == "reindex":
        if bool(args.model) != bool(args.pretrained):
            parser.error("reindex: give --model ARCH and --pretrained TAG_OR_PATH together")
        if not args.model and not args.drop_old:
            parser.error("reindex: give --model ARCH --pretrained TAG_OR_PATH (or --drop-old alone)")
    debug = os.environ.get("RAGKIT_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from ragkit.storage.connection import quiet_milvus_logging
    if not debug:
        quiet_milvus_logging()
        # open_clip and huggingface_hub log through their own and the root logger; the CLI
        # reports every failure itself, once, as one line.
        logging.getLogger().setLevel(logging.CRITICAL)
        logging.getLogger("huggingface_hub").setLevel(logging.CRITICAL)
    settings = None
    typed_secrets = [getattr(args, "token", "")]  # a --token on the command line is a secret too
    try:
        settings = Settings.load()
        return args.handler(args, settings)
    except RagkitError as exc:
        _err(f"error: {user_message(exc, settings, extra_secrets=typed_secrets)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _err("interrupted: what was finished is saved; run the same command again to complete it")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if debug:
            raise
        # No server log behind the CLI: the line itself says what failed (detail), secrets masked.
        _err(f"error: {user_message(exc, settings, extra_secrets=typed_secrets, detail=True)} "
             "Set RAGKIT_DEBUG=1 for details.")
        return EXIT_FAILURE
