"""Progress feedback for long operations (batches of fits, bootstrap, profiling, reading).

``progress(total=..., desc=...)`` returns a bar to ``update()`` from the Python loop that
drives the jitted work (one update per chunk, never per group). Whether it shows is decided
once, when it is created:

* ``enabled=True``/``False`` force it on or off;
* ``enabled=None`` (the default) follows :func:`set_progress`, then the environment variable
  ``MIXEDJAX_PROGRESS`` (``1``/``0``), then the context: on in a Jupyter kernel and when
  ``stderr`` is a terminal, off otherwise (pipes, CI logs, batch jobs) and always off under
  pytest.

In a notebook the bar is a ``tqdm.notebook`` widget when tqdm and ipywidgets are installed,
else a text bar on ``stdout``; in a terminal it is a one-line text bar on ``stderr``, redrawn
at most ten times a second. A disabled bar costs one attribute check per update.

Example:
    >>> from mixedjax.core.progress import progress
    >>> with progress(total=3, desc="chunks", enabled=False) as bar:
    ...     for _ in range(3):
    ...         bar.update()
    >>> bar.n
    3
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

_DEFAULT: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Turn progress bars on or off for this process (``None``: decide from the context).

    Example:
        >>> set_progress(False)   # quiet, e.g. in a batch job
        >>> set_progress(None)    # back to the automatic choice
    """
    global _DEFAULT
    if enabled not in (True, False, None):
        raise TypeError(f"enabled must be True, False or None, got {enabled!r}")
    _DEFAULT = enabled


