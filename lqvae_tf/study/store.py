"""Trained models kept by the content hash of the configuration that made them.

`lqvae reproduce` needs a dozen models (purifier, classifiers, their adversarially trained
versions, a GAN). Each is trained once: its folder is named by its kind and the hash of the
settings that determine it, so a second study with the same settings reuses it, and a changed
setting trains a new one beside the old instead of silently reusing a stale model.

    <root>/<kind>-<hash>/model.keras      the model (written atomically by its trainer)
    <root>/<kind>-<hash>/settings.json    what was hashed
    <root>/<kind>-<hash>/trained.json     when it was trained, and in how many seconds
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from lqvae_tf.atomic import write_text

MODEL_FILE = "model.keras"
SETTINGS_FILE = "settings.json"
TRAINED_FILE = "trained.json"


def settings_hash(kind: str, settings: Mapping[str, Any]) -> str:
    """The first 12 hex digits of the SHA-256 of `kind` and `settings` as canonical JSON."""
    text = json.dumps({"kind": kind, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class ModelStore:
    """A folder of models keyed by `(kind, settings)`.

    Args:
        root: the folder (created on first use).
    """

    def __init__(self, root: str):
        self.root = root

    def folder(self, kind: str, settings: Mapping[str, Any]) -> str:
        """The folder of the model `(kind, settings)`, existing or not."""
        if not kind or os.sep in kind:
            raise ValueError(f"a model kind is a plain non-empty name, got {kind!r}")
        return os.path.join(self.root, f"{kind}-{settings_hash(kind, settings)}")

    def path(self, kind: str, settings: Mapping[str, Any]) -> str:
        """Where the model `(kind, settings)` is (or will be) saved."""
        return os.path.join(self.folder(kind, settings), MODEL_FILE)

    def get_or_train(self, kind: str, settings: Mapping[str, Any], train: Callable[[str], object]) -> tuple[str, bool]:
        """The model's path, training it first with `train(path)` if it is not there yet.

        `train` must save the model to the path it is given (atomically, as this package's
        trainers do), so an interrupted training leaves no file and is redone next time. A
        trainer that resumes an interrupted run instead (the purifier's) returns the seconds its
        earlier, interrupted calls spent, and the record counts them too; any other return value
        is ignored.

        Returns:
            The path, and whether the model was reused (True) or trained now (False).
        """
        path = self.path(kind, settings)
        if os.path.isfile(path):
            return path, True
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_text(os.path.join(os.path.dirname(path), SETTINGS_FILE), json.dumps(settings, indent=2, sort_keys=True))
        start = time.perf_counter()
        earlier = train(path)
        if not os.path.isfile(path):
            raise RuntimeError(f"training {kind} did not write {path}")
        seconds = time.perf_counter() - start
        if isinstance(earlier, (int, float)) and not isinstance(earlier, bool):
            seconds += earlier
        record = {"seconds": round(seconds, 1), "date": datetime.date.today().isoformat()}
        write_text(os.path.join(os.path.dirname(path), TRAINED_FILE), json.dumps(record))
        return path, False

    @staticmethod
    def training_record(path: str) -> dict[str, Any]:
        """What `get_or_train` recorded when the model at `path` was trained ({} if nothing)."""
        record = os.path.join(os.path.dirname(path), TRAINED_FILE)
        if not os.path.isfile(record):
            return {}
        with open(record, encoding="utf-8") as handle:
            return json.load(handle)
