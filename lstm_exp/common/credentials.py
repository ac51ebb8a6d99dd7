"""Credentials in a URI (``http://user:secret@host``, ``postgresql://user:secret@host/db``) are used, never shown.

``mask`` replaces the password of every URI in a text with ``***``; every message, tag, param and file the tool
writes goes through it. ``split`` separates a URI's user and password from the rest, for a client (urllib's
health probe) that cannot take them inside the URI.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# scheme://user:password@ (the password is everything up to the last @ before the host), also as Hydra records an
# override, with its colons escaped: http\://user\:password@host
USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*\\?://)(?P<user>[^/@\s:\\]*)(?P<colon>\\?:)(?P<password>[^/\s]*)@"
)


def mask(text: str) -> str:
    """``text`` with the password of every URI in it replaced by ``***``."""
    return USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}{m['colon']}{MASK}@", text) if "//" in text else text


def masked(value):
    """A JSON-like value (dicts, lists, strings) with every string masked."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(masked(v) for v in value)
    return value


def is_masked(uri: str | None) -> bool:
    """Whether ``uri`` lost its password to ``mask`` (it was read back from a file the tool wrote)."""
    return bool(uri) and f":{MASK}@" in uri


def split(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user and password, the user, the password) of an http(s) URI."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, None, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username or ""), unquote(parts.password) if parts.password is not None else None