def in_notebook() -> bool:
    """Whether the code runs in a Jupyter (IPython kernel) session.

    Example:
        >>> in_notebook()   # a plain Python process
        False
    """
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def progress_enabled(enabled: bool | None = None, file: IO[str] | None = None) -> bool:
    """Resolve ``enabled`` as described in the module docstring.

    Example:
        >>> progress_enabled(False)
        False
    """
    if enabled is not None:
        return bool(enabled)
    if _DEFAULT is not None:
        return _DEFAULT
    env = os.environ.get("MIXEDJAX_PROGRESS")
    if env is not None and env.strip() != "":
        return env.strip().lower() not in ("0", "false", "no", "off")
    if "PYTEST_CURRENT_TEST" in os.environ:
        return False
    if in_notebook():
        return True
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def _format_value(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


class TextBar:
    """A one-line text progress bar redrawn in place with ``\\r`` (terminals and notebooks).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> bar = TextBar(total=4, desc="fits", file=out, min_interval=0.0)
        >>> bar.update(4); bar.close()
        >>> out.getvalue().splitlines()[-1].split("|")[0].strip()
        'fits: 100%'
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        file: IO[str] | None = None,
        width: int = 24,
        min_interval: float = 0.1,
        unit: str = "",
    ):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.postfix = ""
        self.file = sys.stderr if file is None else file
        self.width = width
        self.min_interval = min_interval
        self.n = 0
        self._start = time.perf_counter()
        self._last_draw = -float("inf")
        self._closed = False
        self._draw(force=True)

    def render(self) -> str:
        """The current line (without ``\\r``)."""
        elapsed = time.perf_counter() - self._start
        prefix = f"{self.desc}: " if self.desc else ""
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            frac = min(self.n / self.total, 1.0)
            filled = int(round(frac * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            eta = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
            eta_text = _format_seconds(eta) if self.n else "?"
            line = (
                f"{prefix}{frac:4.0%}|{bar}| {self.n}/{self.total}{unit} "
                f"[{_format_seconds(elapsed)}<{eta_text}]"
            )
        else:
            line = f"{prefix}{self.n}{unit} done [{_format_seconds(elapsed)}]"
        return f"{line}, {self.postfix}" if self.postfix else line

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        self.file.write("\r" + self.render())
        self.file.flush()

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps."""
        self.n += n
        self._draw(force=self.total is not None and self.n >= self.total)

    def set_description(self, desc: str) -> None:
        """Change the label shown before the bar."""
        self.desc = desc

    def set_postfix(self, **fields) -> None:
        """Show ``key=value`` pairs after the counts (as ``tqdm.set_postfix``)."""
        self.postfix = ", ".join(f"{k}={_format_value(v)}" for k, v in fields.items())

    def close(self) -> None:
        """Draw the final state and end the line."""
        if not self._closed:
            self._closed = True
            self._draw(force=True)
            self.file.write("\n")
            self.file.flush()


class Progress:
    """Progress of ``total`` steps (``None``: unknown); a context manager and an iterable.

    Use :func:`progress` to make one. ``update(n)`` advances, ``close()`` finishes (called on
    leaving a ``with`` block); ``n`` counts the steps even when nothing is shown.

    Example:
        >>> bar = Progress(total=2, desc="fits", enabled=False)
        >>> bar.update(2); bar.close(); bar.n
        2
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        enabled: bool | None = None,
        file: IO[str] | None = None,
        unit: str = "",
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        if total is not None and (not isinstance(total, int) or total < 0):
            raise ValueError(f"total must be a non-negative integer or None, got {total!r}")
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.enabled = progress_enabled(enabled, file)
        self.n = 0
        self._bar: Any = None
        if self.enabled:
            self._bar = self._make_bar(file)

    def _make_bar(self, file):
        if file is None and in_notebook():
            try:  # a widget needs both; without ipywidgets tqdm.auto only warns
                import ipywidgets  # noqa: F401
                from tqdm.notebook import tqdm
            except ImportError:
                return TextBar(self.total, self.desc, sys.stdout, unit=self.unit)
            unit = self.unit or "it"
            return tqdm(total=self.total, desc=self.desc, leave=True, unit=unit)
        return TextBar(self.total, self.desc, file, unit=self.unit)

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set_description(self, desc: str) -> None:
        """Change the label (e.g. to show the current chunk or parameter)."""
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc)

    def set_postfix(self, **fields) -> None:
        """Show ``key=value`` pairs after the counts (e.g. ``groups=1200``)."""
        if self._bar is not None:
            self._bar.set_postfix(**fields)

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this Progress was made without an iterable; call update()")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool | None = None,
    file: IO[str] | None = None,
    unit: str = "",
) -> Progress:
    """A progress bar over ``iterable`` or ``total`` steps (see the module docstring).

    Args:
        iterable: iterate over it, advancing once per item (its ``len`` is the total).
        total: number of steps when updating by hand.
        desc: label shown before the bar.
        enabled: ``True``/``False`` to force; ``None`` to decide from the context.
        file: text stream for the text bar (default ``stderr``).
        unit: what is counted (``"rows"``, ``"fits"``), shown after the counts.

    Example:
        >>> for chunk in progress(range(4), desc="chunks", enabled=False):
        ...     pass
    """
    return Progress(iterable, total=total, desc=desc, enabled=enabled, file=file, unit=unit)


#: The bar that compiled code reports to (see :func:`reporting`); ``None`` when none is open.
_ACTIVE: list[Progress] = []


@contextlib.contextmanager
def reporting(bar: Progress) -> Iterator[Progress]:
    """Make ``bar`` the target of :func:`report_done` while the block runs.

    Compiled loops (e.g. :mod:`mixedjax.fit.stream`) cannot hold a Python object; they call
    :func:`report_done` through ``jax.debug.callback`` with a count, and the count goes to
    the innermost bar opened by this context manager.

    Example:
        >>> bar = Progress(total=10, enabled=False)
        >>> with reporting(bar):
        ...     report_done(4)
        >>> bar.n
        4
    """
    _ACTIVE.append(bar)
    try:
        yield bar
    finally:
        _ACTIVE.remove(bar)


def report_done(n_done) -> None:
    """Advance the active bar (see :func:`reporting`) to ``n_done`` steps done (host side)."""
    if _ACTIVE:
        bar = _ACTIVE[-1]
        bar.update(max(int(n_done) - bar.n, 0))
