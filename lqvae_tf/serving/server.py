"""An embedded server speaking TF Serving's REST API, for machines without TF Serving.

Routes (as in TF Serving's g3doc/api_rest.md; matched case-insensitively, as TF Serving does):
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signatures
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    inference
    GET  /openapi.json                                           what this server serves

Every answer that is not a success is `{"error": "..."}`: 400 for any malformed request (a URL
under /v1/ that matches no route included, as TF Serving answers), 404 for a model, version or
label not served, 405 (with `Allow`) for a wrong method on /openapi.json, 408/413 for the limits
of `ServingLimits`, 503 when overloaded. HEAD is answered wherever GET is.

JSON is read and written with orjson; large bodies are parsed and serialised in worker threads so
the event loop keeps answering. With batching (`BatchingParameters`), concurrent predicts of one
signature run as one batch, as with TF Serving's `--enable_batching`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow as tf
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from lqvae_tf.serving.batching import BatchingParameters, BatchScheduler, QueueFullError, batch_size_of
from lqvae_tf.serving.limits import ServingLimits, protocol_for
from lqvae_tf.serving.memory import return_freed_memory
from lqvae_tf.serving.registry import LoadedVersion, ModelRegistry, Signature
from lqvae_tf.serving.rest_format import (
    RequestError,
    check_count_before_parsing,
    check_png_sizes,
    decode_json,
    encode_json,
    format_predict,
    parse_predict,
)
from lqvae_tf.serving.workers import reuse_port_socket

log = logging.getLogger(__name__)
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/:]+))?$",
    re.IGNORECASE,
)
_MAX_VERSION = 2**63 - 1  # TF Serving's versions are int64
# Below this many bytes, parsing or writing JSON takes less time than a hop to a worker thread.
INLINE_JSON_BYTES = 256 * 1024
# After a body this large, the memory of its parse is handed back to the OS (see serving.memory).
TRIM_AFTER_BYTES = 4 * 1024 * 1024


def _json(content, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(encode_json(content), status_code=status, media_type="application/json", headers=headers)


def _error(message: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


def _malformed(method: str, path: str) -> Response:
    return _error(f"Malformed request: {method} {path}", 400)


def run_signature(signature: Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs a signature; errors caused by the inputs come back as RequestError (400)."""
    try:
        return signature(arrays)
    except tf.errors.InvalidArgumentError as error:
        raise RequestError(error.message.strip().splitlines()[0]) from None
    except (tf.errors.OpError, ValueError, TypeError) as error:
        raise RequestError(f"{type(error).__name__}: {str(error).strip().splitlines()[0]}") from None


