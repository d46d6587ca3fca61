"""The tape: a flat, topologically ordered list of primitive instructions.

A tape is pure data.  Every value lives in a numbered *slot*; each slot has an
abstract value (shape, dtype).  Slots are defined exactly once: by being an
input, a constant, or the output of one instruction (SSA form).  Recording
order is a topological order, so running the instructions front to back
evaluates the function.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import wire
from .errors import TapeError


class Aval(NamedTuple):
    """Abstract value of a slot: what the compiled code knows about it."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # Python ints: a hostile shape cannot wrap around

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{_DTYPE_ABBREV.get(self.dtype.name, self.dtype.name)}[{dims}]"


_DTYPE_ABBREV = {"float64": "f64", "float32": "f32", "bool": "bool", "int64": "i64",
                 "complex128": "c128", "complex64": "c64"}


_new_aval = tuple.__new__
_scalar_avals: dict[type, Aval] = {}  # NumPy scalar type -> its Aval: most traced values


def aval_of(value: Any) -> Aval:
    if type(value) is np.ndarray:  # (tuple's constructor: NamedTuple's is Python code)
        return _new_aval(Aval, (value.shape, value.dtype))
    if isinstance(value, np.generic):
        aval = _scalar_avals.get(type(value))
        if aval is None:
            aval = _scalar_avals[type(value)] = Aval((), value.dtype)
        return aval
    if isinstance(value, np.ndarray):
        return Aval(value.shape, value.dtype)
    aval = _python_avals.get(type(value))  # a constant 0.5 or 1.0 of the user's code
    if aval is not None:
        return aval
    return Aval(tuple(np.shape(value)), np.result_type(value))


#: Python's scalar types whose dtype does not depend on the value (ints' may)
_python_avals = {float: Aval((), np.dtype(np.float64)), complex: Aval((), np.dtype(np.complex128)),
                 bool: Aval((), np.dtype(np.bool_))}


class SourcePos(NamedTuple):
    """Where in the user's code an instruction was recorded.  The line number is
    worked out only when someone asks: finding it costs more than recording."""

    code: Any  # a code object
    offset: int  # its bytecode offset (frame.f_lasti)

    def resolve(self) -> tuple[str, int]:
        return self.code.co_filename, _line_at(self.code, self.offset)


@functools.lru_cache(maxsize=1024)
def _line_table(code: Any) -> tuple[tuple[int, int, int | None], ...]:
    return tuple(code.co_lines())


def _line_at(code: Any, offset: int) -> int:
    for start, end, line in _line_table(code):
        if start <= offset < end and line is not None:
            return line
    return code.co_firstlineno


def where(line: "SourcePos | tuple[str, int] | None") -> str:
    """``file:line`` of an instruction's recorded source position."""
    if line is None:
        return "<unknown line>"
    file, lineno = line.resolve() if isinstance(line, SourcePos) else line
    return f"{file}:{lineno}"


class Instr(NamedTuple):
    """``out = prim(*ins, **params)``; ``line`` is the user's source position."""

    prim: str
    out: int
    ins: tuple[int, ...]
    params: tuple[tuple[str, Any], ...] = ()
    line: SourcePos | tuple[str, int] | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass
