"""The versions of one model that a server holds, loaded from `<base>/<name>/<version>/`.

Like TF Serving's file-system source, it polls the model folder: a new version folder is loaded
and then made current with one reference swap, so requests in flight finish on the version they
started with and no request ever fails because of a reload.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from lqvae_tf.serving.export import list_versions

log = logging.getLogger(__name__)
POLICIES = ("latest", "all")


@dataclasses.dataclass
class Signature:
    """One signature of a loaded version: its function and input specs (dtype, shape)."""

    function: object
    inputs: dict[str, tuple[np.dtype, tuple]]
    outputs: list[str]

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {name: tf.constant(value) for name, value in arrays.items()}
        return {name: value.numpy() for name, value in self.function(**tensors).items()}


@dataclasses.dataclass
class LoadedVersion:
    """A loaded SavedModel version and its signatures (kept alive so its functions stay valid)."""

    version: int
    path: str
    saved_model: object
    signatures: dict[str, Signature]


def _numpy_dtype(dtype: tf.DType) -> np.dtype:
    return np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)


def load_version(path: str, version: int) -> LoadedVersion:
    """Loads one version folder and describes its signatures."""
    saved_model = tf.saved_model.load(path)
    signatures = {}
    for name, function in saved_model.signatures.items():
        _, keyword_specs = function.structured_input_signature
        inputs = {key: (_numpy_dtype(spec.dtype), tuple(spec.shape.as_list())) for key, spec in keyword_specs.items()}
        signatures[name] = Signature(function, inputs, sorted(function.structured_outputs))
    return LoadedVersion(version, path, saved_model, signatures)


class ModelRegistry:
    """Holds the served versions of one model and keeps them in step with its folder.

    Args:
        base_path: the model's folder, `<base>/<name>` (the `--model_base_path` of TF Serving).
        name: the model name.
        version_policy: "latest" (TF Serving's default: serve only the newest version) or "all".
        labels: version labels, e.g. {"stable": 1}.
    """

    def __init__(
        self,
        base_path: str,
        name: str,
        version_policy: str = "latest",
        labels: Mapping[str, int] | None = None,
    ):
        if version_policy not in POLICIES:
            raise ValueError(f"version_policy must be one of {POLICIES}, got {version_policy!r}")
        self.base_path = base_path
        self.name = name
        self.version_policy = version_policy
        self.labels = dict(labels or {})
        self.failed: dict[int, str] = {}
        self._versions: dict[int, LoadedVersion] = {}
        self._lock = threading.Lock()  # serialises reloads; readers only read the dict reference
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def versions(self) -> dict[int, LoadedVersion]:
        return self._versions

    def reload(self) -> None:
        """Loads versions that appeared, drops the ones the policy no longer serves."""
        with self._lock:
            present = list_versions(self.base_path)
            wanted = present[-1:] if self.version_policy == "latest" else present
            current = dict(self._versions)
            for version in wanted:
                if version in current or version in self.failed:
                    continue
                try:
                    current[version] = load_version(os.path.join(self.base_path, str(version)), version)
                    log.info("loaded %s version %d", self.name, version)
                except Exception as error:  # a broken folder must not take the server down
                    self.failed[version] = f"{type(error).__name__}: {error}"
                    log.error("could not load %s version %d: %s", self.name, version, error)
            loaded = [v for v in wanted if v in current]
            if self.version_policy == "latest" and not loaded:
                loaded = sorted(current)[-1:]  # keep serving the last good version
            self._versions = {v: current[v] for v in sorted(set(loaded))}

    def resolve(self, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The version a request asks for (newest by default); LookupError if not served."""
        versions = self._versions
        if label is not None:
            if label not in self.labels:
                raise LookupError(f"Unrecognized servable version label: {label}")
            version = self.labels[label]
        if version is None:
            if not versions:
                raise LookupError(f"Servable not found for request: Latest({self.name})")
            return versions[max(versions)]
        if version not in versions:
            raise LookupError(f"Servable not found for request: Specific({self.name}, {version})")
        return versions[version]

    def start_polling(self, interval_s: float) -> None:
        """Reloads every `interval_s` seconds in a daemon thread until `stop_polling`."""

        def loop():
            while not self._stop.wait(interval_s):
                try:
                    self.reload()
                except Exception:  # keep polling whatever happens on disk
                    log.exception("reload of %s failed", self.base_path)

        self._thread = threading.Thread(target=loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
