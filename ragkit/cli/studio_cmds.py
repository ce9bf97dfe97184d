"""The Studio on the command line: generate, brand-kit, batch, describe (Gemini)."""
from __future__ import annotations

import json
from pathlib import Path

from ragkit.cli import common, models_cmd
from ragkit.cli.common import (EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, CountProgress, add_json_flag, err, out,
                               whole_number)
from ragkit.config import Settings
from ragkit.errors import InvalidInputError
from ragkit.text import printable

SIZE_HELP = "output size: 512, 1K, 2K or 4K, as the model offers (default: the model's, 1K)"


def register(commands) -> None:
    add_generate(commands)
    add_brand_kit(commands)
    add_batch(commands)
    models_cmd.register(commands)  # `models` comes between batch and describe in --help
    add_describe(commands)


def add_generate(commands) -> None:
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
    add_json_flag(generate)


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
        from ragkit.cli.edit import cmd_edit
        return cmd_edit(args, settings, common.open_library)
    generator = ImageGenerator.from_settings(settings)  # no key -> a clear error before anything loads
    _check_model(settings, args.model, args.aspect, args.size)
    library = common.open_library(settings)
    err(f"generating {args.n} image(s) with {args.model or settings.gemini_model} "
        f"from {len(args.ref)} reference(s)…")
    generation = generate_from(library, generator, args.brief, args.ref, model=args.model,
                               aspect_ratio=args.aspect, variations=args.n, size=args.size)
    for warning in generation.warnings:
        err(f"warning: {warning}")
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
        err(f"wrote {path}" + (f" (saved to library as {entry['sha256'][:12]})" if args.save else ""))
    if args.json:
        print(json.dumps({"images": images, "text": generation.text, "model": generation.model,
                          "size": generation.size, "usage": generation.usage, "seconds": round(generation.seconds, 2),
                          "warnings": generation.warnings}, ensure_ascii=False))
    elif generation.text:
        out(generation.text, keep_newlines=True)
    return EXIT_OK if not generation.warnings else EXIT_PARTIAL


def add_brand_kit(commands) -> None:
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
        add_json_flag(sub)


def cmd_brand_kit(args, settings: Settings) -> int:
    from ragkit.studio import kits
    store = kits.kit_store(settings)
    if args.action == "list":
        return _list_kits(args, store, common.open_library(settings))
    if args.action == "delete":
        damaged = store.damaged_file(args.name) if store.find(args.name) is None else None
        if not store.delete(args.name):
            raise kits.KitNotFoundError(f"No brand kit named {printable(args.name)!r}; "
                                        "`python -m ragkit brand-kit list` shows the kits.")
        err(f"deleted the damaged brand kit file {damaged.path.name}" if damaged else
            f"deleted brand kit {kits.clean_name(args.name)!r}; images made with it keep its name")
        return EXIT_OK
    library = common.open_library(settings)
    damaged = store.damaged_file(args.name)
    if damaged is not None and damaged.path == store.path_for(args.name):
        err(f"the kit's file {damaged.path.name} was damaged ({damaged.reason}): it is replaced")
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
    err(f"saved brand kit {saved.name!r}, version {saved.version}")
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
        err(f"damaged: {printable(entry.describe())}")
    if not listed and not damaged:
        err("no brand kits yet: `python -m ragkit brand-kit set NAME --style TEXT [--ref SHA]`")
    for kit, problems in listed:
        out(f"{kit.name}  (version {kit.version}, {len(kit.reference_ids)} reference(s), "
            f"aspect {kit.aspect or 'auto'})")
        if kit.style:
            out(f"    style: {kit.style[:100]}")
        if kit.avoid:
            out(f"    avoid: {', '.join(kit.avoid)}")
        for problem in problems:
            out(f"    can't be used: {problem}")
    return status


def add_batch(commands) -> None:
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
    batch.add_argument("-n", type=whole_number(1, 8), default=1, metavar="N", help="variations per product, 1-8 (default 1)")
    batch.add_argument("--model", default=None,
                       help="an image model id (default RAGKIT_GEMINI_MODEL); `python -m ragkit models` lists them")
    batch.add_argument("--aspect", default=None, help="aspect ratio, e.g. 1:1, 4:5, 9:16 (default: the kit's, or auto)")
    batch.add_argument("--size", default=None, metavar="SIZE", help=SIZE_HELP)
    batch.add_argument("--concurrency", type=whole_number(1, 16), default=4, metavar="C",
                       help="requests at a time, 1-16 (default 4)")
    batch.add_argument("--approve", action="store_true", help="save every image to the library (no review)")
    batch.add_argument("--retry-failed", action="store_true", help="send the requests that failed again, too")
    batch.add_argument("--new", action="store_true", help="a new job even if these parameters made one before")
    batch.add_argument("--half-price", action="store_true",
                       help="through Gemini's Batch API at half the price, results within a day (the command waits; "
                            "stop it any time: --resume ID polls the same batch later)")
    products.add_argument("--cancel", default=None, metavar="ID", help="cancel the half-price batch of this job")
    batch.set_defaults(handler=cmd_batch)
    add_json_flag(batch)


