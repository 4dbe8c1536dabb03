"""A student's side of the classroom service: ``km.publish`` and ``request_slot`` (standard library only).

Where the service is: ``url=``, else ``$KM_CLASSROOM_URL`` (the teacher sets it for every single-user server
with ``c.Spawner.environment``; e.g. ``http://127.0.0.1:8000/services/classroom`` through the hub's proxy).
Who the student is: ``token=``, else ``$KM_CLASSROOM_TOKEN`` (a practice classroom's, :mod:`.practice`), else
``$JUPYTERHUB_API_TOKEN``, which every single-user server has.

::

    km.publish(run, name="poem")                 # served as <your hub name>/poem
    with request_slot("sft on poems") as slot:   # (slot_client) waits for a slot, heartbeats while held
        ...                                      # slot.revoked is set when the teacher's time limit ends it
"""

from __future__ import annotations

import io
import json
import os
import re
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..adapters import find_adapter
from ..errors import SwiftConfigError, SwiftModelError, SwiftServeError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def service(url: str | None = None, token: str | None = None) -> tuple[str, str]:
    """The service's base URL and the caller's hub token, from the arguments or the environment."""
    base = (url or os.environ.get("KM_CLASSROOM_URL", "")).strip().rstrip("/")
    if not base:
        raise SwiftConfigError(
            "no classroom service: pass url=... or set KM_CLASSROOM_URL (the teacher sets it in c.Spawner.environment)"
        )
    key = (token or os.environ.get("KM_CLASSROOM_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN", "")).strip()
    if not key:
        raise SwiftConfigError("no hub token: pass token=... or run in a JupyterHub server (JUPYTERHUB_API_TOKEN)")
    return base, key


def call(method: str, url: str, token: str, body: bytes | None = None, content_type: str = "application/json",
         timeout: float = 60.0) -> dict[str, Any]:  # fmt: skip
    """One request to the service; its one-line refusal as a :class:`SwiftServeError`."""
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", f"token {token}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise SwiftServeError(f"the classroom service answered {exc.code}: {_message(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SwiftServeError(f"cannot reach the classroom service at {url.split('/classroom')[0]}: {reason}") from None


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", {}).get("message", ""))[:300] or exc.reason
    except (ValueError, AttributeError):
        return str(exc.reason)


# -- publishing ----------------------------------------------------------------------------------------
def adapter_files(adapter: Any) -> tuple[Path, str]:
    """The adapter folder of a run, run folder or adapter folder, and the name it is published under by default."""
    path = Path(getattr(adapter, "adapter_dir", None) or getattr(adapter, "path", None) or adapter).expanduser()
    folder = find_adapter(path) if path.exists() else None
    if folder is None:
        raise SwiftModelError(f"{path} holds no LoRA adapter (adapter_config.json); pass a finished run or its adapter folder")
    if not (folder / ADAPTER_FILES[1]).is_file():
        raise SwiftModelError(f"{folder} has no {ADAPTER_FILES[1]}; only safetensors adapters can be published")
    run = folder.parent.parent if folder.parent.name == "final" else folder.parent if folder.name == "adapter" else folder
    return folder, re.sub(r"[^A-Za-z0-9._-]", "-", run.name).strip("-.")[:64] or "adapter"


def publish(adapter: Any, name: str | None = None, url: str | None = None, token: str | None = None) -> dict[str, Any]:
    """Upload ``adapter`` (a run, run folder or adapter folder) to the classroom; served as ``<you>/<name>``."""
    base, key = service(url, token)
    folder, default_name = adapter_files(adapter)
    name = (name or default_name).strip()
    me = call("GET", f"{base}/classroom/me", key)["name"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
        for file in ADAPTER_FILES:
            bundle.write(folder / file, file)
    target = f"{base}/classroom/adapters/{quote(me, safe='')}/{quote(name, safe='')}"
    answer = call("PUT", target, key, archive.getvalue(), "application/zip", timeout=600)
    print(f"published {answer['id']} (rank {answer['rank']}); chat with it as model '{answer['id']}' at {base}/v1")
    return answer


def unpublish(name: str, url: str | None = None, token: str | None = None, user: str | None = None) -> dict[str, Any]:
    """Stop serving your adapter ``name`` (a teacher may name another ``user``'s)."""
    base, key = service(url, token)
    owner = user or call("GET", f"{base}/classroom/me", key)["name"]
    return call("DELETE", f"{base}/classroom/adapters/{quote(owner, safe='')}/{quote(name, safe='')}", key)
