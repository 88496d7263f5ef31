"""Consumers that stop consuming: kafka-python 3.x calls that never return, and polls that
come back empty while the partitions hold records.

After a broker outage the retrain worker, in about one run in six of the 30-second outage test,
never got the job waiting on its partition: its polls came back empty for minutes (stack dumps
caught its main thread in ``poll`` -> ``fetcher.send_fetches``, waiting on kafka-python's IO
loop, the IO thread idle in ``select``). Two guards, for the two ways that can look:

* :class:`StallCheck`: polls return, but nothing comes while the positions are behind the end
  offsets. ``position()`` is asked for (it completes kafka-python's pending offset reset or
  validation); still behind later, the owner replaces the consumer.
* :class:`CallWatchdog`: one call does not return at all (kafka-python 3.0.x hands the IO thread
  a coroutine and waits on a ``threading.Event`` with no timeout).

:class:`CallWatchdog` watches one blocking call at a time from a daemon thread:

1. after ``nudge_after_s`` it logs the IO loop's state and wakes the loop (a lost wake-up is
   the cheap cure);
2. after ``give_up_after_s`` it fails the call's pending waiters with :class:`ConsumerStuck`.
   The caller gets the exception out of ``poll()`` and replaces the consumer with a new one;
   the stored offsets, not the consumer, say where to resume, so nothing is lost or repeated.

The internals touched (``consumer._net``, its ``wakeup`` and ``_fail_pending_waiters``) are
looked up defensively: with a kafka-python that lacks them the watchdog only logs.

>>> import threading, time
>>> class Net:   # stands in for kafka-python's NetworkSelector
...     def __init__(self): self.event, self.state = threading.Event(), {}
...     def wakeup(self): pass
...     def _fail_pending_waiters(self, exc): self.state["exception"] = exc; self.event.set()
>>> class Consumer:
...     def __init__(self): self._net = Net()
...     def poll(self):   # waits forever unless failed from outside
...         self._net.event.wait(); raise self._net.state["exception"]
>>> c = Consumer()
>>> dog = CallWatchdog("doc", nudge_after_s=0.05, give_up_after_s=0.1, check_every_s=0.02)
>>> try:
...     with dog.watch(c):
...         c.poll()
... except ConsumerStuck as exc:
...     print("unstuck:", exc.call)
unstuck: poll
>>> dog.close()
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["CallWatchdog", "ConsumerStuck", "StallCheck", "abandon_consumer", "describe_partitions", "stall_reason"]

log = logging.getLogger(__name__)


class ConsumerStuck(Exception):
    """A consumer call waited longer than the watchdog allows; replace the consumer."""

    retriable = True

    def __init__(self, owner: str, call: str, seconds: float) -> None:
        super().__init__(f"{owner}: kafka-python {call}() did not return in {seconds:.0f} s")
        self.owner = owner
        self.call = call
        self.seconds = seconds


class CallWatchdog:
    """Watches one blocking consumer call at a time (see the module docstring)."""

    def __init__(self, owner: str, *, nudge_after_s: float = 20.0, give_up_after_s: float = 60.0,
                 check_every_s: float = 1.0) -> None:
        if not 0 < nudge_after_s < give_up_after_s:
            raise ValueError("need 0 < nudge_after_s < give_up_after_s")
        self.owner = owner
        self.nudge_after_s = nudge_after_s
        self.give_up_after_s = give_up_after_s
        self.check_every_s = check_every_s
        self.nudges = 0
        self.give_ups = 0
        self._lock = threading.Lock()
        self._call: tuple[Any, str, float] | None = None   # (consumer, name, started)
        self._nudged = False
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, consumer: Any, call: str = "poll") -> Iterator[None]:
        """Watch ``consumer``'s ``call`` made inside the ``with`` block."""
        self._ensure_thread()
        with self._lock:
            self._call = (consumer, call, time.monotonic())
            self._nudged = False
        try:
            yield
        finally:
            with self._lock:
                self._call = None

    def close(self) -> None:
        self._closed.set()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"watchdog-{self.owner}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed.wait(self.check_every_s):
            with self._lock:
                current, nudged = self._call, self._nudged
            if current is None:
                continue
            consumer, call, started = current
            waited = time.monotonic() - started
            net = getattr(consumer, "_net", None)
            if waited >= self.give_up_after_s:
                with self._lock:
                    if self._call is not current:
                        continue
                    self._call = None   # one give-up per call
                self.give_ups += 1
                fail = getattr(net, "_fail_pending_waiters", None)
                log.error("%s: kafka-python %s() has not returned in %.0f s (IO loop %s); failing it so "
                          "the consumer is replaced", self.owner, call, waited, net)
                if fail is not None:
                    fail(ConsumerStuck(self.owner, call, waited))
            elif waited >= self.nudge_after_s and not nudged:
                with self._lock:
                    if self._call is current:
                        self._nudged = True
                self.nudges += 1
                log.warning("%s: kafka-python %s() has not returned in %.0f s (IO loop %s); waking the loop",
                            self.owner, call, waited, net)
                wakeup = getattr(net, "wakeup", None)
                if wakeup is not None:
                    wakeup()


