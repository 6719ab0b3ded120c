"""How the library talks to its user: warnings at the user's line, the rest through logging.

A warning raised deep inside a fit (the classifier's ``fit`` called by a Pipeline
called by ``cross_validate``) should point at the line the user wrote, not at a
line of this package or of scikit-learn: a fixed ``stacklevel`` cannot, since the
depth depends on the caller. :func:`warn` walks the stack past the frames of the
libraries a fit goes through and attributes the warning to the first frame beyond
them.

Informational messages (what a long operation is doing) go to the
``"sklearn_din"`` logger: silent unless the application configures logging, e.g.
``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

import joblib
import sklearn
import skorch

logger = logging.getLogger("sklearn_din")


def _package_dir(module: object) -> str:
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


# Frames in these directories are library code a warning should not be attributed to:
# this package, and the libraries that call into it on the user's behalf (Pipeline,
# GridSearchCV, cross_validate, skorch's fit loop, joblib's sequential backend), plus
# contextlib (the package's context managers).
_LIBRARY_DIRS = tuple(
    _package_dir(module) for module in (sys.modules[__package__], sklearn, skorch, joblib)
) + (os.path.abspath(contextlib.__file__),)


def _is_library(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_LIBRARY_DIRS)


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by this function's caller point at
    the first frame outside the library code (the user's line)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and _is_library(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the user's line (see the module docstring)."""
    warnings.warn(message, category, stacklevel=user_stacklevel())
