"""Fail fast on a Hub id the Hugging Face Hub cannot serve.

``from_pretrained`` on a Hub id with the Hub unreachable retries with back-off (about a minute
with ``huggingface_hub`` 1.x/2.x) before its error. :func:`hub_kwargs` decides first, in at most
:data:`PROBE_TIMEOUT_S` seconds:

* a local path: nothing to decide (``{}``);
* ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set, or the Hub endpoint not accepting a TCP
  connection (one probe per endpoint and process): the id is loaded from the local cache
  (``{"local_files_only": True}``) when the cache holds it, else a one-line ``ConfigError``;
* otherwise ``{}`` (transformers downloads as usual).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import ConfigError

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}


def offline_by_env() -> str | None:
    """The environment variable that makes the Hub offline, or None."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def endpoint() -> str:
    """The Hub endpoint ``huggingface_hub`` uses (``HF_ENDPOINT`` or huggingface.co)."""
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


@functools.lru_cache(maxsize=8)
def _probe(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"


def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (offline variable, or a failed TCP connection to the
    endpoint or to the HTTPS proxy when one is set), or None when a connection opens."""
    var = offline_by_env()
    if var:
        return f"{var} is set"
    url = endpoint()
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("ALL_PROXY")
    target = urlparse(proxy if proxy and url.startswith("https") else url)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    why = _probe(host, port)
    return f"cannot connect to {target.scheme}://{host}:{port} ({why})" if why else None


def _cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    for name in filenames:
        try:
            found = try_to_load_from_cache(repo_id, name)
        except Exception:  # noqa: BLE001 - an id the cache cannot hold (bad characters)
            return False
        if isinstance(found, str):
            return True
    return False


def hub_kwargs(name_or_path: str | os.PathLike, *, what: str, files: tuple[str, ...] = ("config.json",)) -> dict:
    """Extra ``from_pretrained`` keyword arguments for ``name_or_path`` (see module doc).

    Args:
        name_or_path: a local directory or a Hub id.
        what: what is being loaded, for the message (``tokenizer``, ``model``).
        files: a file the cached snapshot must hold for the cache to count.

    Raises:
        ConfigError: a Hub id, the Hub unreachable, and the id not in the local cache.
    """
    name = str(name_or_path)
    if Path(name).expanduser().exists():
        return {}
    why = hub_unreachable()
    if why is None:
        return {}
    if _cached(name, files):
        return {"local_files_only": True}
    raise ConfigError(f"{what} {name!r} is not a local path, is not in the local Hugging Face cache, and the Hub "
                      f"cannot be asked ({why}): pass a local directory, or download it where the Hub is reachable")
