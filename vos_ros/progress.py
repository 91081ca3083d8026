"""Progress bars on a terminal only: redirected to a file or a log, a bar's carriage-return
updates would be thousands of lines; callers print plain one-line summaries instead."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm, disabled unless standard error is a terminal (`write` still prints)."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), **kwargs)
