"""Retry and circuit-breaker policy for calls to an LLM server.

Retries (tenacity, exponential backoff with jitter, `Retry-After` honoured) absorb short hiccups: timeouts,
refused connections, 5xx and 429. The circuit breaker stops calling a server that keeps failing: after
`failure_threshold` consecutive failed requests it opens and every call fails at once (the memory falls back to
the offline provider); after `cooldown_s` one probe request is let through (half-open); its success closes the
breaker, its failure opens it for another cool-down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ResilienceOptions:
    """How hard to try a remote provider before falling back. Defaults suit a local Ollama."""

    max_attempts: int = 3  # HTTP attempts per request on transient errors (1 = no retry)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 30.0  # never sleep longer than this on a server's Retry-After
    invalid_output_retries: int = 1  # extra chat calls when the answer is not a valid enrichment
    breaker_failure_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    embed_batch_size: int = 32  # texts per embedding request


class CircuitOpenError(RuntimeError):
    """The breaker is open: the server is not called. `cause` is the failure that opened it ("<kind>: ...")."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class CircuitBreaker:
    """closed -> (N consecutive failures) -> open -> (cool-down) -> half-open -> closed | open. Thread-safe.

    Every `allow()` that returns True must be followed by exactly one `record_success()` or
    `record_failure()`, so the single half-open probe is always resolved.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.opens = 0  # times the breaker opened (including re-opening after a failed probe)
        self.recoveries = 0  # times it closed again after being open

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                return self.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        with self._lock:
            if self._state == self.CLOSED:
                return True
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                self._state = self.HALF_OPEN
                self._probe_in_flight = False
            if self._state == self.HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True  # one probe at a time; the others keep falling back
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._consecutive_failures = 0
            self._probe_in_flight = False
            if self._state != self.CLOSED:
                self._state = self.CLOSED
                self.recoveries += 1

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive_failures += 1
            if self._state == self.HALF_OPEN:
                self._trip()
            elif self._state == self.CLOSED and self._consecutive_failures >= self.failure_threshold:
                self._trip()
            # Already open: a straggler that was in flight when the breaker opened changes nothing.

    def _trip(self) -> None:
        self._state = self.OPEN
        self._opened_at = self._clock()
        self._probe_in_flight = False
        self.opens += 1
