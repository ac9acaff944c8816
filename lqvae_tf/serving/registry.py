"""The versions of one model that a server holds, loaded from `<base>/<name>/<version>/`.

Like TF Serving's file-system source, it polls the model folder: a new version folder is loaded
and then made current with one reference swap, so requests in flight finish on the version they
started with and no request ever fails because of a reload.

Every version the registry has seen has a state, named as in TF Serving's GetModelStatus:
START (found), LOADING (being loaded, or waiting to retry a failed load), AVAILABLE, UNLOADING
and END (unloaded, or given up on), with the error of its last failed load. A failed load is
retried `max_num_load_retries` times, `load_retry_interval_s` apart (TF Serving's
`--max_num_load_retries` and `--load_retry_interval_micros`); a version given up on is tried
afresh when its folder changes (a re-export, or the files of a copy that was still arriving).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import os
import threading
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from lqvae_tf.serving.export import list_versions
from lqvae_tf.serving.memory import return_freed_memory
from lqvae_tf.serving.rest_format import values_per_example

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
    signature_defs: dict  # `/metadata`, read at load time so it never depends on the folder again

    @property
    def image_shape(self) -> tuple | None:
        """(height, width, channels) of the `images` input, if a signature takes images."""
        for signature in self.signatures.values():
            _, shape = signature.inputs.get("images", (None, ()))
            if len(shape) == 4 and None not in shape[1:]:
                return tuple(shape[1:])
        return None

    @functools.cached_property
    def example_bound(self) -> tuple[int | None, int]:
        """The most JSON values one example of any signature holds (None if unbounded), and the
        most inputs of any signature: the bound `check_count_before_parsing` needs."""
        counts = [values_per_example(s.inputs) for s in self.signatures.values()]
        inputs = max((len(s.inputs) for s in self.signatures.values()), default=1)
        return (None if None in counts or not counts else max(counts)), inputs


def _numpy_dtype(dtype: tf.DType) -> np.dtype:
    return np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)


def signature_defs(path: str) -> dict:
    """The SavedModel's SignatureDefMap as TF Serving prints it in `/metadata`."""
    from google.protobuf import json_format
    from tensorflow.python.tools import saved_model_utils

    meta_graph = saved_model_utils.get_meta_graph_def(path, "serve")
    signatures = {
        name: json_format.MessageToDict(definition, preserving_proto_field_name=True)
        for name, definition in meta_graph.signature_def.items()
        if not name.startswith("__")
    }
    return {"signature_def": signatures}


def load_version(path: str, version: int) -> LoadedVersion:
    """Loads one version folder and describes its signatures."""
    definitions = signature_defs(path)
    saved_model = tf.saved_model.load(path)
    signatures = {}
    for name, function in saved_model.signatures.items():
        _, keyword_specs = function.structured_input_signature
        inputs = {key: (_numpy_dtype(spec.dtype), tuple(spec.shape.as_list())) for key, spec in keyword_specs.items()}
        signatures[name] = Signature(function, inputs, sorted(function.structured_outputs))
    return LoadedVersion(version, path, saved_model, signatures, definitions)


@dataclasses.dataclass
class VersionState:
    """What the registry knows of one version: TF Serving's state and the last load error."""

    state: str = "START"
    error: str = ""
    failures: int = 0
    retry_at: float = 0.0
    fingerprint: tuple = ()

    def as_status(self, version: int) -> dict:
        """One entry of TF Serving's `model_version_status`."""
        code = "UNKNOWN" if self.error else "OK"
        status = {"error_code": code, "error_message": self.error}
        return {"version": str(version), "state": self.state, "status": status}


def folder_fingerprint(path: str) -> tuple:
    """Changes when the files of a version folder change (a re-export, a copy still arriving)."""
    stamps = []
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            stamps.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(stamps))


