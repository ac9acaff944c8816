"""An embedded server speaking TF Serving's REST API, for machines without TF Serving.

Routes (as in TF Serving's g3doc/api_rest.md):
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signatures
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    inference
    GET  /openapi.json                                           what this server serves

Errors come back as `{"error": "..."}` with the matching HTTP status. Built on Starlette and
served by uvicorn; inference runs in a thread pool, so concurrent clients are served in parallel.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lqvae_tf.serving.registry import LoadedVersion, ModelRegistry
from lqvae_tf.serving.rest_format import RequestError, format_predict, parse_predict

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
_MODEL_PATH = re.compile(
    r"^(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?$"
)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _signature_defs(path: str) -> dict:
    """The SavedModel's SignatureDefMap as TF Serving prints it in `/metadata`."""
    from tensorflow.python.tools import saved_model_utils

    meta_graph = saved_model_utils.get_meta_graph_def(path, "serve")
    signatures = {
        name: json_format.MessageToDict(definition, preserving_proto_field_name=True)
        for name, definition in meta_graph.signature_def.items()
        if not name.startswith("__")
    }
    return {"signature_def": signatures}


def _status(registry: ModelRegistry, versions: list[int]) -> dict:
    return {
        "model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in sorted(versions, reverse=True)
        ]
    }


class ServingApp:
    """The Starlette application over one `ModelRegistry`.

    Args:
        registry: the model versions to serve.
        max_body_bytes: larger request bodies get HTTP 413.
    """

    def __init__(self, registry: ModelRegistry, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.registry = registry
        self.max_body_bytes = max_body_bytes
        self._metadata_cache: dict[str, dict] = {}
        self.app = Starlette(
            routes=[
                Route("/openapi.json", self.openapi, methods=["GET"]),
                Route("/v1/models/{rest:path}", self.models, methods=["GET", "POST"]),
            ]
        )

    # ------------------------------------------------------------------ routing
    async def models(self, request: Request) -> JSONResponse:
        match = _MODEL_PATH.match(request.path_params["rest"])
        if match is None:
            return _error(f"Malformed request: {request.method} {request.url.path}", 404)
        if match["name"] != self.registry.name:
            return _error(f"Servable not found for request: Latest({match['name']})", 404)
        version = int(match["version"]) if match["version"] else None
        try:
            if request.method == "GET" and match["verb"] is None:
                if match["metadata"]:
                    return JSONResponse(self._metadata(self.registry.resolve(version, match["label"])))
                if version is None and match["label"] is None:
                    served = list(self.registry.versions)
                    if not served:
                        raise LookupError(f"Could not find any versions of model {self.registry.name}")
                    return JSONResponse(_status(self.registry, served))
                return JSONResponse(_status(self.registry, [self.registry.resolve(version, match["label"]).version]))
            if request.method == "POST" and match["verb"] == "predict":
                loaded = self.registry.resolve(version, match["label"])
                body = await self._read_json(request)
                result = await run_in_threadpool(self._predict, loaded, body)
                return JSONResponse(result)
        except LookupError as error:
            return _error(str(error.args[0]), 404)
        except RequestError as error:
            return _error(str(error), error.status)
        if match["verb"] in ("classify", "regress"):
            return _error(f"{match['verb']} is not supported: this model has predict signatures only", 400)
        known = (request.method == "POST") == (match["verb"] == "predict")
        return _error(f"Malformed request: {request.method} {request.url.path}", 404 if known else 405)

    async def _read_json(self, request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise RequestError(
                f"request body of {declared} bytes exceeds the limit of {self.max_body_bytes} bytes",
                status=413,
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestError(f"request body exceeds the limit of {self.max_body_bytes} bytes", status=413)
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(f"JSON Parse error: {error}") from None

    # ------------------------------------------------------------------ handlers
    def _predict(self, loaded: LoadedVersion, body) -> dict:
        name = body.get("signature_name", "serving_default") if isinstance(body, Mapping) else None
        if name is not None and name not in loaded.signatures:
            raise RequestError(f'Serving signature name: "{name}" not found in signature def', 400)
        signature = loaded.signatures[name or "serving_default"]
        arrays, row_format = parse_predict(body, signature.inputs)
        try:
            outputs = signature(arrays)
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(error.message.strip().splitlines()[0]) from None
        except (tf.errors.OpError, ValueError, TypeError) as error:
            raise RequestError(f"{type(error).__name__}: {str(error).strip().splitlines()[0]}") from None
        return format_predict(outputs, row_format)

    def _metadata(self, loaded: LoadedVersion) -> dict:
        if loaded.path not in self._metadata_cache:
            self._metadata_cache[loaded.path] = _signature_defs(loaded.path)
        return {
            "model_spec": {"name": self.registry.name, "signature_name": "", "version": str(loaded.version)},
            "metadata": {"signature_def": self._metadata_cache[loaded.path]},
        }

    async def openapi(self, request: Request) -> JSONResponse:
        return JSONResponse(openapi_document(self.registry))


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
                "responses": {"200": {"description": "status"}, "404": error},
            }
        }
        paths[prefix + "/metadata"] = {
            "get": {
                "summary": "signatures",
                "parameters": parameters,
                "responses": {"200": {"description": "metadata"}, "404": error},
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
                    "413": error,
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
) -> ModelRegistry:
    """A registry with the versions present now loaded; ValueError if none can be served."""
    registry = ModelRegistry(model_base_path, model_name, version_policy, labels)
    registry.reload()
    if not registry.versions:
        problems = "; ".join(f"version {v}: {e}" for v, e in registry.failed.items())
        raise ValueError(
            f"no servable version of {model_name!r} under {model_base_path}"
            + (f" ({problems})" if problems else " (expected <base>/<name>/<version>/)")
        )
    return registry


def serve(
    model_base_path: str,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8501,
    poll_seconds: float = 1.0,
    version_policy: str = "latest",
    labels: Mapping[str, int] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Serves until interrupted (the `lqvae serve` command)."""
    import uvicorn

    registry = build_registry(model_base_path, model_name, version_policy, labels)
    registry.start_polling(poll_seconds)
    try:
        uvicorn.run(ServingApp(registry, max_body_bytes).app, host=host, port=port, log_level="info")
    finally:
        registry.stop_polling()


@contextlib.contextmanager
def running_server(
    model_base_path: str,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 0,
    poll_seconds: float = 0.2,
    **options,
) -> Iterator[str]:
    """Runs the server in a background thread (for tests and benchmarks); yields its base URL."""
    import uvicorn

    max_body = options.pop("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    registry = build_registry(model_base_path, model_name, **options)
    registry.start_polling(poll_seconds)
    config = uvicorn.Config(
        ServingApp(registry, max_body).app, host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            registry.stop_polling()
            raise RuntimeError("the embedded server did not start")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        registry.stop_polling()