class ServingApp:
    """The Starlette application over one `ModelRegistry`.

    Args:
        registry: the model versions to serve.
        limits: request and connection limits.
        batching: merge concurrent predicts into batches with these parameters (None: no batching).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        limits: ServingLimits | None = None,
        batching: BatchingParameters | None = None,
    ):
        self.registry = registry
        self.limits = limits or ServingLimits()
        self.scheduler = BatchScheduler(batching) if batching is not None else None

    async def app(self, scope, receive, send) -> None:
        """The ASGI application: one dispatcher for every method and path, so every answer is ours."""
        if scope["type"] != "http":
            return
        received = _BodyTracker(scope, receive)
        request = Request(scope, received)
        try:
            response = await self.dispatch(request)
        except Exception as error:  # a server fault still answers {"error": ...}
            log.error("server fault on %s %s", request.method, request.url.path, exc_info=error)
            response = _error(f"Internal error: {type(error).__name__}", 500)
        if not received.complete:
            # Answered before the body arrived (404, 413, ...): say the connection ends with this
            # answer; the protocol then drains what is still on its way, bounded, and closes.
            response.headers["connection"] = "close"
        await response(scope, receive, send)

    def close(self) -> None:
        """Stops the batch threads."""
        if self.scheduler is not None:
            self.scheduler.close()

    # ------------------------------------------------------------------ routing
    async def dispatch(self, request: Request) -> Response:
        path, method = request.scope["path"], request.scope["method"]  # not request.url: it parses the URL
        read = method in ("GET", "HEAD")
        if path.lower() == "/openapi.json":
            if not read:
                return _error(f"{method} is not allowed on {path}", 405, {"Allow": "GET, HEAD"})
            return _json(openapi_document(self.registry))
        if not path.lower().startswith("/v1/"):
            return _error(f"Not found: {path}", 404)
        match = _MODEL_PATH.match(path)
        if match is None:
            return _malformed(method, path)
        version = None
        if match["version"] is not None:
            version = int(match["version"]) if len(match["version"]) <= 19 else None
            if version is None or version > _MAX_VERSION:
                return _error(f"Failed to convert version: {match['version'][:40]}", 400)
        if match["name"] != self.registry.name:
            return _error(f"Servable not found for request: Latest({match['name']})", 404)
        verb = match["verb"].lower() if match["verb"] else None
        try:
            if read and verb is None:
                if match["metadata"]:
                    return _json(self._metadata(self.registry.resolve(version, match["label"])))
                return _json(self.registry.status(version, match["label"]))
            if method == "POST" and verb == "predict":
                return await self._predict(request, self.registry.resolve(version, match["label"]))
            if method == "POST" and verb in ("classify", "regress"):
                return _error(f"{verb} is not supported: this model has predict signatures only", 400)
        except LookupError as error:
            return _error(str(error.args[0]), 404)
        except RequestError as error:
            return _error(str(error), error.status)
        except QueueFullError as error:
            return _error(str(error), 503)
        except ClientDisconnect:
            return _error("the client went away", 400)
        return _malformed(method, path)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(f"request body of {declared} bytes exceeds the limit of {limit} bytes", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                chunks.clear()
                return_freed_memory()  # the chunks came from the allocator's arenas, not their own pages
                raise RequestError(f"request body exceeds the limit of {limit} bytes", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    # ------------------------------------------------------------------ handlers
    async def _predict(self, request: Request, loaded: LoadedVersion) -> Response:
        body = await self._read_body(request)
        if self.scheduler is None:
            return _json_bytes(await run_in_threadpool(self._predict_now, loaded, body))
        if len(body) > INLINE_JSON_BYTES:
            signature, arrays, row_format = await run_in_threadpool(self._prepare_and_trim, loaded, body)
        else:
            signature, arrays, row_format = self._prepare(loaded, body)
        future = self.scheduler.submit(functools.partial(run_signature, signature), arrays, key=id(signature))
        try:
            outputs = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise
        if sum(value.nbytes for value in outputs.values()) * 2 > INLINE_JSON_BYTES:
            return _json_bytes(await run_in_threadpool(_encode_predict, outputs, row_format))
        return _json_bytes(_encode_predict(outputs, row_format))

    def _prepare(self, loaded: LoadedVersion, body: bytes) -> tuple[Signature, dict, bool]:
        """The signature and checked input arrays of a `:predict` body."""
        per_example, inputs = loaded.example_bound
        check_count_before_parsing(body, per_example, self.limits.max_images_per_request, inputs)
        content = decode_json(body)
        name = content.get("signature_name", "serving_default") if isinstance(content, Mapping) else None
        if name is not None and not isinstance(name, str):
            raise RequestError(f"'signature_name' must be a string, got {type(name).__name__}")
        if name is not None and name not in loaded.signatures:
            raise RequestError(f'Serving signature name: "{name}" not found in signature def')
        signature = loaded.signatures[name or "serving_default"]
        arrays, row_format = parse_predict(content, signature.inputs, self.limits.max_images_per_request)
        batch_size_of(arrays)
        image_shape = loaded.image_shape
        for input_name, array in arrays.items():
            if array.dtype == object and image_shape is not None:
                check_png_sizes(array, input_name, *image_shape[:2])
        return signature, arrays, row_format

    def _prepare_and_trim(self, loaded: LoadedVersion, body: bytes) -> tuple[Signature, dict, bool]:
        """`_prepare`, then, after a large body, the memory its parse freed goes back to the OS."""
        try:
            return self._prepare(loaded, body)
        finally:
            if len(body) > TRIM_AFTER_BYTES:
                return_freed_memory()

    def _predict_now(self, loaded: LoadedVersion, body: bytes) -> bytes:
        signature, arrays, row_format = self._prepare_and_trim(loaded, body)
        return _encode_predict(run_signature(signature, arrays), row_format)

    def _metadata(self, loaded: LoadedVersion) -> dict:
        return {
            "model_spec": {"name": self.registry.name, "signature_name": "", "version": str(loaded.version)},
            "metadata": {"signature_def": loaded.signature_defs},
        }


class _BodyTracker:
    """An ASGI `receive` that notes whether the request's body has arrived whole."""

    def __init__(self, scope, receive):
        self._receive = receive
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length", b"0")
        self.complete = b"transfer-encoding" not in headers and (not length.isdigit() or int(length) == 0)

    async def __call__(self):
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
        return message


def _encode_predict(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    return encode_json(format_predict(outputs, row_format))


def _json_bytes(content: bytes) -> Response:
    return Response(content, media_type="application/json")


def openapi_document(registry: ModelRegistry) -> dict:
    """An OpenAPI 3 description of the routes and of the newest version's signatures."""
    signatures = {}
    with contextlib.suppress(LookupError):
        for sig_name, signature in registry.resolve().signatures.items():
            signatures[sig_name] = {
                name: {
                    "dtype": 'string (send {"b64": ...})' if dtype == np.object_ else dtype.name,
                    "shape": [-1 if d is None else d for d in shape],
                }
                for name, (dtype, shape) in signature.inputs.items()
            }
    model = f"/v1/models/{registry.name}"
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}},
    }
    predict_body = {
        "type": "object",
        "properties": {
            "signature_name": {"type": "string", "enum": sorted(signatures) or ["serving_default"]},
            "instances": {"type": "array", "description": "row format: one entry per example"},
            "inputs": {"description": "columnar format: the batch per input name"},
        },
    }
    paths = {}
    for prefix in (model, model + "/versions/{version}", model + "/labels/{label}"):
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)}", prefix)
        ]
        paths[prefix] = {
            "get": {
                "summary": "model version status",
                "parameters": parameters,
                "responses": {"200": {"description": "status"}, "400": error, "404": error},
            }
        }
        paths[prefix + "/metadata"] = {
            "get": {
                "summary": "signatures",
                "parameters": parameters,
                "responses": {"200": {"description": "metadata"}, "400": error, "404": error},
            }
        }
        paths[prefix + ":predict"] = {
            "post": {
                "summary": "run a signature",
                "parameters": parameters,
                "requestBody": {"required": True, "content": {"application/json": {"schema": predict_body}}},
                "responses": {
                    "200": {"description": "predictions (row) or outputs (columnar)"},
                    "400": error,
                    "404": error,
                    "408": error,
                    "413": error,
                    "503": error,
                },
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"lqvae-tf embedded TF Serving REST API: {registry.name}",
            "version": "1",
            "x-signatures": signatures,
        },
        "paths": paths,
    }


