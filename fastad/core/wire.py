"""The byte format of saved compiled functions and tapes, read by fastad itself.

Saved functions used to be pickles of plain data read by a restricted
unpickler.  Restricting the globals a pickle may name is not enough: the
allowed NumPy reconstruction functions (``numpy.dtype`` given a crafted state,
``_reconstruct``) do not check their arguments and crash the process on a
few dozen hostile bytes, and a pickled container nested a million levels deep
overflows the C stack.  Nothing in this format reaches pickle or a NumPy
constructor that interprets a structure: every field is typed and
length-prefixed, arrays are raw bytes of a dtype from a short allow-list,
and the reader below checks each declared size against the limits and the
bytes left before it allocates anything.

A payload is ``MAGIC``, one kind byte (``FUNCTION`` or ``TAPE``), the format
version (uint16), exactly one value, and nothing after it.  A value is a
one-byte tag and its fields, integers little-endian:

====  ==================================================================
tag   fields
====  ==================================================================
N     None
T F   True, False
i     int: int64
I     int outside int64: uint32 byte count (at most MAX_BIGINT_BYTES),
      then the signed little-endian bytes
f     float: float64
c     complex: two float64 (real, imaginary)
s     str: uint32 byte count, then UTF-8 (lone surrogates allowed: file
      names may hold them)
b     bytes: uint32 byte count, then the bytes
t l   tuple, list: uint32 item count, then the items
d     dict: uint32 pair count, then key, value, key, value...; keys are
      None, bool, int, float, complex, str or bytes, each at most once
:     slice: start, stop, step, each N, i or I
y     NumPy dtype: dtype code
g     NumPy scalar: dtype code, then its itemsize bytes
a     NumPy array: dtype code, ndim (uint8, at most MAX_NDIM), ndim dims
      (uint64), byte count (uint64, equal to the dims' product times the
      itemsize), then the bytes
====  ==================================================================

Containers nest at most MAX_DEPTH deep, and a payload holds at most
MAX_ITEMS values.  The reader keeps its open containers on an explicit stack
(it never recurses), and any fault raises `TapeError`.  The writer refuses
what the reader would refuse, so whatever saves also loads.
"""
from __future__ import annotations

import math
import operator
import struct
from typing import Any

import numpy as np

from .errors import TapeError

MAGIC = b"\x93FASTAD"
FUNCTION = b"F"  # a compiled function's state (fastad.serialize)
TAPE = b"T"  # one tape (Tape.to_bytes)
VERSION = 1

MAX_DEPTH = 64  # containers inside containers
MAX_ITEMS = 1 << 24  # values in one payload
MAX_NDIM = 32  # as a tape's slots (fastad.core.tape.MAX_NDIM)
MAX_BIGINT_BYTES = 64  # ints up to 512 bits

#: the dtypes arrays, scalars and dtype fields may have, by their code in the
#: payload: fixed-size numbers only (no objects, strings, records or datetimes)
DTYPES = tuple(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128))
_CODE = {dt: code for code, dt in enumerate(DTYPES)}
_LITTLE = tuple(dt.newbyteorder("<") for dt in DTYPES)  # the bytes' order in a payload

_HEADER = struct.Struct("<7scH")
_U8, _I64, _U32, _U64, _F64, _C128 = (struct.Struct(f) for f in ("<B", "<q", "<I", "<Q", "<d",
                                                                    "<dd"))
_KEY_TAGS = frozenset(b"NTFiIfcsb")
_INT_TAGS = frozenset(b"iI")
_CONTAINERS = {ord("t"): tuple, ord("l"): list, ord("d"): dict}
_NO_KEY = object()  # a dict being read waits for a key, not a value


# -- writing -------------------------------------------------------------------------------

def dumps(kind: bytes, value: Any) -> bytes:
    """``value`` as a payload of ``kind``; TypeError or ValueError for what
    the format cannot hold (the reader would refuse it)."""
    out = bytearray(_HEADER.pack(MAGIC, kind, VERSION))
    count = [0]
    _write(out, value, 0, count)
    return bytes(out)


