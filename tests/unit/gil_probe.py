"""Whether a call lets other Python threads run: the check behind the tests of the GIL-free stages."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def progress_during(call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()``'s result and how many times another thread, spinning in Python, went round meanwhile.

    The switch interval is raised to a second for the duration, so the GIL is not handed over by force
    while the call runs: a count above zero means the call released it.
    """
    ticks = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ticks[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)  # the spinner holds the GIL now; we get it back at its next hand-over
        before = ticks[0]
        result = call()
        during = ticks[0] - before
    finally:
        stop.set()
        sys.setswitchinterval(old)
        t.join()
    return result, during
