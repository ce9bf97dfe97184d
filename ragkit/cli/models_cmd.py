"""`python -m ragkit models`: which Gemini models the key can use, the defaults, and which configured ids are gone."""
from __future__ import annotations

import json
import sys

from ragkit.config import DEFAULT_CAPTION_MODEL, Settings
from ragkit.text import printable

EXIT_OK, EXIT_GONE = 0, 1


def register(subparsers) -> None:
    models = subparsers.add_parser(
        "models", help="the Gemini models this key can use, the defaults, and configured ids that are gone",
        description="Asks Gemini (ListModels) which image and text models the key can use, and shows each "
                    "known one's limits and price per image by size. Without a network it shows ragkit's known "
                    "table and says so. Exits 1 when RAGKIT_GEMINI_MODEL or RAGKIT_CAPTION_MODEL names a model "
                    "that is no longer offered.")
    models.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    models.add_argument("--refresh", action="store_true", help="ask again now instead of using the last hour's answer")
    models.set_defaults(handler=cmd_models)


def describe_models(settings: Settings, *, refresh: bool = False) -> dict:
    """What `models` shows, as data (also what --json prints)."""
    from ragkit.studio.cost import prices_for
    from ragkit.studio.discovery import configured_models, discover
    from ragkit.studio.models import DEFAULT_MODEL, MODELS_READ_ON, MODELS_SOURCES, model_info, text_model_info
    catalogue = discover(settings, refresh=refresh)
    prices = prices_for(settings)

    def image_entry(mid: str) -> dict:
        info = model_info(mid)
        return {"id": mid, "label": info.label, "known": info.known, "status": info.status,
                "replacement": info.replacement or None, "max_references": info.max_references,
                "aspect_ratios": list(info.aspect_ratios), "sizes": list(info.sizes),
                "price_per_image": {size: prices.estimate(mid, 0, 1, size) for size in info.sizes},
                "prices_confirmed": info.prices_confirmed}

    def text_entry(mid: str) -> dict:
        info = text_model_info(mid)
        price = prices.price(mid)
        return {"id": mid, "label": info.label, "known": info.known,
                "price_per_1m": None if price is None else {"input": price.input, "output": price.output_text},
                "prices_confirmed": info.prices_confirmed}

    return {"live": catalogue.live, "note": catalogue.note, "table_read_on": MODELS_READ_ON,
            "sources": list(MODELS_SOURCES),
            "defaults": {"image": DEFAULT_MODEL, "caption": DEFAULT_CAPTION_MODEL},
            "configured": [{"setting": c.setting, "model": c.model, "gone": c.gone, "message": c.message or None,
                            "switch_to": c.switch_to} for c in configured_models(settings, catalogue)],
            "image_models": [image_entry(m) for m in catalogue.image],
            "text_models": [text_entry(m) for m in catalogue.text]}


def cmd_models(args, settings: Settings) -> int:
    from ragkit.studio.cost import format_usd
    report = describe_models(settings, refresh=args.refresh)
    gone = [c for c in report["configured"] if c["gone"]]
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        out = lambda text="": print(printable(text))  # noqa: E731
        if not report["live"]:
            print(printable(f"note: {report['note']}"), file=sys.stderr)
        out(f"Image models {'this key can use' if report['live'] else 'ragkit knows'}:")
        for m in report["image_models"]:
            sizes = ", ".join(f"{size} {format_usd(cost)}" for size, cost in m["price_per_image"].items())
            flags = "" if m["known"] else "  (new to ragkit: conservative limits, price unknown)"
            if m["status"] != "current":
                flags += f"  ({m['status']}; Google says use {m['replacement']})"
            out(f"  {m['id']:<30} {m['label']}, up to {m['max_references']} references; "
                f"per image: {sizes}{flags}")
        out("Text models (captions):")
        for m in report["text_models"]:
            price = m["price_per_1m"]
            cost = (f"${price['input']:g} in / ${price['output']:g} out per 1M tokens" if price else "price unknown")
            out(f"  {m['id']:<30} {cost}")
        out(f"Defaults: image {report['defaults']['image']}, captions {report['defaults']['caption']}.")
        for c in report["configured"]:
            out(f"{c['setting']}={c['model']}: {'GONE' if c['gone'] else 'ok'}")
        out(f"Limits and prices: ragkit's table, read {report['table_read_on']} from Google's pages "
            "(README › Models); prices marked unconfirmed there are estimates.")
    for c in gone:
        print(printable(f"error: {c['message']}"), file=sys.stderr)
    return EXIT_GONE if gone else EXIT_OK
