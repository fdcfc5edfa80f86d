"""The non-root fallback for a link: an application-level token bucket in the device client.

Without root there are no namespaces or qdiscs, so the device's upload crosses loopback at memory speed. The
bucket holds each upload until the tokens for its bytes have accumulated at the scenario's rate (burst: a few
frames' worth, as the tc link has), so the upload takes about bytes * 8 / rate, as on the shaped link. It delays
whole messages: unlike tbf it cannot pace a message's packets, and the link's delay is not emulated.
"""

from __future__ import annotations

import math
import threading
import time

from dnnpart.errors import TestbedError

BURST_BYTES = 3028  # two Ethernet frames, like the tc link's smallest burst


class TokenBucket:
    """`wait(nbytes)` blocks until nbytes may be sent at `rate_mbps`; returns the seconds it waited."""

    def __init__(self, rate_mbps: float, burst_bytes: int = BURST_BYTES, clock=time.monotonic, sleep=time.sleep):
        if not (isinstance(rate_mbps, (int, float)) and math.isfinite(rate_mbps) and rate_mbps > 0):
            raise TestbedError(f"a token bucket's rate must be a positive number of Mbps, got {rate_mbps!r}")
        if burst_bytes < 1:
            raise TestbedError(f"a token bucket's burst must be at least 1 byte, got {burst_bytes}")
        self.rate_bytes_s = rate_mbps * 1e6 / 8
        self.burst = float(burst_bytes)
        self.clock, self.sleep = clock, sleep
        self.tokens, self.last = self.burst, clock()
        self.lock = threading.Lock()

    def wait(self, nbytes: int) -> float:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate_bytes_s)
            self.last = now
            self.tokens -= nbytes  # in debt until the bytes are paid for
            waited = max(0.0, -self.tokens / self.rate_bytes_s)
            if waited > 0:
                self.sleep(waited)
                self.tokens, self.last = 0.0, self.clock()
            return waited
