"""TF Serving's REST request and response formats (g3doc/api_rest.md), as pure functions.

Row format: `{"signature_name": ..., "instances": [...]}` -> `{"predictions": [...]}`; columnar:
`{"inputs": ...}` -> `{"outputs": ...}`. With one input, an instance (or `inputs`) is the value
itself; with several, an object of named values. String tensors take `{"b64": "..."}` for
binary data. Errors raise `RequestError`, which the server turns into `{"error": ...}`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np


class RequestError(ValueError):
    """A bad request: its message goes back to the client as `{"error": ...}` with `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _decode_strings(value: Any, name: str) -> Any:
    if isinstance(value, list):
        return [_decode_strings(item, name) for item in value]
    if isinstance(value, Mapping):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise RequestError(f'input {name!r}: a binary value must be {{"b64": "<base64>"}}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise RequestError(f"input {name!r}: invalid base64 data") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RequestError(f"input {name!r} is a string tensor; got {type(value).__name__} values")


def to_array(value: Any, name: str, dtype: np.dtype, shape: tuple[int | None, ...]) -> np.ndarray:
    """One input's JSON value as an array of the signature's dtype, checked against its shape."""
    if dtype == np.object_:
        array = np.array(_decode_strings(value, name), dtype=object)
    else:
        try:
            array = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError):
            raise RequestError(
                f"input {name!r} must hold numbers of dtype {np.dtype(dtype).name} "
                f"in a regular (non-ragged) nested list"
            ) from None
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        expected = "(" + ", ".join("-1" if d is None else str(d) for d in shape) + ")"
        raise RequestError(f"input {name!r} has shape {tuple(array.shape)}; the signature takes {expected}")
    return array


def parse_predict(body: Any, specs: Mapping[str, tuple[np.dtype, tuple]]) -> tuple[dict, bool]:
    """The named input arrays of a `:predict` body, and whether it used the row format.

    Args:
        body: the parsed JSON body.
        specs: input name -> (numpy dtype, shape with None for unknown dims) of the signature.
    """
    if not isinstance(body, Mapping):
        raise RequestError("the request body must be a JSON object")
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise RequestError(
            "the request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)"
        )
    names = list(specs)
    if has_rows:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError("'instances' must be a non-empty list")
        if all(isinstance(item, Mapping) and "b64" not in item for item in instances):
            missing = [n for n in names if any(n not in item for item in instances)]
            extra = sorted({k for item in instances for k in item} - set(names))
            if missing or extra:
                raise RequestError(f"instances must name the inputs {names}; missing {missing}, unknown {extra}")
            columns = {n: [item[n] for item in instances] for n in names}
        elif len(names) == 1:
            columns = {names[0]: instances}
        else:
            raise RequestError(
                f"this signature has several inputs {names}: each instance must be an object naming them"
            )
    else:
        inputs = body["inputs"]
        if isinstance(inputs, Mapping) and "b64" not in inputs:
            missing, extra = sorted(set(names) - set(inputs)), sorted(set(inputs) - set(names))
            if missing or extra:
                raise RequestError(f"'inputs' must name the inputs {names}; missing {missing}, unknown {extra}")
            columns = dict(inputs)
        elif len(names) == 1:
            columns = {names[0]: inputs}
        else:
            raise RequestError(f"this signature has several inputs {names}: 'inputs' must be an object naming them")
    arrays = {n: to_array(columns[n], n, *specs[n]) for n in names}
    return arrays, has_rows


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype == object:
        return [
            _jsonable(item) if isinstance(item, np.ndarray) else {"b64": base64.b64encode(item).decode("ascii")}
            for item in array
        ]
    return array.tolist()


def format_predict(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict:
    """The response body for `outputs` in the request's format."""
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": _jsonable(outputs[names[0]])}
        return {"outputs": {n: _jsonable(outputs[n]) for n in names}}
    if len(names) == 1:
        return {"predictions": _jsonable(outputs[names[0]])}
    batch = {len(outputs[n]) for n in names}
    if len(batch) != 1:
        raise RequestError(
            "outputs of different batch sizes cannot be returned in row format; use the columnar 'inputs' format",
            status=400,
        )
    return {"predictions": [{n: _jsonable(outputs[n][i : i + 1])[0] for n in names} for i in range(batch.pop())]}
