"""Settings: one frozen object, read from the environment and `.streamlit/secrets.toml`.

Every setting is an environment variable (``RAGKIT_*``, ``GEMINI_API_KEY``). The same
names may be written as top-level keys in ``.streamlit/secrets.toml`` (in the working
directory, then ``~/.streamlit/secrets.toml``); the environment wins over the file so
that a deployment can override a checked-in default without editing it.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ragkit.errors import ConfigError

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_GEMINI_MODEL = "gemini-nano-banana-2.1"  # see ragkit/studio/models.py for the source
DEFAULT_CAPTION_MODEL = "gemini-3.5-flash-lite"

# (setting name, environment variable, default, meaning): the README table lists each (tests/test_config.py).
SETTINGS_TABLE: tuple[tuple[str, str, str, str], ...] = (
    ("data_dir", "RAGKIT_DATA_DIR", "./data", "where originals, thumbnails and the embedded DB live"),
    ("milvus_uri", "RAGKIT_MILVUS_URI", "$RAGKIT_DATA_DIR/ragkit.db", "Milvus Lite file, or http://host:19530 for a server"),
    ("milvus_token", "RAGKIT_MILVUS_TOKEN", "", "user:password or API key for a Milvus server"),
    ("clip_model", "RAGKIT_CLIP_MODEL", DEFAULT_CLIP_MODEL, "open_clip architecture name"),
    ("clip_pretrained", "RAGKIT_CLIP_PRETRAINED", DEFAULT_CLIP_PRETRAINED, "open_clip pretrained tag, path to a checkpoint, or none"),
    ("device", "RAGKIT_DEVICE", "auto", "auto, cpu, cuda or mps"),
    ("gemini_api_key", "GEMINI_API_KEY", "", "Gemini API key (GOOGLE_API_KEY also works)"),
    ("gemini_model", "RAGKIT_GEMINI_MODEL", DEFAULT_GEMINI_MODEL, "default image model for the Studio"),
    ("caption_model", "RAGKIT_CAPTION_MODEL", DEFAULT_CAPTION_MODEL, "Gemini text model that describes images (Describe: caption and suggested tags)"),
    ("gemini_base_url", "RAGKIT_GEMINI_BASE_URL", "", "override the Gemini API endpoint (proxies, tests)"),
    ("prices", "RAGKIT_PRICES", "", "Studio prices per model (JSON or a JSON file's path) over the defaults from Google's price list"),
    ("max_image_pixels", "RAGKIT_MAX_IMAGE_PIXELS", "150000000", "larger images are rejected as decompression bombs"),
    ("require_login", "RAGKIT_REQUIRE_LOGIN", "false", "true: visitors must sign in (Streamlit OIDC, [auth] in secrets.toml)"),
    ("allowed_emails", "RAGKIT_ALLOWED_EMAILS", "", "with login: comma-separated emails or @domain.com suffixes allowed in"),
    ("trash_days", "RAGKIT_TRASH_DAYS", "30", "days an asset stays in the trash before it is deleted for good"),
)
MAX_TRASH_DAYS = 36500  # a century: "keep it forever" without an overflow in the cutoff

_SECRET_FIELDS = {"milvus_token", "gemini_api_key"}


def _secrets_files(cwd: Path) -> list[Path]:
    return [cwd / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml"]


def read_secrets_file(paths: list[Path]) -> dict[str, str]:
    """Merge top-level string keys of the given TOML files; earlier files win."""
    merged: dict[str, str] = {}
    for path in reversed(paths):
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"Cannot read {path}: {exc}. Fix the TOML syntax or remove the file.") from None
        merged.update({k: str(v) for k, v in data.items() if isinstance(v, (str, int, float))})
    return merged


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    milvus_uri: str = ""
    milvus_token: str = field(default="", repr=False)
    clip_model: str = DEFAULT_CLIP_MODEL
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    device: str = "auto"
    gemini_api_key: str = field(default="", repr=False)
    gemini_model: str = DEFAULT_GEMINI_MODEL
    caption_model: str = DEFAULT_CAPTION_MODEL
    gemini_base_url: str = ""
    prices: str = ""  # RAGKIT_PRICES, read by ragkit.studio.cost when a price is needed
    max_image_pixels: int = 150_000_000
    require_login: bool = False
    allowed_emails: tuple[str, ...] = ()
    trash_days: int = 30

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, cwd: Path | None = None,
             secrets_files: list[Path] | None = None) -> "Settings":
        env = os.environ if env is None else env
        cwd = Path.cwd() if cwd is None else cwd
        secrets = read_secrets_file(secrets_files if secrets_files is not None else _secrets_files(cwd))

        def get(name: str, default: str = "") -> str:
            value = env.get(name)
            if value is None or value == "":
                value = secrets.get(name, default)
            return value.strip()

        data_dir = Path(get("RAGKIT_DATA_DIR", "data")).expanduser()
        if not data_dir.is_absolute():
            data_dir = cwd / data_dir
        milvus_uri = get("RAGKIT_MILVUS_URI") or str(data_dir / "ragkit.db")
        if is_embedded_uri(milvus_uri) and not milvus_uri.endswith(".db"):
            raise ConfigError(f"RAGKIT_MILVUS_URI={redact_uri(milvus_uri)!r} is neither a server "
                              "(http://host:19530) nor a Milvus Lite file (a path ending in .db).")
        device = get("RAGKIT_DEVICE", "auto").lower()
        if device not in {"auto", "cpu", "cuda", "mps"} and not device.startswith("cuda:"):
            raise ConfigError(f"RAGKIT_DEVICE={device!r} is not one of auto, cpu, cuda, mps.")
        try:
            max_pixels = int(get("RAGKIT_MAX_IMAGE_PIXELS", "150000000"))
        except ValueError:
            raise ConfigError("RAGKIT_MAX_IMAGE_PIXELS must be a whole number of pixels.") from None
        trash_days = _trash_days(get("RAGKIT_TRASH_DAYS", "30"))
        return cls(
            data_dir=data_dir,
            milvus_uri=milvus_uri,
            milvus_token=get("RAGKIT_MILVUS_TOKEN"),
            clip_model=get("RAGKIT_CLIP_MODEL", DEFAULT_CLIP_MODEL),
            clip_pretrained=get("RAGKIT_CLIP_PRETRAINED", DEFAULT_CLIP_PRETRAINED),
            device=device,
            gemini_api_key=get("GEMINI_API_KEY") or get("GOOGLE_API_KEY"),
            gemini_model=get("RAGKIT_GEMINI_MODEL", DEFAULT_GEMINI_MODEL),
            caption_model=get("RAGKIT_CAPTION_MODEL", DEFAULT_CAPTION_MODEL),
            gemini_base_url=get("RAGKIT_GEMINI_BASE_URL"),
            prices=get("RAGKIT_PRICES"),
            max_image_pixels=max_pixels,
            require_login=_truthy(get("RAGKIT_REQUIRE_LOGIN", "false"), "RAGKIT_REQUIRE_LOGIN"),
            allowed_emails=tuple(e.strip().lower() for e in get("RAGKIT_ALLOWED_EMAILS").split(",") if e.strip()),
            trash_days=trash_days,
        )

    @property
    def is_embedded_db(self) -> bool:
        """True for a Milvus Lite file, False for a server URI."""
        return is_embedded_uri(self.milvus_uri)

    @property
    def milvus_uri_display(self) -> str:
        """The DB URI with any credentials removed, safe to show on a page or in logs."""
        return redact_uri(self.milvus_uri)

    def email_allowed(self, email: str | None) -> bool:
        """With an allow-list, only listed emails or @domain suffixes get in; without one, anyone
        the identity provider signs in (configure the provider to restrict, or set the list)."""
        if not self.allowed_emails:
            return True
        address = (email or "").strip().lower()
        return bool(address) and any(address == rule or (rule.startswith("@") and address.endswith(rule))
                                     for rule in self.allowed_emails)

    def secret_values(self) -> list[str]:
        """Values that must never be shown (used to scrub messages)."""
        values = [getattr(self, f.name) for f in fields(self) if f.name in _SECRET_FIELDS and getattr(self, f.name)]
        return values + uri_secrets(self.milvus_uri) + uri_secrets(self.gemini_base_url)

    def scrub(self, text: str, extra_secrets: Iterable[str] = ()) -> str:
        """`text` with every secret of these settings, and `extra_secrets`, replaced by ***."""
        return mask_secrets(text, [*self.secret_values(), *extra_secrets])


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by ***: the one masking rule, for messages shown or logged."""
    # Longest first, so a token is masked whole before any part of it ("root:pw" before "pw").
    for secret in sorted({secret for secret in secrets if secret}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def is_embedded_uri(uri: str) -> bool:
    """The one rule for which engine a URI means: a path is a Milvus Lite file run in this process
    (pymilvus wants it to end in .db); scheme://… is a Milvus server, cluster or Zilliz Cloud."""
    return "://" not in uri and not uri.startswith("unix:")


def _trash_days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = -1
    if not 1 <= days <= MAX_TRASH_DAYS:
        raise ConfigError(f"RAGKIT_TRASH_DAYS={value[:40]!r}: use a whole number of days from 1 to {MAX_TRASH_DAYS} "
                          "(how long a deleted image can still be restored).")
    return days


def _truthy(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: use true or false.")


# Query parameters of a DB or API URI that may be shown as they are; every other value is masked,
# since clients accept credentials there too (``?token=…``, ``?password=…``, ``?key=…``).
_SAFE_QUERY_KEYS = {"db_name", "database", "timeout", "secure"}


def redact_uri(uri: str) -> str:
    """A URL without its secrets: no ``user:password@`` and no query values that may be credentials.
    Plain paths are returned unchanged."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "&".join(f"{key}={value if key.lower() in _SAFE_QUERY_KEYS else '***'}"
                     for key, value in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def uri_secrets(uri: str) -> list[str]:
    """Credentials written into a URI (its password, masked query values), to scrub from messages."""
    if "://" not in uri:
        return []
    parts = urlsplit(uri)
    found = [f"{parts.username}:{parts.password}", parts.password] if parts.password else []
    found += [value for key, value in parse_qsl(parts.query) if key.lower() not in _SAFE_QUERY_KEYS]
    return [value for value in found if len(value) >= 3]
