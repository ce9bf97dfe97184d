"""Model pickers that show what the key can use today (ragkit.studio.discovery), and the one line plus the
one-click switch for a model that is gone. Shared by the Studio, its Batch tab and the captions panel."""
from __future__ import annotations

import streamlit as st

from ragkit.config import Settings
from ragkit.studio.cost import format_usd, prices_for
from ragkit.studio.discovery import Catalogue, discover, gone_message, replacement_for
from ragkit.studio.models import (RETIRED, SIZE_LABELS, bare_id, default_model, model_info, model_options,
                                  models_help, text_model_info)
from ragkit.ui.markdown import md_escape

K_CAPTION_MODEL = "captions.model"  # a caption model switched to in place of a gone one (this session)


def catalogue(settings: Settings) -> Catalogue:
    """The key's models: asked at most about once an hour per process (not on every rerun)."""
    return discover(settings)


def is_gone(model: str, catalogue: Catalogue, kind: str = "image") -> bool:
    mid = bare_id(model)
    return (not catalogue.offers(mid, kind)) if catalogue.live else mid in RETIRED


def label(model: str) -> str:
    """The picker's text: the known label, or the id with "price unknown" for a model new to ragkit."""
    info = model_info(model)
    return info.label if info.known else f"{info.id} (new: price unknown)"


def image_picker(settings: Settings, key: str, *, width: int = 220, persist: bool = False) -> str:
    """The image model selectbox: the live models (the configured one too, if it is gone, so the page can
    say so), then, for a gone pick, one clear line and a button that switches to the live replacement."""
    found = catalogue(settings)
    options = model_options(settings.gemini_model, list(found.image))
    if st.session_state.get(key) not in (None, *options):
        st.session_state.pop(key)  # a pick from an older list
    extra = {"persist_state": "session"} if persist else {}
    model = st.selectbox("Model", options, index=options.index(default_model(settings.gemini_model)),
                         format_func=label, key=key, width=width, help=models_help(), **extra)
    return model


def gone_notice(settings: Settings, model: str, key: str) -> bool:
    """If `model` is gone: the one line and a "Switch to …" button (sets the picker `key`); True if gone."""
    found = catalogue(settings)
    if not is_gone(model, found):
        if not found.live:
            st.caption(f":material/cloud_off: {md_escape(found.note)}")
        return False
    st.error(md_escape(gone_message(model, "image", found.image)), icon=":material/block:")
    switch = replacement_for(model, "image", found.image)
    if switch:
        st.button(f"Switch to {model_info(switch).label}", key=f"{key}.switch", icon=":material/swap_horiz:",
                  on_click=_set, args=(key, switch), type="primary")
    return True


def size_picker(model: str, key: str, *, width: int = 160) -> str | None:
    """The output sizes this model offers (one widget per model: a size of another model never lingers)."""
    info = model_info(model)
    if len(info.sizes) <= 1:
        return info.sizes[0] if info.sizes and info.known else None
    return st.selectbox("Size", list(info.sizes), index=list(info.sizes).index(info.default_size),
                        format_func=lambda s: SIZE_LABELS.get(s, s), key=f"{key}.{info.id}", width=width,
                        help="image_config.image_size: bigger costs more per image (see the estimate).")


def per_image_price(settings: Settings, model: str, references: int, size: str | None) -> str:
    """'about $0.067 an image' or 'price unknown'."""
    estimate = prices_for(settings).estimate(model, references, 1, size)
    return "price unknown" if estimate is None else f"about {format_usd(estimate)} an image"


def caption_model(settings: Settings) -> str:
    """The caption model to use: the one switched to this session, else RAGKIT_CAPTION_MODEL."""
    return st.session_state.get(K_CAPTION_MODEL) or bare_id(settings.caption_model)


def caption_gone_notice(settings: Settings) -> bool:
    """The same line and switch for the caption model (Describe); True while it is gone."""
    model = caption_model(settings)
    found = catalogue(settings)
    if not is_gone(model, found, "text"):
        return False
    st.error(md_escape(gone_message(model, "text", found.text, "RAGKIT_CAPTION_MODEL")), icon=":material/block:")
    switch = replacement_for(model, "text", found.text)
    if switch:
        st.button(f"Switch captions to {text_model_info(switch).label}", key="captions.switch-model",
                  icon=":material/swap_horiz:", on_click=_set, args=(K_CAPTION_MODEL, switch), type="primary")
    return True


def _set(key: str, value: str) -> None:
    st.session_state[key] = value
