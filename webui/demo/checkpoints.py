"""Checkpoint names as A1111's CheckpointInfo derives them (modules/sd_models.py)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

_MODEL_DIR = "models/Stable-diffusion/"
# sd_models.re_strip_checksum
_RE_CHECKSUM = re.compile(r"\s*\[[^]]+]\s*$")


def _ckpt_name(model: dict[str, Any]) -> str:
    """CheckpointInfo.name: the file's path below the checkpoint directory."""
    filename = model["filename"]
    return filename[len(_MODEL_DIR) :] if filename.startswith(_MODEL_DIR) else filename


def _name_for_extra(model: dict[str, Any]) -> str:
    """CheckpointInfo.name_for_extra: the file name without extension ("Model:" infotext)."""
    return model["filename"].rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _model_name(model: dict[str, Any]) -> str:
    """CheckpointInfo.model_name: the name with "/" as "_", without extension."""
    return _ckpt_name(model).replace("/", "_").rsplit(".", 1)[0]


def _hashed_title(model: dict[str, Any]) -> str:
    return f"{_ckpt_name(model)} [{model['hash']}]"


def _legacy_hash(model: dict[str, Any]) -> str:
    """sd_models.model_hash, the old 8-digit hash (of file bytes; here derived from the name)."""
    return hashlib.sha256(f"demo-legacy:{model['filename']}".encode()).hexdigest()[:8]
