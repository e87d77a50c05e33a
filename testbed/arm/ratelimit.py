"""ARM request throttling: Azure's documented per-region token buckets and their headers.

Azure Resource Manager throttles per subscription, principal and region with token buckets:
reads 250 burst refilling 25 per second, writes 200 burst refilling 10 per second. Every answer
carries ``x-ms-ratelimit-remaining-subscription-reads`` (or ``-writes``) and
``x-ms-ratelimit-remaining-resource``; an exhausted bucket answers 429 with ``Retry-After``.
The buckets always count (so the headers are truthful); they only refuse when enforcement is on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

READ_BURST, READ_RATE = 250, 25.0
WRITE_BURST, WRITE_RATE = 200, 10.0


@dataclass
class TokenBucket:
    """A token bucket: `capacity` tokens, refilled at `rate` per second."""

    capacity: float
    rate: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.capacity
        self.stamp = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        """Take one token if there is one; False when the bucket is empty."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def remaining(self) -> int:
        """Whole tokens left now."""
        self._refill()
        return int(self.tokens)

    def retry_after(self) -> int:
        """Whole seconds until one token is available (at least 1)."""
        self._refill()
        return max(1, math.ceil((1 - self.tokens) / self.rate))


@dataclass
class Throttle:
    """The read and write buckets of one subscription/region; `enforce` makes them refuse."""

    enforce: bool = False
    clock: Callable[[], float] = time.monotonic
    reads: TokenBucket = field(init=False)
    writes: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.reads = TokenBucket(READ_BURST, READ_RATE, self.clock)
        self.writes = TokenBucket(WRITE_BURST, WRITE_RATE, self.clock)

    def configure(self, *, read_burst: float | None = None, read_rate: float | None = None,
                  write_burst: float | None = None, write_rate: float | None = None) -> None:
        """Change the bucket sizes/rates (tests use small ones); refills both buckets."""
        self.reads = TokenBucket(read_burst or READ_BURST, read_rate or READ_RATE, self.clock)
        self.writes = TokenBucket(write_burst or WRITE_BURST, write_rate or WRITE_RATE,
                                  self.clock)

    def admit(self, is_write: bool) -> int | None:
        """Count one request; None if admitted, else the Retry-After seconds of the 429."""
        bucket = self.writes if is_write else self.reads
        if bucket.take() or not self.enforce:
            return None
        return bucket.retry_after()

    def headers(self, is_write: bool, operation: str) -> dict[str, str]:
        """The ``x-ms-ratelimit-remaining-*`` headers for an answer to such a request."""
        bucket = self.writes if is_write else self.reads
        remaining = bucket.remaining()
        kind = "writes" if is_write else "reads"
        policy = "PutVMScaleSet" if is_write else "GetVMScaleSet"
        return {
            f"x-ms-ratelimit-remaining-subscription-{kind}": str(remaining),
            "x-ms-ratelimit-remaining-resource": f"Microsoft.Compute/{policy}3Min;{remaining}",
        }