class ModelRegistry:
    """Holds the served versions of one model and keeps them in step with its folder.

    Args:
        base_path: the model's folder, `<base>/<name>` (the `--model_base_path` of TF Serving).
        name: the model name.
        version_policy: "latest" (TF Serving's default: serve only the newest version) or "all".
        labels: version labels, e.g. {"stable": 1}.
        max_num_load_retries: retries of a failed load before the version is given up on.
        load_retry_interval_s: seconds between two tries of a failed load.
    """

    def __init__(
        self,
        base_path: str,
        name: str,
        version_policy: str = "latest",
        labels: Mapping[str, int] | None = None,
        max_num_load_retries: int = 5,
        load_retry_interval_s: float = 60.0,
    ):
        if version_policy not in POLICIES:
            raise ValueError(f"version_policy must be one of {POLICIES}, got {version_policy!r}")
        if max_num_load_retries < 0 or load_retry_interval_s < 0:
            raise ValueError("max_num_load_retries and load_retry_interval_s must be >= 0")
        self.base_path = base_path
        self.name = name
        self.version_policy = version_policy
        self.labels = dict(labels or {})
        self.max_num_load_retries = max_num_load_retries
        self.load_retry_interval_s = load_retry_interval_s
        self.states: dict[int, VersionState] = {}
        self._versions: dict[int, LoadedVersion] = {}
        self._lock = threading.Lock()  # serialises reloads; readers only read the dict reference
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def versions(self) -> dict[int, LoadedVersion]:
        return self._versions

    @property
    def failed(self) -> dict[int, str]:
        """The versions whose last load failed, with the error."""
        return {v: s.error for v, s in self.states.items() if s.error and v not in self._versions}

    def reload(self) -> None:
        """Loads versions that appeared (or are due a retry), unloads the ones the policy drops."""
        with self._lock:
            present = list_versions(self.base_path)
            wanted = present[-1:] if self.version_policy == "latest" else present
            current = dict(self._versions)
            for version in wanted:
                if version not in current and self._due(version):
                    self._load(version, current)
            loaded = [v for v in wanted if v in current]
            if self.version_policy == "latest" and not loaded:
                if not current:  # e.g. a start with a broken newest: serve the newest older one that loads
                    for version in reversed(present[:-1]):
                        if self._due(version):
                            self._load(version, current)
                        if version in current:
                            break
                loaded = sorted(current)[-1:]  # keep serving the last good version
            self._versions = {v: current[v] for v in sorted(set(loaded))}
            dropped = sorted(set(current) - set(self._versions))
            for version in dropped:
                self._unload(version)
            del current
            if dropped:
                # A SavedModel is a graph of objects with reference cycles: only a collection frees
                # it, and only a trim gives its pages back (else each swap would keep its memory).
                gc.collect()
                return_freed_memory()
            for version, state in self.states.items():
                if version not in present and state.state in ("START", "LOADING"):
                    state.state = "END"  # its folder went away before it could be served

    def _due(self, version: int) -> bool:
        state = self.states.setdefault(version, VersionState())
        if state.state == "LOADING":
            return time.monotonic() >= state.retry_at
        if state.state == "END" and state.error:
            # Given up on: try afresh only if the folder changed since the last try.
            if folder_fingerprint(os.path.join(self.base_path, str(version))) == state.fingerprint:
                return False
            state.failures = 0
        return True  # found (START), changed, or unloaded earlier and wanted again

    def _load(self, version: int, current: dict[int, LoadedVersion]) -> None:
        state = self.states[version]
        path = os.path.join(self.base_path, str(version))
        state.state, state.fingerprint = "LOADING", folder_fingerprint(path)
        log.info("loading %s version %d from %s", self.name, version, path)
        try:
            current[version] = load_version(path, version)
        except Exception as error:  # a broken folder must not take the server down
            state.failures += 1
            state.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            if state.failures > self.max_num_load_retries:
                state.state = "END"
                log.error("could not load %s version %d, giving up: %s", self.name, version, state.error)
            else:
                state.retry_at = time.monotonic() + self.load_retry_interval_s
                log.warning(
                    "could not load %s version %d (try %d of %d, next in %gs): %s",
                    self.name,
                    version,
                    state.failures,
                    self.max_num_load_retries + 1,
                    self.load_retry_interval_s,
                    state.error,
                )
            return
        state.state, state.error, state.failures = "AVAILABLE", "", 0
        log.info("loaded %s version %d: AVAILABLE", self.name, version)

    def _unload(self, version: int) -> None:
        state = self.states.setdefault(version, VersionState())
        state.state = "UNLOADING"
        log.info("unloading %s version %d", self.name, version)
        # Requests in flight hold their own reference; dropping ours is the whole unload.
        state.state = "END"
        log.info("unloaded %s version %d: END", self.name, version)

    def status(self, version: int | None = None, label: str | None = None) -> dict:
        """TF Serving's GetModelStatus answer; LookupError for a version never seen."""
        if label is not None:
            version = self.resolve(label=label).version
        states = dict(self.states)
        if version is not None:
            if version not in states:
                raise LookupError(f"Could not find version {version} of model {self.name}")
            states = {version: states[version]}
        if not states:
            raise LookupError(f"Could not find any versions of model {self.name}")
        return {"model_version_status": [states[v].as_status(v) for v in sorted(states, reverse=True)]}

    def next_wakeup(self, interval_s: float) -> float:
        """Seconds until the poller should look again: the poll interval or an earlier retry."""
        retries = [s.retry_at for s in self.states.values() if s.state == "LOADING" and s.failures]
        return max(0.0, min([interval_s, *(at - time.monotonic() for at in retries)]))

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
        """Reloads every `interval_s` seconds (sooner when a retry is due) until `stop_polling`."""

        def loop():
            while not self._stop.wait(self.next_wakeup(interval_s)):
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
