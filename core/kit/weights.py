"""Reading weights as a user hands them over: every failure names the file and what is wrong.

Plugins read their checkpoints, configs and tokenizers through these helpers, so
that a corrupt file is reported as such (never as a library's traceback), a
pickle is never executed (``torch.load(weights_only=True)`` only, and zoo never
suggests turning that off), and an unreachable hub is said once, with the two
ways around it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

OFFLINE_HINT = "pass --weights DIR (a local copy laid out like the hub repository) or --random-weights"


class WeightsError(ValueError):
    """A weights file (or the hub) that cannot be used; the message names it."""


def _exists(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} {path} does not exist")
    return path


def read_json(path: str | Path, what: str = "config") -> Any:
    path = _exists(Path(path), what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise WeightsError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise WeightsError(
            f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


def load_safetensors(path: str | Path, framework: str = "torch", what: str = "weights file") -> dict[str, Any]:
    """``{name: tensor}`` (torch tensors, or numpy arrays with ``framework="numpy"``)."""
    path = _exists(Path(path), what)

    def load(name: str) -> dict[str, Any]:  # numpy arrays need no torch: each import only where it is used
        if framework == "numpy":
            from safetensors.numpy import load_file

            return load_file(name)
        from safetensors.torch import load_file as load_tensors

        return load_tensors(name)

    try:
        return load(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: the file is what is wrong
        raise WeightsError(f"{what} {path} is not a readable safetensors file: {exc}") from None


def load_torch(path: str | Path, what: str = "checkpoint") -> Any:
    """A PyTorch file of tensors, loaded with ``weights_only=True`` (nothing is unpickled)."""
    import torch

    path = _exists(Path(path), what)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's own message advises unsafe loading: not repeated
        kind = (
            "it holds objects other than tensors" if "Weights only load failed" in str(exc) else f"{type(exc).__name__}"
        )
        raise WeightsError(
            f"{what} {path} is not a readable file of PyTorch tensors ({kind}); zoo loads checkpoints "
            "with weights_only=True and never unpickles arbitrary objects: re-download it or check its source"
        ) from None


def load_tokenizer(path: str | Path, what: str = "tokenizer") -> Any:
    from tokenizers import Tokenizer

    path = _exists(Path(path), what)
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises a bare Exception
        raise WeightsError(f"{what} {path} is not a readable tokenizer.json: {exc}") from None


def _hub_error(repo: str, revision: str | None, exc: BaseException) -> WeightsError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return WeightsError(
        f"cannot fetch {repo}@{(revision or 'main')[:12]} from the Hugging Face hub ({type(exc).__name__}: "
        f"{reason[:200]}); {OFFLINE_HINT}"
    )


def _quick_failure() -> None:
    # an unreachable hub fails after one short wait, not after minutes of retries
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")


def hub_snapshot(repo: str, revision: str | None, patterns: Iterable[str]) -> Path:
    """The files of ``repo`` at ``revision`` matching ``patterns`` (downloaded once, then cached)."""
    _quick_failure()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo, revision=revision, allow_patterns=list(patterns)))
    except Exception as exc:  # noqa: BLE001 - offline, unknown revision, gated: one message
        raise _hub_error(repo, revision, exc) from None


def hub_file(repo: str, filename: str, revision: str | None) -> Path:
    _quick_failure()
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision))
    except Exception as exc:  # noqa: BLE001
        raise _hub_error(repo, revision, exc) from None


def load_prefixed(directory: str | Path, prefix: str, what: str = "checkpoint") -> tuple[dict[str, Any], list[Path]]:
    """The torch tensors named ``prefix…`` (prefix removed) of a checkpoint directory laid out like the hub
    (``model.safetensors``, or shards listed by ``model.safetensors.index.json``), and the files they came
    from. Only those tensors are read: a part of a large checkpoint costs its own size, not the file's."""
    from safetensors import safe_open

    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, f"{what} index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise WeightsError(f"{what} index {index} has no weight_map")
        names = sorted({str(f) for k, f in weight_map.items() if str(k).startswith(prefix)})
        if any(Path(n).name != n for n in names):
            raise WeightsError(f"{what} index {index} names a shard outside its directory")
        files = [_exists(directory / n, f"{what} shard") for n in names]
    else:
        files = [_exists(directory / "model.safetensors", what)]
    tensors: dict[str, Any] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    if key.startswith(prefix):
                        tensors[key[len(prefix) :]] = f.get_tensor(key)
        except WeightsError:
            raise
        except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: the file is what is wrong
            raise WeightsError(f"{what} {file} is not a readable safetensors file: {exc}") from None
    if not tensors:
        raise WeightsError(f"{what} {directory} holds no tensor named {prefix}*")
    return tensors, files
