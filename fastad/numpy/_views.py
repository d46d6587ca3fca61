"""NumPy's shared memory, on traced values (docs/design.md, "Views are copies
kept consistent"): which traced values are views of which, and how a write
into one reaches the others."""
from __future__ import annotations

import builtins
import functools
import math
import warnings
import weakref
from typing import Any

import numpy as _np

from ..core.tracer import ArrayTracer, Tracer
from ._base import iscomplexobj, shape
from ._elementwise import imag, real
from ._shape import scatter_set, take_flat

__all__ = ["shares_memory", "may_share_memory"]


# Every traced value holds its own copy of its elements.  An operation whose
# NumPy result is a view of its input (a basic slice, reshape, .T, the real or
# imaginary part of a complex array, the parts of split, ...) records how it
# was made (`_link`), and fastad keeps the two consistent as NumPy's shared
# memory would: a write through any of them is written into the array that
# owns the memory (the root) and refreshes the views of it still alive.
#
# Which elements of the root a view holds, whether it is a view at all (NumPy's
# x.T.reshape(-1) is a copy) and whether it may be written (broadcast_to's
# result may not) are NumPy's own answers: the same operation applied to the
# parent's *shadow*, the root's flat positions np.arange(root.size) in the
# root's shape, gives the view's shadow; it shares the root shadow's memory
# exactly when NumPy's result is a view, and its flags say whether it is
# writeable.  Shadows are computed only when something is written into a
# family of arrays with views alive, and cached.
class _View:
    """How a traced value was made from ``parent``: ``make`` maps the parent's
    shadow to its own.  ``part``: "real" or "imag" for a part of a complex
    array.  Once resolved, ``shadow`` holds the positions in the root; a copy
    has ``parent`` None (it owns its memory), and may still be read-only."""

    __slots__ = ("parent", "make", "part", "shadow", "writeable")

    def __init__(self, parent: Any, make: Any, part: str | None = None) -> None:
        self.parent, self.make, self.part = parent, make, part
        self.shadow: Any = None
        self.writeable = True


def _link(base: Any, out: Any, make: Any, part: str | None = None) -> Any:
    """out, recorded as made from base by ``make`` (a NumPy view of it, if the
    shadow says so).  0-d traced values are immutable, like NumPy scalars: their
    views are copies, unless they are themselves views (``x[0, ...]``)."""
    if not isinstance(out, Tracer) or not isinstance(base, Tracer) \
            or out.builder is not base.builder:
        return out
    if type(base) is not ArrayTracer:
        link = getattr(base, "view_of", None)
        if link is None or link.parent is None:  # a scalar, not a 0-d view (x[0, ...])
            if type(out) is ArrayTracer:
                _copy_of_scalar(out, make)
            return out
    if type(out) is not ArrayTracer and not isinstance(
            make(_np.broadcast_to(_np.zeros(()), shape(base))), _np.ndarray):
        return out  # NumPy gives a scalar (unstack of a vector): immutable, a copy
    if out is base:
        out = base.builder.tracer(out.slot)  # a view is a new object, as in NumPy
    out.view_of = _View(base, make, part)  # (replacing a link fastad's code made)
    ref = weakref.ref(out)
    views = getattr(base, "views", None)
    if views is None:
        base.views = [ref]
    else:
        views.append(ref)
        if not len(views) & 255:  # views made in a loop and dropped: forget the dead
            views[:] = [r for r in views if r() is not None]
    return out


def _copy_of_scalar(out: ArrayTracer, make: Any) -> None:
    """out, made from a 0-d traced value (immutable, like a NumPy scalar), is a
    copy; but NumPy makes broadcast_to's read-only even then."""
    try:
        s = make(_root_shadow((), False))
    except Exception:  # fastad allowed what NumPy refuses: its own choice
        return
    if isinstance(s, _np.ndarray) and not _writeable(s):
        link = out.view_of = _View(None, None)
        link.writeable = False


def _writeable(s: _np.ndarray) -> bool:
    """Whether NumPy lets a view with shadow s be written.  A view repeating
    elements (broadcast_arrays' results) is not written either: NumPy
    deprecates it, and which write of a repeated element wins is ambiguous."""
    with warnings.catch_warnings():  # broadcast_arrays' FutureWarning
        warnings.simplefilter("ignore", FutureWarning)
        return bool(s.flags.writeable) and not builtins.any(
            st == 0 and d > 1 for st, d in zip(s.strides, s.shape))