def cmd_batch(args, settings: Settings) -> int:
    from ragkit.studio import ImageGenerator, batch
    from ragkit.studio.cost import format_usd
    ImageGenerator.from_settings(settings).close()  # no key -> a clear error before anything loads
    if not args.resume:
        _check_model(settings, args.model, args.aspect, args.size)
    library = common.open_library(settings)
    store = batch.job_store(settings)
    if args.cancel:
        from ragkit.studio import half_price
        job = half_price.cancel(store, args.cancel, library)
        err(f"batch job {job.id}: the half-price batch was cancelled; --resume {job.id} --retry-failed sends it again")
        return EXIT_OK
    job = store.load(args.resume) if args.resume else store.create(_plan_batch(args, library, settings))
    for skipped in job.spec.skipped:
        err(f"skipped: {skipped['reference'][:12]}…: {skipped['reason']}")
    pending = job.counts()[batch.PENDING] + (job.counts()[batch.FAILED] if args.retry_failed else 0)
    err(f"batch job {job.id}: {len(job.spec.products)} product(s) x {job.spec.variations} with "
        f"{job.spec.model}; {pending} request(s) to send, "
        + ("as one half-price Gemini batch (results within a day; Ctrl-C is safe, --resume polls it again)"
           if job.spec.half_price else f"{args.concurrency} at a time"))
    progress = CountProgress("finished", unit="image")
    try:
        job = batch.run_batch(store, job.id, library, concurrency=args.concurrency, approve=args.approve,
                              retry_failed=args.retry_failed, on_progress=progress)
    finally:
        progress.close()
    report = batch.job_report(job)
    counts = job.counts()
    if job.error:
        err(f"error: {job.error}")
    for item in report["items"]:
        if item["reason"]:
            err(f"{item['status']}: {item['reference'][:12]}…: {item['reason']}")
    err(f"{counts[batch.DONE]} of {len(job.takes)} image(s) made, {counts[batch.FAILED]} failed, "
        f"{counts[batch.PENDING]} not sent; cost {format_usd(job.cost_usd)}. "
        + (f"Saved to the library with the tag {job.tag}." if args.approve else
           f"Review them in the Studio › Batch (job {job.id}), or run again with --approve to keep them all."))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    if counts[batch.DONE] == 0:
        return EXIT_FAILURE
    return EXIT_OK if counts[batch.DONE] == len(job.takes) and not job.spec.skipped else EXIT_PARTIAL


def _plan_batch(args, library, settings: Settings):
    from ragkit.studio import batch, kits
    if not args.brief:
        raise InvalidInputError("Give the brief with --brief TEXT (or --resume ID to finish a job).")
    kit = kits.kit_store(settings).get(args.brand_kit) if args.brand_kit else None
    return batch.plan_batch(library, args.brief, tag=args.tag, ref_each=args.ref_each, with_refs=args.with_ref,
                            kit=kit, variations=args.n, model=args.model, aspect=args.aspect, new=args.new,
                            half_price=args.half_price, size=args.size)


def add_describe(commands) -> None:
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
    describe.add_argument("--concurrency", type=whole_number(1, 16), default=4, metavar="C",
                          help="requests at a time, 1-16 (default 4)")
    describe.add_argument("--retry-failed", action="store_true", help="send the images that failed before again, too")
    describe.add_argument("--new", action="store_true", help="with ids: describe them again even if a job did")
    describe.set_defaults(handler=cmd_describe)
    add_json_flag(describe)


def cmd_describe(args, settings: Settings) -> int:
    from ragkit.studio import describe
    from ragkit.studio.captions import Captioner
    from ragkit.studio.cost import format_usd
    from ragkit.studio.models import bare_id
    Captioner.from_settings(settings).close()  # no key -> a clear error before anything loads
    library = common.open_library(settings)
    plan = describe.plan_describe(library, everything=args.all, tag=args.tag, ids=args.sha256,
                                  retry_failed=args.retry_failed, new=args.new)
    err(f"describing {plan.assets} image(s) with {bare_id(settings.caption_model)}, "
        f"{args.concurrency} at a time" + (f"; {len(plan.skipped)} skipped" if plan.skipped else ""))
    outcome = run_describe(library, plan, args.concurrency, args.retry_failed)
    for skipped in outcome.skipped:
        err(f"skipped: {skipped['sha256'][:12]}…: {skipped['reason']}")
    for item in outcome.items:
        if item.reason:
            err(f"{item.status}: {item.sha256[:12]}…: {item.reason}")
    counts = outcome.counts()
    if outcome.error:
        err(f"error: {outcome.error}")
    err(f"{counts[describe.DONE]} described, {counts[describe.FAILED]} failed, {counts[describe.PENDING]} not sent; "
        f"cost {format_usd(outcome.cost_usd)}. Suggested tags wait in each image's details until accepted.")
    if args.json:
        print(json.dumps(outcome.to_dict(), ensure_ascii=False))
    elif not args.all and not args.tag:
        for item in outcome.items:
            if item.caption:
                out(f"{item.sha256[:12]}  {item.caption}  [suggested: {', '.join(item.suggested_tags) or '-'}]")
    if plan.assets and counts[describe.DONE] == 0:
        return EXIT_FAILURE
    return EXIT_OK if counts[describe.DONE] == plan.assets and not outcome.skipped else EXIT_PARTIAL


def run_describe(library, plan, concurrency: int, retry_failed: bool = False):
    """Describe with a progress line; the outcome (ragkit.studio.describe.Outcome)."""
    from ragkit.studio import describe
    progress = CountProgress("described", unit="image")
    try:
        return describe.describe(library, plan, concurrency=concurrency, retry_failed=retry_failed,
                                 on_progress=progress)
    finally:
        progress.close()