def _write(out: bytearray, v: Any, depth: int, count: list[int]) -> None:
    count[0] += 1
    if count[0] > MAX_ITEMS:
        raise ValueError(f"cannot save more than {MAX_ITEMS} values in one payload")
    kind = type(v)
    if v is None:
        out += b"N"
    elif kind is bool:
        out += b"T" if v else b"F"
    elif kind is int:
        _write_int(out, v)
    elif kind is float:
        out += b"f" + _F64.pack(v)
    elif kind is complex:
        out += b"c" + _C128.pack(v.real, v.imag)
    elif kind is str:
        _write_bytes(out, b"s", v.encode("utf-8", "surrogatepass"))
    elif kind is bytes:
        _write_bytes(out, b"b", v)
    elif kind in (tuple, list, dict):
        if depth >= MAX_DEPTH:
            raise ValueError(f"cannot save values nested more than {MAX_DEPTH} deep")
        out += {tuple: b"t", list: b"l", dict: b"d"}[kind] + _U32.pack(len(v))
        if kind is dict:
            for key, item in v.items():
                if key is not None and type(key) not in (bool, int, float, complex, str, bytes):
                    raise TypeError(f"cannot save a dict keyed by a {type(key).__name__}")
                _write(out, key, depth + 1, count)
                _write(out, item, depth + 1, count)
        else:
            for item in v:
                _write(out, item, depth + 1, count)
    elif kind is slice:
        out += b":"
        for bound in (v.start, v.stop, v.step):
            count[0] += 1
            if bound is None:
                out += b"N"
            else:
                _write_int(out, operator.index(bound))
    elif kind is np.ndarray:
        code = _code_of(v.dtype)
        data = np.ascontiguousarray(v).astype(_LITTLE[code], copy=False).tobytes()
        if v.ndim > MAX_NDIM:
            raise ValueError(f"cannot save an array of more than {MAX_NDIM} dimensions")
        out += b"a" + bytes((code, v.ndim))
        out += b"".join(_U64.pack(d) for d in v.shape) + _U64.pack(len(data)) + data
    elif isinstance(v, np.generic):
        code = _code_of(v.dtype)
        out += b"g" + bytes((code,)) + np.asarray(v).astype(_LITTLE[code]).tobytes()
    elif isinstance(v, np.dtype):
        out += b"y" + bytes((_code_of(v),))
    else:
        raise TypeError(f"cannot save a {kind.__name__}: a saved function holds only plain data "
                        "(None, bool, int, float, complex, str, bytes, tuple, list, dict, slice) "
                        "and numbers or arrays of a numeric NumPy dtype")