class Tape:
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    consts: dict[int, Any] = field(default_factory=dict)
    instrs: list[Instr] = field(default_factory=list)
    avals: list[Aval] = field(default_factory=list)
    # instruction counts after each stage of compilation, for stats()
    stages: dict[str, int] = field(default_factory=dict)
    # (instructions, bytes they compute) before and after optimize(), for stats()
    optimized_from: dict[str, dict[str, int]] = field(default_factory=dict)
    # what its trace recorded per instruction as it went (`core.tracer.RecordedColumns`),
    # read instead of the instructions (`transforms.tape_arrays`) while they
    # still describe them; not part of the tape's value
    recorded: Any = field(default=None, repr=False, compare=False)

    # -- construction -------------------------------------------------------
    def new_slot(self, aval: Aval) -> int:
        self.avals.append(aval)
        return len(self.avals) - 1

    # -- inspection ---------------------------------------------------------
    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for ins in self.instrs:
            counts[ins.prim] = counts.get(ins.prim, 0) + 1
        nbytes = sum(a.size * a.dtype.itemsize for a in self.avals)
        return {"instructions": len(self.instrs), "slots": len(self.avals),
                "slot_bytes": int(nbytes), "computed_bytes": self.computed_bytes(),
                "by_primitive": counts, "stages": dict(self.stages),
                "optimize": dict(self.optimized_from)}

    def computed_bytes(self) -> int:
        """Bytes the instructions write, one result each (before any fusion)."""
        return int(sum(self.avals[i.out].size * self.avals[i.out].dtype.itemsize
                       for i in self.instrs))

    def __str__(self) -> str:
        def name(s: int) -> str:
            return f"%{s}"

        out = io.StringIO()
        args = ", ".join(f"{name(s)}:{self.avals[s]}" for s in self.inputs)
        out.write(f"tape ({args}) {{\n")
        for s, v in sorted(self.consts.items()):
            text = np.array2string(np.asarray(v), threshold=6, precision=6).replace("\n", "")
            out.write(f"  {name(s)}:{self.avals[s]} = const {text}\n")
        for ins in self.instrs:
            params = "".join(f" {k}={_short(v)}" for k, v in ins.params)
            operands = " ".join(name(s) for s in ins.ins)
            comment = f"    # {where(ins.line)}" if ins.line else ""
            out.write(f"  {name(ins.out)}:{self.avals[ins.out]} = {ins.prim}{params} {operands}{comment}\n")
        out.write(f"  return {', '.join(name(s) for s in self.outputs)}\n}}")
        return out.getvalue()

    __repr__ = __str__

    # -- validation ---------------------------------------------------------
    def validate(self) -> None:
        """Check SSA form and operand ranges; raise TapeError on the first fault."""
        from .registry import registry
        from ..shapes import check_shapes

        n = len(self.avals)
        defined = np.zeros(n, dtype=bool)
        for s, aval in enumerate(self.avals):
            _check_aval(s, aval)

        def define(s: int, what: str) -> None:
            if not isinstance(s, (int, np.integer)) or not 0 <= s < n:
                raise TapeError(f"{what} refers to slot {s!r}, outside 0..{n - 1}")
            if defined[s]:
                raise TapeError(f"slot {s} is defined twice ({what})")
            defined[s] = True

        for s in self.inputs:
            define(s, "input")
        for s, v in self.consts.items():
            define(s, "constant")
            if not isinstance(v, (np.ndarray, np.generic, float, int, bool, complex)):
                raise TapeError(f"constant slot {s} holds a {type(v).__name__}")
            if aval_of(v).shape != self.avals[s].shape:
                raise TapeError(f"constant slot {s} has shape {np.shape(v)}, "
                                f"declared {self.avals[s].shape}")
            if isinstance(v, np.ndarray) and v.dtype != self.avals[s].dtype:
                raise TapeError(f"constant slot {s} has dtype {v.dtype}, "
                                f"declared {self.avals[s].dtype}")
        for k, ins in enumerate(self.instrs):
            if ins.prim not in registry:
                raise TapeError(f"instruction {k} uses unknown primitive {ins.prim!r}")
            for s in ins.ins:
                if not isinstance(s, (int, np.integer)) or not 0 <= s < n or not defined[s]:
                    raise TapeError(f"instruction {k} ({ins.prim}) reads slot {s!r} "
                                    "before it is defined")
            define(ins.out, f"instruction {k} ({ins.prim})")
        for s in self.outputs:
            if not isinstance(s, (int, np.integer)) or not 0 <= s < n or not defined[s]:
                raise TapeError(f"output slot {s!r} is never defined")
        check_shapes(self)

    # -- serialization ------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The tape in fastad's own payload format (`fastad.core.wire`)."""
        return wire.dumps(wire.TAPE, self._payload())

    def _payload(self) -> dict[str, Any]:
        return {
            "inputs": list(map(int, self.inputs)),
            "outputs": list(map(int, self.outputs)),
            "consts": {int(k): np.asarray(v) if isinstance(v, np.ndarray) else v
                       for k, v in self.consts.items()},
            "instrs": [(i.prim, int(i.out), tuple(map(int, i.ins)),
                        tuple((k, _param_to_wire(v)) for k, v in i.params),
                        i.line.resolve() if isinstance(i.line, SourcePos) else i.line)
                       for i in self.instrs],
            "avals": [(tuple(map(int, a.shape)), a.dtype) for a in self.avals],
        }

    @classmethod
    def from_bytes(cls, data: bytes) -> "Tape":
        """The tape ``to_bytes`` saved, validated; TapeError for any other bytes."""
        return cls._from_payload(wire.loads(data, wire.TAPE))

    @classmethod
    def _from_payload(cls, payload: Any) -> "Tape":
        if not isinstance(payload, dict) or sorted(payload) != sorted(_PAYLOAD_FIELDS):
            raise TapeError("a saved tape must hold exactly the fields "
                            f"{', '.join(_PAYLOAD_FIELDS)}")
        tape = cls(inputs=_ints(payload["inputs"], "inputs", list),
                   outputs=_ints(payload["outputs"], "outputs", list),
                   consts=_typed(payload["consts"], dict, "consts"),
                   instrs=[_instr(k, item) for k, item in
                           enumerate(_typed(payload["instrs"], list, "instrs"))],
                   avals=[_aval(s, item) for s, item in
                          enumerate(_typed(payload["avals"], list, "avals"))])
        if not all(type(s) is int for s in tape.consts):
            raise TapeError("a saved tape's constants must be keyed by slot numbers")
        try:
            tape.validate()
        except TapeError:
            raise
        except Exception as exc:  # a check tripped over data of a shape it never expects
            raise TapeError(f"invalid saved tape: {exc!r}") from None
        return tape