def abandon_consumer(consumer: Any, owner: str, timeout_s: float = 10.0) -> None:
    """Close a consumer being replaced without waiting on it for more than ``timeout_s``.

    ``close()`` leaves the group, so its partitions go to the new member at once. If it hangs
    too, the consumer's IO loop is stopped: its heartbeats end and the broker drops the member
    after the session timeout.
    """
    def close() -> None:
        try:
            consumer.close(autocommit=False)
        except Exception as exc:  # noqa: BLE001 - it is being thrown away
            log.info("%s: closing the replaced consumer: %s", owner, exc)

    t = threading.Thread(target=close, name=f"close-{owner}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        stop = getattr(getattr(consumer, "_net", None), "stop", None)
        log.warning("%s: the replaced consumer did not close in %.0f s; stopping its IO loop", owner, timeout_s)
        if stop is not None:
            try:
                stop(timeout_ms=1000)
            except Exception as exc:  # noqa: BLE001 - the consumer is being thrown away
                log.info("%s: stopping the replaced consumer's IO loop: %s", owner, exc)


def describe_partitions(consumer: Any, partitions: list[Any]) -> str:
    """Each partition's fetch state as kafka-python holds it (for the log of a stalled consumer)."""
    sub = getattr(consumer, "_subscription", None)
    out = []
    for tp in partitions:
        st = getattr(sub, "assignment", {}).get(tp) if sub is not None else None
        if st is None:
            out.append(f"{tp.topic}[{tp.partition}]: not assigned")
            continue
        pos = getattr(st, "position", None)
        flags = [name.lstrip("_") for name in ("paused", "awaiting_validation", "awaiting_reset", "_pending_revocation")
                 if getattr(st, name, False)]
        fetchable = st.is_fetchable() if hasattr(st, "is_fetchable") else "?"
        out.append(f"{tp.topic}[{tp.partition}]: position {getattr(pos, 'offset', pos)}, "
                   f"fetchable {fetchable}{', ' + ', '.join(flags) if flags else ''}")
    return "; ".join(out)


class StallCheck:
    """A consumer whose ``poll()`` returns, but empty, while its partitions hold records.

    Seen after broker outages with kafka-python 3.0.12: the worker polled its assigned
    partitions for minutes and never got the job waiting there. :meth:`due` says when a check
    is due (no records for ``check_after_s`` while consuming); :meth:`check` compares each
    unpaused assigned partition's position with its end offset. Behind once: the partitions'
    state is logged and ``position()`` is asked for, which drives kafka-python's pending offset
    reset or validation to its end. Still behind ``replace_after_s`` later: True, the owner
    replaces the consumer. A partition that is merely idle (position == end) resets the clock.

    >>> chk = StallCheck("doc", check_after_s=10, replace_after_s=30, clock=iter([0, 0, 5, 11]).__next__)
    >>> chk.saw_records(); chk.due()
    False
    >>> chk.due()
    True
    """

    def __init__(self, owner: str, *, check_after_s: float = 15.0, replace_after_s: float = 30.0,
                 clock: Any = time.monotonic) -> None:
        self.owner = owner
        self.check_after_s = check_after_s
        self.replace_after_s = replace_after_s
        self.clock = clock
        self._quiet_since = clock()
        self._behind_since: float | None = None
        self.stalls = 0

    def saw_records(self) -> None:
        self._quiet_since = self.clock()
        self._behind_since = None

    def due(self) -> bool:
        return self.clock() - self._quiet_since >= self.check_after_s

    def check(self, consumer: Any, timeout_ms: int = 5000) -> bool:
        """True: the consumer stays behind although it polls; replace it."""
        now = self.clock()
        self._quiet_since = now            # the next check comes check_after_s later
        paused = set(consumer.paused())
        parts = [tp for tp in consumer.assignment() if tp not in paused]
        if not parts:
            self._behind_since = None
            return False
        ends = consumer.end_offsets(parts, timeout_ms=timeout_ms)
        behind = {}
        for tp in parts:
            pos = consumer.position(tp, timeout_ms=timeout_ms)   # also completes a pending reset/validation
            end = ends.get(tp)
            if pos is not None and end is not None and pos < end:
                behind[tp] = (pos, end)
        if not behind:
            self._behind_since = None
            return False
        if self._behind_since is None:
            self._behind_since = now
            self.stalls += 1
            log.warning("%s: no records for %.0f s although %s; asked for the positions (%s)", self.owner,
                        self.check_after_s, ", ".join(f"{tp.topic}[{tp.partition}] is at {p} of {e}"
                                                      for tp, (p, e) in sorted(behind.items())),
                        describe_partitions(consumer, sorted(behind)))
            return False
        if now - self._behind_since >= self.replace_after_s:
            log.error("%s: still no records %.0f s after the stall was seen (%s); replacing the consumer",
                      self.owner, now - self._behind_since, describe_partitions(consumer, sorted(behind)))
            self._behind_since = None
            return True
        return False


def stall_reason(stall: StallCheck, watchdog: CallWatchdog, consumer: Any) -> str | None:
    """Run ``stall.check`` under ``watchdog``; why the consumer must be replaced, or None."""
    from kafka.errors import KafkaError

    try:
        with watchdog.watch(consumer, "end_offsets/position"):
            if stall.check(consumer):
                return f"{stall.owner}: the consumer polls but gets no records although its partitions hold some"
    except ConsumerStuck as exc:
        return str(exc)
    except KafkaError as exc:     # broker away, partition revoked meanwhile: the next check decides
        log.info("%s: stall check not done (%s: %s)", stall.owner, type(exc).__name__, exc)
    return None


class GuardedConsumer:
    """What the monitor and the retrain worker share around their group consumer: ``poll()``
    under the watchdog and the stall check, and replacing the consumer when either gives up.

    The owner provides ``consumer``, ``expected`` (its partitions' stored offsets), ``watchdog``,
    ``stall``, ``consumers_replaced`` and ``_subscribe()`` (a new consumer joins the group;
    False when stopped meanwhile).
    """

    consumer: Any
    expected: dict[Any, Any]
    watchdog: CallWatchdog
    stall: StallCheck
    consumers_replaced: int

    def _subscribe(self) -> bool:
        raise NotImplementedError

    def _poll(self, **kw: Any) -> dict[Any, list[Any]]:
        """``consumer.poll(**kw)`` under the watchdog (raises :class:`ConsumerStuck`)."""
        with self.watchdog.watch(self.consumer):
            return self.consumer.poll(**kw)

    def _poll_guarded(self, **kw: Any) -> dict[Any, list[Any]] | None:
        """:meth:`_poll`, then the stall check when due; None when the consumer was replaced."""
        try:
            polled = self._poll(**kw)
        except ConsumerStuck as exc:
            self._replace_consumer(exc)
            return None
        if polled:
            self.stall.saw_records()
        elif self.stall.due() and (why := stall_reason(self.stall, self.watchdog, self.consumer)):
            self._replace_consumer(why)
            return None
        return polled

    def _replace_consumer(self, why: ConsumerStuck | str) -> None:
        """Throw the consumer away and join again with a new one. Nothing is lost: the stored
        offsets say where each partition resumes, and a batch polled but not committed is polled
        again."""
        self.consumers_replaced += 1
        log.error("%s; replacing the consumer (%d so far); the stored offsets say where to resume",
                  why, self.consumers_replaced)
        self.stall.saw_records()
        old, self.consumer = self.consumer, None
        self.expected.clear()
        abandon_consumer(old, self.watchdog.owner)
        if not self._subscribe():
            log.info("%s: stopped while joining again", self.watchdog.owner)
