"""Per-render resource limits for chat templates: wall time and output size.

A chat template is code. A hostile or broken one can loop for minutes (nested loops),
build gigabytes in one operation (``"x" * 10**10``) or grow a string by doubling. jinja2's
sandbox stops attribute escapes and caps ``range()`` at 100,000 items (``MAX_RANGE``), but
not time or memory. :class:`RenderLimits` adds both, per render call:

* **size** (``max_chars``, characters): the output is streamed (``Template.generate``) and
  counted; operations that would build a large value in one step are checked *before*
  they run: ``*`` (sequence repetition), ``**`` (huge integers), ``+`` and ``~`` (string
  concatenation), ``%``, ``str.format``/``format_map`` and the ``format`` filter (the
  result's length from the format string and the arguments' sizes, :mod:`sftdata.masking.format_size`),
  ``center``/``ljust``/``rjust``/``zfill``/``expandtabs``/``replace``/``join`` and the
  ``center``/``indent``/``replace``/``join`` filters;
* **time** (``seconds``, wall clock): a watchdog thread (one per process) raises
  :class:`RenderTimeout` asynchronously in the rendering thread when its deadline passes
  (``PyThreadState_SetAsyncExc``, delivered between Python bytecodes: the compiled template
  is Python code, so any loop in it is interruptible).

Either limit turns into ``RowError(render_limit)`` for the row (see
:meth:`sftdata.masking.template.ChatTemplate.render`). Residual risk, stated plainly: a single C
call not covered above that allocates a huge value before returning cannot be interrupted.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import jinja2
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter

from .format_size import TooBig, Unknown, format_size, percent_size, str_size
from .render_split import BaseSlice, common_prefix_chars


@dataclass(frozen=True)
class RenderLimits:
    """Limits of one render call.

    Attributes:
        seconds: wall-clock limit per render, seconds (``None``: none).
        max_chars: output size limit per render, characters (``None``: none); also the
            largest value one template operation may build.
    """

    seconds: float | None = 10.0
    max_chars: int | None = 16_000_000

    def __post_init__(self) -> None:
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"render time limit must be positive, got {self.seconds}")
        if self.max_chars is not None and self.max_chars < 1:
            raise ValueError(f"render size limit must be positive, got {self.max_chars}")


DEFAULT_LIMITS = RenderLimits()


class RenderLimitExceeded(Exception):
    """A render went over a :class:`RenderLimits` limit (message says which)."""


class RenderTimeout(BaseException):
    """Raised asynchronously in a thread whose render deadline passed.

    A ``BaseException`` so that no ``except Exception`` inside jinja or a filter swallows it.
    """


class _Watchdog:
    """One daemon thread per process enforcing render deadlines (re-created after fork).

    Registering a deadline only takes a lock (no wake-up of the watchdog, no thread switch per
    render); the watchdog polls every :data:`_POLL` seconds, so a render is stopped at most that
    much after its deadline."""

    def __init__(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}
        self._thread: threading.Thread | None = None

    def ensure(self) -> None:
        """Start the thread in this process if it is not running (first use, or after a fork:
        a child process has no copy of its parent's threads)."""
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            self._lock = threading.Lock()  # a fork may have copied a held lock
            self._deadlines = {}
            self._thread = threading.Thread(target=self._run, args=(self._lock, self._deadlines), name="sftdata-render-watchdog", daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    @staticmethod
    def _run(lock: threading.Lock, deadlines: dict[int, float]) -> None:
        while True:  # never leaves: renders check only that the thread was started in this process
            time.sleep(_POLL)
            now = time.monotonic()
            with lock:
                for tid, when in list(deadlines.items()):
                    if when <= now:
                        del deadlines[tid]  # under the lock: the thread is still inside its render
                        try:
                            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(RenderTimeout))
                        except Exception:  # noqa: BLE001 - keep enforcing the other deadlines
                            pass


#: How often the watchdog looks at the deadlines (seconds): the most a render overruns its limit.
_POLL = 0.05


_WATCHDOG = _Watchdog()


def _forget_watchdog_thread() -> None:
    """In a forked child: the parent's watchdog thread was not copied; the next render starts one."""
    _WATCHDOG._thread = None  # noqa: SLF001 - the module's own watchdog


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork, and ensure() also compares pids
    os.register_at_fork(after_in_child=_forget_watchdog_thread)


class time_limit:  # noqa: N801 - used as a function: ``with time_limit(seconds):``
    """Raise :class:`RenderLimitExceeded` if the block runs longer than ``seconds`` (``None``: no
    limit). A context manager object, not a generator: it is entered once per render.

    The thread is the watchdog's to stop (:class:`RenderTimeout` raised in it asynchronously)
    from entering the block until its deadline is removed on leaving it, under the watchdog's lock.
    """

    __slots__ = ("seconds", "_held")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._held: tuple | None = None

    def __enter__(self) -> None:
        if self.seconds is None:
            return
        w = _WATCHDOG
        if w._thread is None:  # noqa: SLF001 - the module's own watchdog (None again after a fork)
            w.ensure()
        lock, deadlines, tid = w._lock, w._deadlines, threading.get_ident()  # noqa: SLF001
        with lock:
            deadlines[tid] = time.monotonic() + self.seconds
        self._held = (lock, deadlines, tid)

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        held = self._held
        if held is not None:
            self._held = None
            lock, deadlines, tid = held
            with lock:
                deadlines.pop(tid, None)
        if kind is RenderTimeout:
            raise RenderLimitExceeded(timeout_message(self.seconds)) from None
        return False


def timeout_message(seconds: float | None) -> str:
    """The message of a render stopped by its time limit."""
    return f"rendering took longer than {seconds:g} s (render time limit)"


def collect(pieces: Iterator[Any], max_chars: int | None) -> str:
    """Join streamed output pieces (strings, or :class:`~sftdata.masking.render_split.BaseSlice`
    from the render memo), stopping once more than ``max_chars`` characters came."""
    out: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        if max_chars is not None and total > max_chars:
            raise RenderLimitExceeded(f"the rendering exceeds {max_chars:,} characters (render size limit)")
        out.append(piece.materialize() if type(piece) is BaseSlice else piece)
    return "".join(out)


def collect_split(pieces: Iterator[Any], max_chars: int | None, base: str) -> tuple[int, str]:
    """Streamed output pieces as ``(shared, tail)``: the text is ``base[:shared] + tail`` and
    ``shared`` is its longest common prefix with ``base``.

    A :class:`~sftdata.masking.render_split.BaseSlice` of ``base`` that starts where the text so
    far still equals ``base`` extends ``shared`` without being read; every other piece is compared
    with ``base`` (O(its length)) until the text leaves ``base``, then kept in the tail. Stops once
    more than ``max_chars`` characters came, as :func:`collect`.

    Raises:
        RenderLimitExceeded: the size limit.
    """
    pos = total = 0
    tail: list[str] | None = None  # None while the text equals base[:pos]
    for piece in pieces:
        total += len(piece)
        if max_chars is not None and total > max_chars:
            raise RenderLimitExceeded(f"the rendering exceeds {max_chars:,} characters (render size limit)")
        if type(piece) is BaseSlice:
            if tail is None and piece.text is base and piece.start == pos:
                pos = piece.stop
                continue
            piece = piece.materialize()
        if tail is not None:
            tail.append(piece)
        elif base.startswith(piece, pos):
            pos += len(piece)
        else:
            same = common_prefix_chars(piece, base[pos : pos + len(piece)])
            pos += same
            tail = [piece[same:]]
    return pos, "".join(tail) if tail is not None else ""


def _too_big(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise RenderLimitExceeded(f"{what} would build {n:,} items, over the render size limit of {limit:,}")


def check_percent(fmt: Any, args: Any, limit: int, what: str = "'%'") -> None:
    """Refuse ``fmt % args`` (and the ``format`` filter) when its result would exceed ``limit``
    characters; a formatting that raises is left to raise its own error."""
    if not isinstance(fmt, str):
        return
    try:
        percent_size(fmt, args, limit)
    except TooBig:
        raise RenderLimitExceeded(f"{what} formatting would build more than {limit:,} characters (render size limit)") from None
    except Unknown:
        pass


_FORMATTER: list[SandboxedFormatter] = []


def check_str_format(fmt: str, name: str, args: tuple, kwargs: dict, limit: int, formatter: SandboxedFormatter | None = None) -> None:
    """Refuse ``fmt.format(*args, **kwargs)`` / ``fmt.format_map(mapping)`` when its result
    would exceed ``limit`` characters. ``formatter`` resolves field names as the sandbox does
    (default: a ``SandboxedFormatter`` of its own)."""
    if name == "format_map":
        if kwargs or len(args) != 1:
            return  # the real call raises TypeError
        args, kwargs = (), args[0]
    if formatter is None:
        if not _FORMATTER:
            _FORMATTER.append(SandboxedFormatter(ImmutableSandboxedEnvironment()))
        formatter = _FORMATTER[0]
    try:
        format_size(fmt, args, kwargs, limit, formatter)
    except TooBig:
        raise RenderLimitExceeded(f"str.{name} would build more than {limit:,} characters (render size limit)") from None
    except Unknown:
        pass


def _replace_size(s: str, old: str, new: str) -> int:
    """Length of ``s.replace(old, new)`` (an empty ``old`` inserts ``new`` around every character)."""
    count = s.count(old) if old else len(s) + 1
    return len(s) + count * len(new)


def _join_size(items: list | tuple, sep: str) -> int:
    """Length of ``sep.join(items)`` (counting the string items)."""
    return sum(len(x) for x in items if isinstance(x, str)) + len(sep) * max(len(items) - 1, 0)


def _size(x: Any) -> int | None:
    return len(x) if isinstance(x, (str, list, tuple)) else None


def check_binop(operator: str, left: Any, right: Any, limit: int) -> None:
    """Refuse ``left <operator> right`` when its result would exceed ``limit`` items."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            size = _size(seq)
            if size is not None and isinstance(n, int) and not isinstance(n, bool) and n > 0:
                _too_big(size * n, limit, "'*'")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            digits = right * math.log10(abs(left))
            if digits > limit:
                _too_big(int(min(digits, 1e18)), limit, "'**' (decimal digits)")
    elif operator == "+":
        a, b = _size(left), _size(right)
        if a is not None and b is not None:
            _too_big(a + b, limit, "'+'")
    elif operator == "%":
        check_percent(left, right, limit)


_STR_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def check_call(obj: Any, args: tuple, kwargs: dict, limit: int, formatter: SandboxedFormatter | None = None) -> None:
    """Refuse string method calls that would build more than ``limit`` characters
    (``formatter``: see :func:`check_str_format`)."""
    fn = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner = getattr(fn, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(fn, "__name__", "")
    if "_loop_vars" in kwargs or "_block_vars" in kwargs:  # jinja's own, dropped by Context.call
        kwargs = {k: v for k, v in kwargs.items() if k not in ("_loop_vars", "_block_vars")}
    values = list(args) + list(kwargs.values())
    if name in _STR_WIDTH_METHODS:
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                _too_big(v, limit, f"str.{name}")
    elif name in ("format", "format_map"):
        check_str_format(owner, name, args, kwargs, limit, formatter)
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _too_big(_replace_size(owner, args[0], args[1]), limit, "str.replace")
    elif name == "join" and args and isinstance(args[0], (list, tuple)):
        _too_big(_join_size(args[0], owner), limit, "str.join")


def limited_filters(filters: dict, limit_of: Callable[[], int | None]) -> dict:
    """Wrap the size-making filters (``center``, ``indent``, ``format``, ``replace``, ``join``)."""
    wrapped = ("center", "indent", "format", "replace", "join")

    def wrap(name: str, fn: Callable) -> Callable:
        def checked(*args: Any, **kwargs: Any) -> Any:
            limit = limit_of()
            if limit is not None:
                plain = [a for a in args if not isinstance(a, (jinja2.runtime.Context, jinja2.nodes.EvalContext))]
                value = plain[0] if plain else None
                rest = plain[1:] + list(kwargs.values())
                if name in ("center", "indent"):
                    for v in rest:
                        if isinstance(v, int) and not isinstance(v, bool):
                            lines = str(value).count("\n") + 1 if name == "indent" else 1
                            _too_big(v * lines, limit, f"the {name} filter")
                elif name == "format":  # do_format: str(value) % (kwargs or args)
                    fmt = value
                    if not isinstance(value, str) and value is not None:
                        try:
                            str_size(value, limit)
                        except TooBig:
                            raise RenderLimitExceeded(f"the format filter's value is over {limit:,} characters as text (render size limit)") from None
                        except Unknown:
                            pass
                        else:
                            fmt = str(value)
                    check_percent(fmt, kwargs or tuple(plain[1:]), limit, "the format filter's")
                elif name == "join" and isinstance(value, (list, tuple)):
                    sep = rest[0] if rest and isinstance(rest[0], str) else ""
                    _too_big(_join_size(value, sep), limit, "the join filter")
                elif name == "replace" and isinstance(value, str) and len(rest) >= 2 and isinstance(rest[0], str) and isinstance(rest[1], str):
                    _too_big(_replace_size(value, rest[0], rest[1]), limit, "the replace filter")
            return fn(*args, **kwargs)

        for attr in ("jinja_pass_arg",):  # keep jinja's context/eval-context markers
            if hasattr(fn, attr):
                setattr(checked, attr, getattr(fn, attr))
        return checked

    return {name: wrap(name, fn) if name in wrapped else fn for name, fn in filters.items()}


class LimitedCodeGenerator(CodeGenerator):
    """Compiles ``a ~ b`` (concatenation) through ``environment.checked_size``."""

    def visit_Concat(self, node: Any, frame: Any) -> None:  # noqa: N802 - jinja's visitor name
        """Write ``a ~ b ~ ...`` wrapped in ``environment.checked_size(...)`` (raises when the result is over the limit)."""
        self.write("environment.checked_size(")
        super().visit_Concat(node, frame)
        self.write(")")
