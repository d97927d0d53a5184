"""``zoo publish ID --push REPO_ID``: the published folder uploaded to the Hugging Face hub in one commit
whose message carries the manifest's sha256 (and its description every file's), with huggingface_hub.
Nothing is uploaded unless the hub answers first; ``--dry-run`` lists what would go, touching nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from . import manifest as mf


class PushError(RuntimeError):
    """The hub could not be reached or refused the upload (the message says what was, and was not, sent)."""


def plan(folder: Path, manifest: dict[str, Any]) -> list[tuple[str, int]]:
    """What an upload sends: every file the manifest lists, then the manifest, with their sizes."""
    files = [(f["path"], int(f["bytes"])) for f in manifest["files"]]
    return files + [(mf.MANIFEST, (Path(folder) / mf.MANIFEST).stat().st_size)]


def commit_message(folder: Path, manifest: dict[str, Any]) -> tuple[str, str]:
    digest = hashlib.sha256((Path(folder) / mf.MANIFEST).read_bytes()).hexdigest()
    title = f"zoo publish {manifest['export_id']} (manifest.json sha256 {digest})"
    body = "\n".join(f"{f['sha256']}  {f['path']}" for f in manifest["files"])
    return title, body


def push(folder: Path, manifest: dict[str, Any], repo: str, revision: str | None, private: bool) -> str:
    """Upload ``folder`` to ``repo`` (created if missing) as one commit; the commit's URL."""
    import os

    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")  # an unreachable hub fails after one short wait
    from huggingface_hub import HfApi

    api = HfApi()
    title, body = commit_message(folder, manifest)
    try:
        api.create_repo(repo, private=private, exist_ok=True)
    except Exception as exc:  # noqa: BLE001 - offline, no token, no rights: one message, nothing sent
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise PushError(
            f"cannot reach the hub to create or open {repo} ({type(exc).__name__}: {reason}); nothing was uploaded"
        ) from None
    try:
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo, revision=revision, commit_message=title, commit_description=body
        )
    except Exception as exc:  # noqa: BLE001
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise PushError(
            f"the upload to {repo} failed ({type(exc).__name__}: {reason}); the hub keeps no partial commit"
        ) from None
    return str(getattr(info, "commit_url", info))