def _write_int(out: bytearray, v: int) -> None:
    if -(1 << 63) <= v < (1 << 63):
        out += b"i" + _I64.pack(v)
        return
    bits = (v if v >= 0 else ~v).bit_length() + 1  # with the sign bit
    data = v.to_bytes((bits + 7) // 8, "little", signed=True)
    if len(data) > MAX_BIGINT_BYTES:
        raise ValueError(f"cannot save an int of more than {8 * MAX_BIGINT_BYTES} bits")
    _write_bytes(out, b"I", data)


def _write_bytes(out: bytearray, tag: bytes, data: bytes) -> None:
    if len(data) >= 1 << 32:
        raise ValueError("cannot save a string or bytes of 4 GiB or more")
    out += tag + _U32.pack(len(data)) + data


def _code_of(dtype: np.dtype) -> int:
    code = _CODE.get(dtype.newbyteorder("="))  # equal only to a plain number dtype
    if code is None:
        raise TypeError(f"cannot save NumPy data of dtype {dtype}: only "
                        f"{', '.join(dt.name for dt in DTYPES)}")
    return code


# -- reading -------------------------------------------------------------------------------

def loads(data: bytes, kind: bytes) -> Any:
    """The value of a payload of ``kind``; TapeError for anything else."""
    if not isinstance(data, bytes):
        raise TapeError(f"a saved payload must be bytes, not {type(data).__name__}")
    what = "compiled function" if kind == FUNCTION else "tape"
    if len(data) < _HEADER.size or data[:len(MAGIC)] != MAGIC:
        if data[:1] == b"\x80":  # the pickle protocol marker of earlier versions' payloads
            raise TapeError(f"this {what} was saved by an older fastad (a pickle), which this "
                            "version no longer reads: save it again with this version")
        raise TapeError(f"not a saved fastad {what}")
    _, found, version = _HEADER.unpack_from(data)
    if found != kind:
        held = {FUNCTION: "a compiled function", TAPE: "a tape"}.get(found, "an unknown kind")
        raise TapeError(f"this fastad payload holds {held}, not a {what}")
    if version != VERSION:
        raise TapeError(f"this {what} was saved in format version {version}; this fastad reads "
                        f"version {VERSION}")
    reader = _Reader(data, _HEADER.size)
    value = reader.value()
    if reader.pos != len(data):
        raise TapeError(f"{len(data) - reader.pos} bytes follow the end of the saved {what}")
    return value


class _Reader:
    """Reads values from ``data`` at ``pos``, checking every size first."""

    __slots__ = ("data", "pos", "items")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos, self.items = data, pos, 0

    def fail(self, message: str) -> TapeError:
        return TapeError(f"invalid saved payload at byte {self.pos}: {message}")

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise self.fail(f"{n} bytes declared, {self.left()} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: struct.Struct) -> Any:
        if fmt.size > self.left():
            raise self.fail(f"{fmt.size} bytes needed, {self.left()} left")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values[0] if len(values) == 1 else values

    def tag(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("the payload ends where a value should start")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise self.fail(f"more than {MAX_ITEMS} values")
        self.pos += 1
        return self.data[self.pos - 1]

    def value(self) -> Any:
        """One value; containers are filled from an explicit stack of
        ``[container, items still to read, tag, pending dict key]``."""
        stack: list[list[Any]] = []
        while True:
            wants_key = bool(stack) and stack[-1][2] == ord("d") and stack[-1][3] is _NO_KEY
            tag = self.tag()
            if wants_key and tag not in _KEY_TAGS:
                raise self.fail(f"a dict key of tag {chr(tag)!r}: keys are plain scalars")
            if tag in _CONTAINERS:
                count = self.unpack(_U32)
                per_item = 2 if tag == ord("d") else 1  # each value is at least its tag byte
                if count * per_item > self.left():
                    raise self.fail(f"{count} items declared, {self.left()} bytes left")
                if count:
                    if len(stack) >= MAX_DEPTH:
                        raise self.fail(f"containers nested more than {MAX_DEPTH} deep")
                    stack.append([{} if tag == ord("d") else [], count, tag, _NO_KEY])
                    continue
                value: Any = _CONTAINERS[tag]()
            else:
                value = self.scalar(tag)
            while stack:  # put the value into its container; close the full ones
                frame = stack[-1]
                items = frame[0]
                if frame[2] == ord("d"):
                    if frame[3] is _NO_KEY:
                        frame[3] = value
                        break
                    if frame[3] in items:
                        raise self.fail(f"the dict key {frame[3]!r} appears twice")
                    items[frame[3]] = value
                    frame[3] = _NO_KEY
                else:
                    items.append(value)
                frame[1] -= 1
                if frame[1]:
                    break
                stack.pop()
                value = tuple(items) if frame[2] == ord("t") else items
            else:
                return value

    def scalar(self, tag: int) -> Any:
        if tag == ord("N"):
            return None
        if tag == ord("T"):
            return True
        if tag == ord("F"):
            return False
        if tag == ord("i"):
            return self.unpack(_I64)
        if tag == ord("I"):
            n = self.unpack(_U32)
            if not 0 < n <= MAX_BIGINT_BYTES:
                raise self.fail(f"an int of {n} bytes (at most {MAX_BIGINT_BYTES})")
            return int.from_bytes(self.take(n), "little", signed=True)
        if tag == ord("f"):
            return self.unpack(_F64)
        if tag == ord("c"):
            return complex(*self.unpack(_C128))
        if tag == ord("s"):
            raw = self.take(self.unpack(_U32))
            try:
                return raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise self.fail("a string that is not UTF-8") from None
        if tag == ord("b"):
            return self.take(self.unpack(_U32))
        if tag == ord(":"):
            return slice(*(self.slice_bound() for _ in range(3)))
        if tag == ord("y"):
            return DTYPES[self.dtype_code()]
        if tag == ord("g"):
            code = self.dtype_code()
            return self.array(code, (), DTYPES[code].itemsize)[()]
        if tag == ord("a"):
            return self.array_value()
        raise self.fail(f"unknown tag {tag:#04x}")

    def slice_bound(self) -> Any:
        tag = self.tag()
        if tag != ord("N") and tag not in _INT_TAGS:
            raise self.fail(f"a slice bound of tag {chr(tag)!r}: bounds are None or ints")
        return self.scalar(tag)

    def dtype_code(self) -> int:
        code = self.unpack(_U8)
        if code >= len(DTYPES):
            raise self.fail(f"unknown dtype code {code}")
        return code

    def array_value(self) -> np.ndarray:
        code = self.dtype_code()
        ndim = self.unpack(_U8)
        if ndim > MAX_NDIM:
            raise self.fail(f"an array of {ndim} dimensions (at most {MAX_NDIM})")
        if 8 * ndim > self.left():
            raise self.fail(f"{ndim} dimensions declared, {self.left()} bytes left")
        shape = tuple(self.unpack(_U64) for _ in range(ndim))
        nbytes = self.unpack(_U64)
        if math.prod(max(d, 1) for d in shape) * DTYPES[code].itemsize >= 1 << 62:
            raise self.fail(f"an array of shape {shape}: too large for any machine")
        if nbytes != math.prod(shape) * DTYPES[code].itemsize:
            raise self.fail(f"an array of shape {shape} and dtype {DTYPES[code]} declares "
                            f"{nbytes} bytes")
        return self.array(code, shape, nbytes)

    def array(self, code: int, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
        """An array that owns a native-order copy of the next ``nbytes`` bytes
        (a view would keep the whole payload alive)."""
        raw = self.take(nbytes)  # checked against what is left before anything is built
        if DTYPES[code].kind == "b":  # any nonzero byte is True; NumPy's bools are 0 or 1
            flat = np.frombuffer(raw, dtype=np.uint8) != 0
        else:
            flat = np.frombuffer(raw, dtype=_LITTLE[code]).astype(DTYPES[code])
        return flat.reshape(shape)
