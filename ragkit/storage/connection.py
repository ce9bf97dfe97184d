"""Opening and closing a Milvus client, with the failures turned into messages that name the fix.

One URI, two engines: a path ending in ``.db`` is a Milvus Lite file run in this process
(ragkit.storage.milvus_lite), anything with a scheme (``http://host:19530``) is a Milvus server or
cluster, or Zilliz Cloud. ragkit.config.is_embedded_uri decides which.
"""
from __future__ import annotations

import logging
import os

from ragkit.storage import milvus_lite
from ragkit.config import is_embedded_uri, redact_uri
from ragkit.errors import StoreAuthError, StoreError

# gRPC's C core prints keepalive chatter ("GOAWAY ... too_many_pings") straight to stderr,
# past Python logging; this must be set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def quiet_milvus_logging() -> None:
    """pymilvus logs full tracebacks even for errors we handle; users should see our message only."""
    for name in ("pymilvus", "milvus_lite", "grpc", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def connect(uri: str, token: str = ""):
    """A MilvusClient for `uri` (close it with disconnect()). Raises StoreLockedError (a Lite file
    open in another process), StoreAuthError (credentials refused) or StoreError (unreachable)."""
    from pymilvus import MilvusClient  # importing pymilvus resets its logger: quiet it afterwards
    quiet_milvus_logging()
    embedded = is_embedded_uri(uri)
    try:
        if embedded:
            return milvus_lite.open_client(uri)
        # A dedicated channel, closed with the client: pymilvus keeps shared ones in a registry after
        # their last client closes, and their idle keepalive pings make `milvus-lite server` answer
        # the next client with GOAWAY "Too many pings".
        return MilvusClient(uri=uri, token=token, dedicated=True) if token else MilvusClient(uri=uri, dedicated=True)
    except Exception as exc:  # noqa: BLE001 - pymilvus raises many types; we translate them all
        if embedded and (read_only := milvus_lite.read_only_reason(uri)):
            raise milvus_lite.read_only_error(uri, read_only) from None
        if embedded and milvus_lite.is_locked_error(str(exc)):
            raise milvus_lite.locked_error(uri) from None
        raise _connect_error(exc, uri, token) from None


def disconnect(client, uri: str) -> None:
    """Close a client from connect() (once); for a Lite file the last one frees the file."""
    if is_embedded_uri(uri):
        milvus_lite.close_client(client, uri)
        return
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing after a server went away is harmless
        pass


def _connect_error(exc: Exception, uri: str, token: str) -> StoreError:
    where = redact_uri(uri)
    status = _grpc_status(exc)
    if status == "UNAUTHENTICATED":
        given = "RAGKIT_MILVUS_TOKEN" if token else ("the user:password in RAGKIT_MILVUS_URI"
                                                      if "@" in uri.split("//", 1)[-1].split("/", 1)[0] else "")
        if given:
            return StoreAuthError(f"Milvus at {where} refused the credentials in {given} (wrong user, password "
                                  "or API key). Set RAGKIT_MILVUS_TOKEN=user:password (or an API key) to "
                                  "an account of that server.")
        return StoreAuthError(f"Milvus at {where} requires credentials. Set RAGKIT_MILVUS_TOKEN=user:password "
                              "(or an API key), or write user:password@ into RAGKIT_MILVUS_URI.")
    if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return StoreError(f"Cannot reach Milvus at {where}: no server answers there. Is it running? "
                          "Check RAGKIT_MILVUS_URI.")
    return StoreError(f"Cannot connect to Milvus at {where}: {short(str(exc))}. "
                      "Check RAGKIT_MILVUS_URI (and RAGKIT_MILVUS_TOKEN for a server).")


def _grpc_status(exc: BaseException) -> str:
    """The gRPC status name behind a pymilvus error ('' if none): pymilvus' own message says
    'illegal connection params or server unavailable' for both a wrong password and no server."""
    seen = 0
    while exc is not None and seen < 5:
        code = getattr(exc, "code", None)
        if callable(code):
            try:
                return getattr(code(), "name", "") or ""
            except Exception:  # noqa: BLE001 - pymilvus' own code() is an int property elsewhere
                pass
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return ""


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
