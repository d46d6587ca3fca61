"""Memory planning for the C VM: where each value lives in the arena.

Every slot of a tape lives at a byte offset of one arena.  Constants come
first, written once when an arena is created; everything else is placed by
the linear-scan `ArenaPlanner` as lowering walks the tape: a buffer is
allocated when its slot is defined and released after its last use, so
slots whose lifetimes do not overlap share space.  A `Ref` names a place in
a buffer (an alias is a Ref into another slot's buffer); buffers get their
final byte addresses when the program is finished (`lower._Lowerer.finish`).

An input read in place (`bound`) is a buffer outside the arena: the caller's
array, which the program only reads.  It gets a segment past the arena's
end (csrc/vm.h), never planner space, and is never updated in place.  An
output's buffer is moved to such a segment once the program is complete
(`written`): the VM writes the result into the array the call returns.  Its
planner space stays in the arena but is never touched, so it costs no memory.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple

from .vm_header import ARENA_ALIGN

END = 1 << 62  # "used after the last instruction": program outputs


class Ref(NamedTuple):
    """A place in the arena: ``offset`` bytes into buffer ``buf``."""
    buf: int
    offset: int


@dataclass
class _Buffer:
    nbytes: int
    last_use: int
    const: bool
    addr: int = -1
    freed: bool = False
    bound: bool = False    # in a segment past the arena: a caller's array
    written: bool = False  # bound: an output, else an input (read only)

    @property
    def readonly(self) -> bool:
        """Never written, never released: a constant or a bound input."""
        return self.const or (self.bound and not self.written)


class ArenaPlanner:
    """First-fit allocation over a free list of byte ranges, coalescing on
    release; `top` is the high-water mark (the arena size)."""

    def __init__(self) -> None:
        self.starts: list[int] = []  # free blocks, sorted by start
        self.ends: list[int] = []
        self.top = 0

    def alloc(self, nbytes: int) -> int:
        nbytes = _round_up(max(nbytes, 1), 8)
        align = ARENA_ALIGN if nbytes >= ARENA_ALIGN else 8
        for i, (start, end) in enumerate(zip(self.starts, self.ends)):
            at = _round_up(start, align)
            if at + nbytes <= end or (end == self.top and i == len(self.starts) - 1):
                self._take(i, at, nbytes)
                return at
        at = _round_up(self.top, align)
        self.top = at + nbytes
        return at

    def _take(self, i: int, at: int, nbytes: int) -> None:
        start, end = self.starts[i], self.ends[i]
        del self.starts[i], self.ends[i]
        if end < at + nbytes:  # the last block grows the arena
            self.top = at + nbytes
        elif at + nbytes < end:
            self._insert(at + nbytes, end)
        if start < at:
            self._insert(start, at)

    def _insert(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)

    def release(self, at: int, nbytes: int) -> None:
        start, end = at, at + _round_up(max(nbytes, 1), 8)
        i = bisect.bisect_left(self.starts, start)
        if i > 0 and self.ends[i - 1] == start:  # merge with the block before
            i -= 1
            start = self.starts[i]
            del self.starts[i], self.ends[i]
        if i < len(self.starts) and self.starts[i] == end:  # and the one after
            end = self.ends[i]
            del self.starts[i], self.ends[i]
        self._insert(start, end)


def _round_up(n: int, k: int) -> int:
    return (n + k - 1) // k * k