def build_registry(
    model_base_path: str,
    model_name: str,
    version_policy: str = "latest",
    labels: Mapping[str, int] | None = None,
    max_num_load_retries: int = 5,
    load_retry_interval_s: float = 60.0,
) -> ModelRegistry:
    """A registry with the versions present now loaded; ValueError if the folder does not exist.

    A folder with no version, or only incomplete or broken ones, is served anyway, as TF Serving
    serves it: status reports each version's state and error, predicts get 404, and a version
    is served as soon as it loads (its retries, or its folder changing, see `ModelRegistry`).
    """
    if not os.path.isdir(model_base_path):
        raise ValueError(f"--model_base_path {model_base_path} is not a folder (expected <base>/<name>/<version>/)")
    registry = ModelRegistry(
        model_base_path, model_name, version_policy, labels, max_num_load_retries, load_retry_interval_s
    )
    registry.reload()
    if not registry.versions:
        problems = "; ".join(f"version {v}: {e}" for v, e in registry.failed.items())
        log.warning(
            "no servable version of %s under %s yet (%s); serving, and polling for one",
            model_name,
            model_base_path,
            problems or "no <version>/ folder",
        )
    return registry


def _uvicorn_config(app: ServingApp, host: str, port: int, log_level: str, http_parser: str = "auto"):
    import uvicorn

    return uvicorn.Config(
        app.app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="off",
        interface="asgi3",
        http=protocol_for(app.limits, http_parser),
        h11_max_incomplete_event_size=app.limits.max_header_bytes,  # the header limit, where h11 parses
        access_log=False,  # a log line per request costs more than parsing it; TF Serving logs none
        # A connection kept alive but idle is closed after this long, as TF Serving's REST server does.
        timeout_keep_alive=max(1, int(app.limits.request_read_timeout_s)),
    )


def _log_lifecycle_to_stderr() -> None:
    """Sends the serving loggers' INFO lines (each load, unload and failure of a version) to stderr.

    uvicorn configures only its own loggers, so without a handler here Python's last-resort handler
    would drop every INFO line, the loads and unloads that TF Serving's own log shows.
    """
    logger = logging.getLogger("lqvae_tf.serving")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def serve(
    model_base_path: str,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8501,
    poll_seconds: float = 1.0,
    limits: ServingLimits | None = None,
    batching: BatchingParameters | None = None,
    reuse_port: bool = False,
    **registry_options,
) -> None:
    """Serves until interrupted (the `lqvae serve` command); `registry_options` go to `build_registry`.

    `reuse_port` binds with SO_REUSEPORT, as each worker of `lqvae serve --workers N` does
    (`lqvae_tf.serving.workers`).
    """
    import uvicorn

    _log_lifecycle_to_stderr()
    registry = build_registry(model_base_path, model_name, **registry_options)
    registry.start_polling(poll_seconds)
    app = ServingApp(registry, limits, batching)
    # TensorFlow and the loaded model leave millions of long-lived objects; without this, every
    # full collection walks them all on the event loop, a stall of a tenth of a second under load.
    gc.collect()
    gc.freeze()
    sockets = [reuse_port_socket(host, port)] if reuse_port else None
    try:
        uvicorn.Server(_uvicorn_config(app, host, port, "info")).run(sockets=sockets)
    finally:
        registry.stop_polling()
        app.close()


@contextlib.contextmanager
def running_server(
    model_base_path: str,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 0,
    poll_seconds: float = 0.2,
    limits: ServingLimits | None = None,
    batching: BatchingParameters | None = None,
    http_parser: str = "auto",
    **registry_options,
) -> Iterator[str]:
    """Runs the server in a background thread (for tests and benchmarks); yields its base URL.

    `http_parser` picks uvicorn's HTTP parser: "httptools", "h11" or "auto" (httptools if installed).
    """
    import uvicorn

    registry = build_registry(model_base_path, model_name, **registry_options)
    registry.start_polling(poll_seconds)
    app = ServingApp(registry, limits, batching)
    server = uvicorn.Server(_uvicorn_config(app, host, port, "warning", http_parser))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            registry.stop_polling()
            app.close()
            raise RuntimeError("the embedded server did not start")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        registry.stop_polling()
        app.close()
