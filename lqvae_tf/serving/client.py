"""Clients for a served purifier: REST (TF Serving or `lqvae serve`, same code) and gRPC.

Example:
    >>> client = RestClient("http://localhost:8501", "lqvae")
    >>> purified = client.predict(images)                      # serving_default
    >>> scored = client.predict(images, "purify_and_score")    # {"purified", "reconstruction_error"}
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np
import requests


class ServingError(RuntimeError):
    """The server answered with an error: `status` is the HTTP status, the message its text."""

    def __init__(self, message: str, status: int):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class RestClient:
    """TF Serving's REST API for one model.

    Args:
        url: the server's base URL, e.g. "http://localhost:8501".
        model_name: the served model's name.
        version: ask for this version (default: the newest served).
        label: ask for the version with this label (instead of `version`).
        timeout_s: per-request timeout.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        version: int | None = None,
        label: str | None = None,
        timeout_s: float = 60.0,
    ):
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.session = requests.Session()
        suffix = f"/versions/{version}" if version is not None else f"/labels/{label}" if label else ""
        self.model_url = f"{self.url}/v1/models/{model_name}{suffix}"

    def _call(self, method: str, url: str, **kwargs) -> dict:
        response = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        if response.status_code != 200:
            raise ServingError(body.get("error", response.text), response.status_code)
        return body

    def status(self) -> dict:
        """The model version status (`GET /v1/models/<name>`)."""
        return self._call("GET", self.model_url)

    def metadata(self) -> dict:
        """The signatures (`GET /v1/models/<name>/metadata`)."""
        return self._call("GET", self.model_url + "/metadata")

    def predict_raw(self, body: dict) -> dict:
        """POSTs a `:predict` body as given and returns the parsed response."""
        return self._call("POST", self.model_url + ":predict", json=body)

    def predict(self, images: np.ndarray, signature_name: str = "serving_default", columnar: bool = True):
        """Runs a signature on a batch of images.

        Returns the output array for a one-output signature, else a dict of arrays.
        """
        key = "inputs" if columnar else "instances"
        body = {"signature_name": signature_name, key: np.asarray(images, np.float32).tolist()}
        return _arrays(self.predict_raw(body), columnar)

    def predict_png(self, pngs: Sequence[bytes]) -> np.ndarray:
        """Purifies PNG files (sent as `{"b64": ...}` to the `purify_png` signature)."""
        instances = [{"b64": base64.b64encode(png).decode("ascii")} for png in pngs]
        body = {"signature_name": "purify_png", "instances": instances}
        return _arrays(self.predict_raw(body), columnar=False)


def _arrays(body: dict, columnar: bool):
    if columnar:
        outputs = body["outputs"]
        return (
            {k: np.asarray(v) for k, v in outputs.items()}
            if isinstance(outputs, dict)
            else np.asarray(outputs, np.float32)
        )
    predictions = body["predictions"]
    if predictions and isinstance(predictions[0], dict):
        return {k: np.asarray([p[k] for p in predictions]) for k in predictions[0]}
    return np.asarray(predictions, np.float32)


class GrpcClient:
    """TF Serving's gRPC PredictionService (port 8500), through `tensorflow-serving-api`.

    Only TF Serving speaks gRPC; the embedded server speaks REST.

    Args:
        target: "host:port" of TF Serving's gRPC port.
        model_name: the served model's name.
        version: ask for this version (default: the newest served).
    """

    def __init__(self, target: str, model_name: str, version: int | None = None, timeout_s: float = 60.0):
        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout_s = timeout_s
        self._stub = None

    def request(self, images: np.ndarray, signature_name: str = "serving_default"):
        """The `PredictRequest` proto for a batch of images."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.asarray(images, np.float32)))
        return request

    def predict(self, images: np.ndarray, signature_name: str = "serving_default") -> dict:
        """Runs a signature; returns its outputs as numpy arrays by name."""
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if self._stub is None:
            channel = grpc.insecure_channel(self.target)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = self._stub.Predict(self.request(images, signature_name), self.timeout_s)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