@functools.lru_cache(maxsize=64)
def _root_shadow(shp: tuple[int, ...], complex_: bool) -> _np.ndarray:
    """The flat positions in shape shp.  A complex array's are complex (p + pj):
    NumPy's real and imag of it are then views with the strides of the parts
    of a complex array, whose values are still the positions."""
    p = _np.arange(math.prod(shp), dtype=_np.intp).reshape(shp)
    return p + p * 1j if complex_ else p


def _pos(s: _np.ndarray) -> _np.ndarray:
    """A shadow's values as integer positions."""
    return s if s.dtype.kind in "iu" else s.real.astype(_np.intp)


def _owner(s: Any) -> Any:
    """The object at the end of s's chain of bases (as_strided's goes through
    a non-array holder)."""
    base = getattr(s, "base", None)
    while base is not None:
        s, base = base, getattr(base, "base", None)
    return s


def _is_view(s: Any, of: _np.ndarray) -> bool:
    """Whether NumPy's result s shares memory with the shadow ``of``."""
    return isinstance(s, _np.ndarray) and (
        _owner(s) is _owner(of) or (s.size > 0 and _np.shares_memory(s, of)))


def _shadow(t: Any) -> _np.ndarray | None:
    """The positions of t's elements in the array that owns their memory, as
    NumPy would lay them out; None when t owns its memory."""
    link = getattr(t, "view_of", None)
    if link is None or link.parent is None:
        return None
    if link.shadow is None:
        chain = [t]  # the views from t up to one resolved, or to the owner
        parent = link.parent
        while True:
            plink = getattr(parent, "view_of", None)
            if plink is None or plink.parent is None or plink.shadow is not None:
                break
            chain.append(parent)
            parent = plink.parent
        for view in reversed(chain):  # from the owner down: no recursion
            _resolve(view.view_of)
    return link.shadow


def _resolve(link: _View) -> None:
    """Apply link's operation to its parent's shadow (already resolved)."""
    parent = link.parent
    plink = getattr(parent, "view_of", None)
    ps = plink.shadow if plink is not None and plink.parent is not None else None
    if ps is None and type(parent) is not ArrayTracer:
        link.parent = link.make = None  # made from a 0-d copy: a NumPy scalar's are copies
        return
    if ps is None:
        ps = _root_shadow(tuple(shape(parent)), iscomplexobj(parent))
        if plink is not None and not plink.writeable:
            ps = ps.view()
            ps.flags.writeable = False
    try:
        s = link.make(ps)
    except Exception:  # NumPy refuses what fastad allowed (a choice of its own): a copy
        s = None
    if _is_view(s, ps):
        link.shadow = s
        link.writeable = _writeable(s)
        if link.part is None and plink is not None and plink.parent is not None:
            link.part = plink.part
        return
    # NumPy's result is new memory: the value owns its elements from now on
    link.parent = link.make = None
    link.writeable = bool(s.flags.writeable) if isinstance(s, _np.ndarray) else True


def _root(t: Any) -> Any:
    """The array owning t's memory (after `_shadow(t)` has resolved t's chain)."""
    link = getattr(t, "view_of", None)
    while link is not None and link.parent is not None:
        t = link.parent
        link = getattr(t, "view_of", None)
    return t


def _part(t: Any) -> str | None:
    link = getattr(t, "view_of", None)
    return link.part if link is not None and link.parent is not None else None


def _check_writeable(a: Any, message: str = "assignment destination is read-only") -> None:
    """Raise NumPy's ValueError if a is a read-only view (broadcast_to, diagonal, ...)."""
    link = getattr(a, "view_of", None)
    if link is not None:
        _shadow(a)
        if not link.writeable:
            raise ValueError(message)


def _rebind(a: Tracer, new: Tracer) -> None:
    a.builder, a.slot, a.value = new.builder, new.slot, new.value


def _in_part(part: str | None, value: Any, old: Any) -> Any:
    """The complex elements that result from writing value into their ``part``."""
    if part is None:
        return value
    if part == "real":
        return value + imag(old) * 1j
    return real(old) + value * 1j