_PAYLOAD_FIELDS = ("inputs", "outputs", "consts", "instrs", "avals")

#: Parameter classes that hold a tape of their own (a loop's body), by the name
#: a payload gives them: each has ``tape`` and ``wire_fields()`` (plain data)
#: and is rebuilt as ``cls(tape, *fields)``.  The sub-tape is saved nested in
#: the same payload, so the wire format's nesting bound bounds loops in loops,
#: and it is validated like any loaded tape.  Filled by the modules declaring
#: them (`primitives.loops`).
SUBTAPE_PARAMS: dict[str, type] = {}
_SUBTAPE_MARK = "\x00sub-tape"


def _param_to_wire(value: Any) -> Any:
    for name, cls in SUBTAPE_PARAMS.items():
        if type(value) is cls:
            return (_SUBTAPE_MARK, name, value.tape._payload(), tuple(value.wire_fields()))
    return value


def _param_from_wire(value: Any) -> Any:
    if type(value) is not tuple or len(value) != 4 or value[0] != _SUBTAPE_MARK:
        return value
    _, name, payload, fields = value
    cls = SUBTAPE_PARAMS.get(name) if type(name) is str else None
    if cls is None or type(fields) is not tuple:
        raise TapeError(f"a saved tape holds an unknown sub-tape parameter {name!r}")
    try:
        return cls(Tape._from_payload(payload), *fields)
    except TapeError:
        raise
    except Exception as exc:
        raise TapeError(f"invalid saved sub-tape: {exc!r}") from None


def _typed(value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:
        raise TapeError(f"a saved tape's {what} must be a {kind.__name__}, "
                        f"not a {type(value).__name__}")
    return value


def _ints(value: Any, what: str, kind: type = tuple) -> Any:
    if type(value) is not kind or not all(type(s) is int for s in value):
        raise TapeError(f"a saved tape's {what} must be a {kind.__name__} of ints")
    return value


def _instr(k: int, item: Any) -> Instr:
    """Instruction ``k`` of a saved tape, its fields type-checked."""
    if type(item) is not tuple or len(item) != 5:
        raise TapeError(f"saved instruction {k} is not (primitive, out, ins, params, line)")
    prim, out, ins, params, line = item
    if type(prim) is not str or type(out) is not int:
        raise TapeError(f"saved instruction {k} has an invalid primitive or output slot")
    _ints(ins, f"instruction {k} operands")
    if type(params) is not tuple or not all(type(kv) is tuple and len(kv) == 2
                                            and type(kv[0]) is str for kv in params):
        raise TapeError(f"saved instruction {k} has invalid parameters")
    if line is not None and not (type(line) is tuple and len(line) == 2
                                 and type(line[0]) is str and type(line[1]) is int):
        raise TapeError(f"saved instruction {k} has an invalid source line")
    params = tuple((k, _param_from_wire(v)) for k, v in params)
    return Instr(prim, out, ins, params, line)


def _aval(slot: int, item: Any) -> Aval:
    if type(item) is not tuple or len(item) != 2 or not isinstance(item[1], np.dtype):
        raise TapeError(f"saved slot {slot} is not (shape, dtype)")
    return Aval(_ints(item[0], f"slot {slot} shape"), item[1])


#: what a slot may hold: the float and complex types, booleans and integer index arrays
_SLOT_KINDS = "fcbi"
_MAX_ITEMSIZE = {"c": 16}  # complex128; every other kind at most 8 bytes (no long double)
#: no slot may need more bytes than this (the C VM's arena limit)
MAX_SLOT_BYTES = 1 << 40
MAX_NDIM = 32


def _check_aval(slot: int, aval: Aval) -> None:
    """A slot's shape and dtype are sane before any size is computed from them."""
    shape, dtype = aval
    if not isinstance(dtype, np.dtype) or dtype.kind not in _SLOT_KINDS \
            or dtype.itemsize > _MAX_ITEMSIZE.get(dtype.kind, 8) or not dtype.isnative:
        raise TapeError(f"slot {slot} has unsupported dtype {dtype!r}")
    if not isinstance(shape, tuple) or len(shape) > MAX_NDIM or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
            for d in shape):
        raise TapeError(f"slot {slot} has an invalid shape {shape!r}")
    if math.prod(int(d) for d in shape) * dtype.itemsize > MAX_SLOT_BYTES:
        raise TapeError(f"slot {slot} of shape {shape} needs more than {MAX_SLOT_BYTES} bytes")


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"<{v.dtype.name}{list(v.shape)}>"
    return repr(v)
