"""TF Serving's REST request and response formats (g3doc/api_rest.md), as pure functions.

Row format: `{"signature_name": ..., "instances": [...]}` -> `{"predictions": [...]}`; columnar:
`{"inputs": ...}` -> `{"outputs": ...}`. With one input, an instance (or `inputs`) is the value
itself; with several, an object of named values. String tensors take `{"b64": "..."}` for
binary data. Errors raise `RequestError`, which the server turns into `{"error": ...}`.

Numbers are taken as numbers only (strings and booleans are refused, as TF Serving refuses them
for a float tensor) and float32 outputs go back with float32 digits (orjson writes numpy arrays).
"""

from __future__ import annotations

import base64
import itertools
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class RequestError(ValueError):
    """A bad request: its message goes back to the client as `{"error": ...}` with `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _decode_strings(value: Any, name: str, rank: int) -> Any:
    """A string tensor's JSON value with `{"b64": ...}` leaves decoded, nested at most `rank` lists deep.

    The depth bound is checked on the way down, so a body nested hundreds of levels deep (JSON
    parsers accept about a thousand) is a 400 naming the shape, not a RecursionError.
    """
    if isinstance(value, list):
        if rank <= 0:
            raise RequestError(f"input {name!r} is nested deeper than the signature's rank")
        return [_decode_strings(item, name, rank - 1) for item in value]
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


class _NotNumbers(Exception):
    """A regular nested list whose leaves are not all JSON numbers."""


def _regular_floats(value: Any, rank: int, dtype: np.dtype) -> np.ndarray | None:
    """`value` as a float array if it is a regular nested list of `rank` levels of JSON numbers.

    The fast path for the common request: a batch of images as nested lists. numpy's own
    discovery of a nested list's shape (`np.asarray`) visits every inner list the slow way; here
    each level is checked for equal lengths and flattened in one C-level pass. None (let the
    general path explain what is wrong) for ragged lists and other depths; `_NotNumbers` for
    leaves that are strings, booleans or nulls, which numpy would quietly turn into numbers.
    """
    if type(value) is not list:
        return None
    level, shape = [value], []
    for _ in range(rank):  # map/set/chain keep every per-item step in C
        try:
            lengths = set(map(len, level))
        except TypeError:  # a number where a list should be
            return None
        if len(lengths) != 1:
            return None
        shape.append(lengths.pop())
        # A string or an object here flattens into strings, which the check of the leaves refuses.
        level = list(itertools.chain.from_iterable(level))
    kinds = set(map(type, level))
    if list in kinds:
        return None
    if not kinds <= {int, float}:
        raise _NotNumbers
    with np.errstate(over="ignore"):  # out-of-range values become inf, which the model refuses
        return np.fromiter(level, dtype=dtype, count=len(level)).reshape(shape)


def _not_numbers(name: str, dtype: np.dtype) -> RequestError:
    return RequestError(
        f"input {name!r} must hold numbers of dtype {np.dtype(dtype).name} in a regular (non-ragged) nested list"
    )


def to_array(value: Any, name: str, dtype: np.dtype, shape: tuple[int | None, ...]) -> np.ndarray:
    """One input's JSON value as an array of the signature's dtype, checked against its shape."""
    try:
        fast = _regular_floats(value, len(shape), dtype) if np.dtype(dtype).kind == "f" and shape else None
    except _NotNumbers:
        raise _not_numbers(name, dtype) from None
    if fast is not None:
        array = fast
    elif dtype == np.object_:
        array = np.array(_decode_strings(value, name, len(shape)), dtype=object)
    else:
        try:
            inferred = np.asarray(value)
        except (TypeError, ValueError, OverflowError):
            inferred = None
        # numpy would read "0.5" or true as a number; TF Serving does not, and neither do we.
        if inferred is None or inferred.dtype.kind not in "iuf":
            raise _not_numbers(name, dtype)
        with np.errstate(over="ignore"):  # out-of-range values become inf, which the model refuses
            array = inferred.astype(dtype, copy=False)
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        expected = "(" + ", ".join("-1" if d is None else str(d) for d in shape) + ")"
        raise RequestError(f"input {name!r} has shape {tuple(array.shape)}; the signature takes {expected}")
    return array


def check_png_sizes(array: np.ndarray, name: str, height: int, width: int) -> None:
    """Refuses, from their headers alone, PNG files that are not `height` x `width` pixels.

    Decoding comes later, in the model; a 20000x20000 PNG fits in a few hundred kilobytes and
    would cost gigabytes to decode before its size could be checked there.
    """
    for index, data in enumerate(array.reshape(-1)):
        if len(data) < 24 or data[:8] != _PNG_MAGIC or data[12:16] != b"IHDR":
            raise RequestError(f"input {name!r}[{index}] is not a PNG file")
        got_width, got_height = struct.unpack(">II", data[16:24])
        if (got_height, got_width) != (height, width):
            raise RequestError(
                f"input {name!r}[{index}] is a PNG of {got_width}x{got_height} pixels; the model takes {width}x{height}"
            )


def _batch_length(value: Any, name: str, max_images: int | None) -> None:
    if max_images is not None and isinstance(value, list) and len(value) > max_images:
        raise RequestError(f"input {name!r} holds {len(value)} images; at most {max_images} per request", status=413)


def values_per_example(specs: Mapping[str, tuple[np.dtype, tuple]]) -> int | None:
    """The JSON values one example of a signature holds: numbers, or one string per string input.

    None when a per-example dimension is unknown (the count cannot be bounded before parsing).
    """
    total = 0
    for _, shape in specs.values():
        if any(d is None for d in shape[1:]):
            return None
        total += int(np.prod(shape[1:], dtype=np.int64))  # a string is one value, as a number is
    return total


def check_count_before_parsing(body: bytes, per_example: int | None, max_images: int, inputs: int) -> None:
    """413 for a body that holds more than `max_images` examples, counted on the raw bytes.

    JSON separates values with commas, and a `:predict` body of n examples holds at most
    n * (values per example + inputs) of them outside strings (the keys and `signature_name` add
    a few). So a body with more commas than that bound holds more than `max_images` examples,
    or is malformed; either way it is refused here, in one pass of C over the bytes, before
    orjson builds millions of Python objects out of it. Base64 PNGs hold no commas, so for
    string inputs the bound is as tight.

    Args:
        body: the raw request body.
        per_example: the largest `values_per_example` of the version's signatures (None: no bound).
        max_images: the limit on examples per request.
        inputs: the most inputs of any of the version's signatures.
    """
    if per_example is None:
        return
    if body.count(b",") > max_images * (per_example + inputs) + 16:
        raise RequestError(
            f"the request holds more values than {max_images} examples can (at most {max_images} per request)",
            status=413,
        )


def parse_predict(
    body: Any, specs: Mapping[str, tuple[np.dtype, tuple]], max_images: int | None = None
) -> tuple[dict, bool]:
    """The named input arrays of a `:predict` body, and whether it used the row format.

    Args:
        body: the parsed JSON body.
        specs: input name -> (numpy dtype, shape with None for unknown dims) of the signature.
        max_images: more examples than this in one request are refused (413) before conversion.
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
        _batch_length(instances, "instances", max_images)
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
    for name in names:
        _batch_length(columns[name], name, max_images)
    arrays = {n: to_array(columns[n], n, *specs[n]) for n in names}
    return arrays, has_rows


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype == object:
        return [
            _jsonable(item) if isinstance(item, np.ndarray) else {"b64": base64.b64encode(item).decode("ascii")}
            for item in array
        ]
    return np.ascontiguousarray(array)  # orjson writes it, float32 with float32 digits


def format_predict(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict:
    """The response body for `outputs` in the request's format (numpy arrays inside; see `encode_json`)."""
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


def encode_json(content: Any) -> bytes:
    """JSON bytes of `content`, numpy arrays included."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_json(body: bytes) -> Any:
    """The parsed JSON of a request body; RequestError (400) if it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(f"JSON Parse error: {error}") from None