def _of_part(part: str | None, value: Any) -> Any:
    if part is None:
        return value
    return real(value) if part == "real" else imag(value)


def _written(a: Tracer, positions: _np.ndarray | None) -> None:
    """a was just written at a.ravel()[positions] (None: everywhere): write
    it into the array owning its memory and refresh the views of that array
    which hold a written element."""
    link = getattr(a, "view_of", None)
    if link is None and not getattr(a, "views", None):
        return  # a owns its memory and no view of it was taken: nothing to do
    s = _shadow(a)
    if s is None:
        root, at = a, positions
    else:
        s = _pos(s)
        root = _root(a)
        if positions is None:
            at, value = s, a
        else:
            at, value = s.reshape(-1)[positions], take_flat(a, positions)
        old = take_flat(root, at) if link.part is not None else None
        _rebind(root, scatter_set(root, at, _in_part(link.part, value, old)))
        at = at.reshape(-1)
    _refresh(root, a, at)


def _refresh(root: Tracer, writer: Tracer, at: _np.ndarray | None) -> None:
    """Gather anew, from root, every live view of it (except writer, which is
    already up to date) holding one of the root's positions ``at`` (None: all)."""
    todo = [root]
    while todo:
        node = todo.pop()
        views = getattr(node, "views", None)
        if not views:
            continue
        live, seen = [], set()
        for ref in views:
            v = ref()
            if v is None or id(v) in seen:
                continue
            link = getattr(v, "view_of", None)
            if link is None or link.parent is not node:
                continue  # made a view of another array since
            sv = _shadow(v)
            if sv is None:
                continue  # a copy in NumPy: it owns its memory
            sv = _pos(sv)
            seen.add(id(v))
            live.append(ref)
            if v is not writer and sv.size and (at is None or _np.isin(sv, at).any()):
                _rebind(v, _of_part(link.part, take_flat(root, sv)))
            todo.append(v)
        node.views = live


def _memory(t: Any) -> tuple[Any, _np.ndarray, str | None]:
    """(owner, t's positions in it, part) of a traced value."""
    s = _shadow(t)
    if s is None:
        return t, _pos(_root_shadow(tuple(shape(t)), False)), None
    return _root(t), _pos(s), _part(t)


def shares_memory(a: Any, b: Any, max_work: Any = None) -> bool:
    """Whether NumPy's a and b would share memory: views of one array holding a
    common element.  A traced value shares none with a NumPy array (fastad never
    writes into its caller's arrays)."""
    if not (isinstance(a, Tracer) or isinstance(b, Tracer)):
        return _np.shares_memory(a, b, max_work)
    if not (isinstance(a, Tracer) and isinstance(b, Tracer)):
        return False
    (ra, pa, parta), (rb, pb, partb) = _memory(a), _memory(b)
    if ra is not rb or (parta is not None and partb is not None and parta != partb):
        return False
    return bool(_np.intersect1d(pa, pb).size)


def may_share_memory(a: Any, b: Any, max_work: Any = None) -> bool:
    if not (isinstance(a, Tracer) or isinstance(b, Tracer)):
        return _np.may_share_memory(a, b, max_work)
    return shares_memory(a, b)


def _base_property(self: Tracer) -> Any:
    """x.base: the array whose memory a view shows (None for an array that owns its own)."""
    if _shadow(self) is None:
        return None
    return _root(self)


def _same_memory(value: Any, a: Any, idx: _np.ndarray) -> bool:
    """Whether value is a live view of exactly a.ravel()[idx] (``a[k] = a[k]``)."""
    if getattr(value, "view_of", None) is None:
        return False
    sv = _shadow(value)
    if sv is None or _root(value) is not _root(a) or _part(value) != _part(a):
        return False
    sv, sa = _pos(sv), _shadow(a)
    sa = None if sa is None else _pos(sa)
    at = idx if sa is None else sa.reshape(-1)[idx.reshape(-1)].reshape(idx.shape)
    return sv.shape == at.shape and _np.array_equal(sv, at)


def _store(a: Any, new: Any, positions: _np.ndarray | None = None) -> None:
    """a (a traced array, checked writeable) takes the value new, which differs
    from a's at most at a.ravel()[positions] (None: anywhere)."""
    _rebind(a, new)
    _written(a, positions)
