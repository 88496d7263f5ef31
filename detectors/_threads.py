"""One BLAS/OpenMP thread for the detectors' small matrix products (private).

The detectors multiply matrices of a few thousand rows: multi-threaded BLAS costs far more in
start-up and contention than it gains (measured on the 2-core CI machine: 11 ms instead of
0.9 ms for a window's PCA reconstruction), and the monitor process already runs one model's
work per thread. :func:`one_thread` limits BLAS and OpenMP to one thread for a block.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_controller: Any = None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with BLAS and OpenMP limited to one thread."""
    global _controller
    if _controller is None:
        # the controller only sees libraries already loaded: load scikit-learn's OpenMP runtime
        # first, else its first fits run with every core's thread spinning (measured: 19 s instead
        # of 0.25 s for one domain-classifier window while another process held a core)
        import sklearn.ensemble  # noqa: F401 - loaded for its OpenMP runtime (above)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    with _controller.limit(limits=1):
        yield
