"""The openpi wire format: msgpack, with numpy arrays as plain maps (never pickle).

An array travels as {b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}; a numpy scalar as {b"__npgeneric__": True, b"data": value, b"dtype": str}.
Object, void and complex dtypes are refused both ways: they are how pickle sneaks in. Decoding
checks every array's dtype, shape and byte count, so a hostile or broken message becomes a
`WireError` with a one-line reason instead of an exception from inside numpy.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_REFUSED_KINDS = ("O", "V", "c")
MAX_DIMS = 8
# How a policy name points at a server (`remote:ws://HOST:PORT`), and the key of the message
# with which a pi0bench client tells a pi0bench server a new episode starts.
REMOTE_PREFIX = "remote:"
RESET_KEY = "pi0bench/reset"


class WireError(ValueError):
    """A message that is not valid openpi msgpack."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in _REFUSED_KINDS:
        raise WireError(f"dtype {obj.dtype} cannot be sent (object, void and complex are refused)")
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": array.dtype.str,
                b"shape": list(array.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _dtype(text: Any) -> np.dtype:
    try:
        dtype = np.dtype(text.decode() if isinstance(text, bytes) else str(text))
    except TypeError:
        raise WireError(f"unknown dtype {text!r}") from None
    if dtype.kind in _REFUSED_KINDS:
        raise WireError(f"dtype {dtype} is refused (object, void and complex could carry pickles)")
    return dtype


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = _dtype(obj.get(b"dtype"))
        shape, data = obj.get(b"shape"), obj.get(b"data")
        if (not isinstance(shape, (list, tuple)) or len(shape) > MAX_DIMS
                or not all(isinstance(n, int) and n >= 0 for n in shape)):
            raise WireError(f"array shape {shape!r} is not a list of at most {MAX_DIMS} sizes")
        if not isinstance(data, bytes) or len(data) != int(np.prod(shape)) * dtype.itemsize:
            raise WireError(f"array data does not hold {tuple(shape)} values of {dtype}")
        return np.frombuffer(bytearray(data), dtype=dtype).reshape(shape)  # writable, like any array
    if b"__npgeneric__" in obj:
        return _dtype(obj.get(b"dtype")).type(obj.get(b"data"))
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(payload: bytes) -> Any:
    try:
        return msgpack.unpackb(payload, object_hook=_decode, raw=False)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types on garbage
        raise WireError(f"not a msgpack message ({type(exc).__name__}: {exc})") from None
