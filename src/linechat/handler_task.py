"""Running a stream handler's coroutine without an ``asyncio.Task``.

A Task per connection and the future it waits on cost about 700 bytes while
the connection is idle, and each line a waiting handler receives makes a trip
through the event loop:
the read's future is resolved, the Task's wake-up is scheduled, and the
handler runs only on the loop's next turn. A :class:`HandlerTask` resumes
the handler right inside ``data_received`` when the input it waits for has
arrived, and holds nothing but itself while it waits.

For everything else a handler awaits (futures, sleeps, locks, other tasks)
it does what a Task does: it waits on the future and steps the coroutine
when it is done. To the code it runs it is the current task:
``asyncio.current_task()`` returns it, and it answers what
``asyncio.timeout()`` and ``asyncio.TaskGroup`` ask of the current task
(``cancel``, ``cancelling``, ``uncancel``, ``done``).
"""

from __future__ import annotations

import asyncio
import contextvars
from asyncio import tasks as _asyncio_tasks
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

__all__ = ["WAIT_FOR_INPUT", "HandlerTask"]

#: Yielded to the HandlerTask by a read that must wait for input: the task
#: then waits, with no future, until the input's arrival calls
#: :meth:`HandlerTask.step` (``waiting_for_input`` says it may).
WAIT_FOR_INPUT: Any = object()

# asyncio's own bookkeeping of the current task (C functions, used by every Task).
_TaskHook = Callable[[asyncio.AbstractEventLoop, Any], None]
_enter_task = cast(_TaskHook, _asyncio_tasks._enter_task)
_leave_task = cast(_TaskHook, _asyncio_tasks._leave_task)

#: For loop callbacks that need no context of their own (saves a copy each).
_NO_CONTEXT = contextvars.Context()


class Owner(Protocol):
    """Who is told when the handler ends (its connection's protocol)."""

    def handler_done(self, exc: BaseException | None, cancelled: bool) -> None: ...


class HandlerTask:
    """Drives one handler coroutine; tells ``owner.handler_done()`` once it ends.

    Made with the coroutine; :meth:`start` runs it, :meth:`discard` drops it unstarted,
    :meth:`adopt` takes over one that was started by hand.

    Kept small (it lives as long as its connection): the loop is looked up
    when needed, and a cancellation's message shares one slot with its flag.
    """

    __slots__ = (
        "_cancel_requests",
        "_context",
        "_coro",
        "_fut_waiter",
        "_loop",
        "_must_cancel",
        "_owner",
        "_send",
        "stepping",
        "waiting_for_input",
    )

    name = "linechat stream handler"

    def __init__(self, coro: Coroutine[Any, Any, Any], owner: Owner) -> None:
        self._coro: Coroutine[Any, Any, Any] | None = coro
        # The class's own send (a coroutine's is a C method descriptor): called
        # with the coroutine, it costs no bound method per step.
        self._send: Callable[[Any, Any], Any] = type(coro).send
        # Set by the first step (or start()); resume() comes only after one.
        self._loop = cast(asyncio.AbstractEventLoop, None)
        self._context = contextvars.copy_context()  # as a Task has: the handler's own
        self._owner = owner
        self._fut_waiter: asyncio.Future[Any] | None = None
        #: None, or the message of a cancellation still to raise in the handler.
        self._must_cancel: str | None = None
        self._cancel_requests = 0
        #: True while the coroutine runs (a read that must wait yields WAIT_FOR_INPUT).
        self.stepping = False
        #: True while the coroutine waits for input and nothing else.
        self.waiting_for_input = False

    def start(self) -> None:
        """Run the coroutine from the loop's next turn on, as a new Task would."""
        loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(self.step, context=_NO_CONTEXT)

    def adopt(self, yielded: Any) -> None:
        """Drive from here a coroutine stepped by hand until it yielded ``yielded``."""
        self._loop = asyncio.get_running_loop()
        self._wait_on(yielded)

    def discard(self) -> None:
        """For a task never started: close the coroutine (no "never awaited" warning)."""
        if self._coro is not None:
            self._coro.close()
            self._coro = None

    # -- driving ---------------------------------------------------------------

    def step(self, value: Any = None, exc: BaseException | None = None) -> None:
        """Run the coroutine until it waits again.

        The hot path: the input a read waits for is here (check
        :attr:`waiting_for_input` first); ``value`` is what the read returns
        (a line), or None to have the read look for itself.
        """
        coro = self._coro
        if coro is None or self.stepping:
            return
        if self._must_cancel is not None:
            if not isinstance(exc, asyncio.CancelledError):
                exc = asyncio.CancelledError(self._must_cancel)
            self._must_cancel = None
        self.waiting_for_input = False
        self._fut_waiter = None
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        try:
            _enter_task(loop, self)
        except RuntimeError:  # called from inside a task: one at a time, so next turn
            loop.call_soon(self.step, value, exc, context=_NO_CONTEXT)
            return
        self.stepping = True
        try:
            if exc is not None:
                result = self._context.run(coro.throw, exc)
            else:
                result = self._context.run(self._send, coro, value)
        except StopIteration:
            self._finish(None, cancelled=False)
        except asyncio.CancelledError:
            self._finish(None, cancelled=True)
        except (KeyboardInterrupt, SystemExit) as error:
            self._finish(error, cancelled=False)
            raise
        except BaseException as error:
            self._finish(error, cancelled=False)
        else:
            if result is WAIT_FOR_INPUT and self._must_cancel is None:
                self.waiting_for_input = True  # the usual case, inline
            else:
                self._wait_on(result)
        finally:
            self.stepping = False
            _leave_task(loop, self)

    def resume(self, value: Any) -> None:
        """:meth:`step` for the hot path: only while :attr:`waiting_for_input`.

        The input the coroutine waits for is ``value`` (a line). Waiting for
        input, the task has no future, no cancellation pending and is not
        stepping, so none of that is looked at again here.
        """
        self.waiting_for_input = False
        loop = self._loop
        try:
            _enter_task(loop, self)
        except RuntimeError:  # called from inside a task: one at a time, so next turn
            loop.call_soon(self.step, value, None, context=_NO_CONTEXT)
            return
        self.stepping = True
        try:
            result = self._context.run(self._send, self._coro, value)
        except BaseException as error:
            self._ended(error)
        else:
            if result is WAIT_FOR_INPUT and self._must_cancel is None:
                self.waiting_for_input = True  # the usual case, inline
            else:
                self._wait_on(result)
        finally:
            self.stepping = False
            _leave_task(loop, self)

    def _ended(self, error: BaseException) -> None:
        """The coroutine returned or raised out of :meth:`resume`."""
        if isinstance(error, StopIteration):
            self._finish(None, cancelled=False)
        elif isinstance(error, asyncio.CancelledError):
            self._finish(None, cancelled=True)
        else:
            self._finish(error, cancelled=False)
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise error

    def _wait_on(self, result: Any) -> None:
        """The coroutine yielded ``result``: wait for it the way a Task would."""
        loop = self._loop
        if result is WAIT_FOR_INPUT:
            if self._must_cancel is None:
                self.waiting_for_input = True
            else:  # cancelled during its own step: raise it at the read
                loop.call_soon(self.step, context=_NO_CONTEXT)
            return
        if result is None:  # a bare yield (asyncio.sleep(0)): run again next turn
            loop.call_soon(self.step, context=_NO_CONTEXT)
            return
        blocking = getattr(result, "_asyncio_future_blocking", None)
        if blocking and result.get_loop() is loop:
            result._asyncio_future_blocking = False
            result.add_done_callback(self._wakeup, context=_NO_CONTEXT)
            self._fut_waiter = result
            if self._must_cancel is not None and result.cancel(msg=self._must_cancel or None):
                self._must_cancel = None
            return
        error = RuntimeError(f"a linechat handler yielded {result!r}, which is not awaitable here")
        loop.call_soon(self.step, None, error, context=_NO_CONTEXT)

    def _wakeup(self, future: asyncio.Future[Any]) -> None:
        try:
            future.result()
        except BaseException as exc:  # handed to the coroutine, where the await raises it
            self.step(None, exc)
        else:
            self.step()

    def _finish(self, exc: BaseException | None, *, cancelled: bool) -> None:
        self._coro = None
        self._owner.handler_done(exc, cancelled)

    # -- what asyncio asks of the current task --------------------------------------

    def cancel(self, msg: str | None = None) -> bool:
        """Raise CancelledError in the handler where it waits (as Task.cancel)."""
        if self._coro is None:
            return False
        self._cancel_requests += 1
        waiter = self._fut_waiter
        if waiter is not None and waiter.cancel(msg=msg):
            return True  # the wake-up throws CancelledError in
        self._must_cancel = msg or ""
        if self.waiting_for_input:
            self.waiting_for_input = False
            asyncio.get_running_loop().call_soon(self.step, context=_NO_CONTEXT)
        return True

    def cancelling(self) -> int:
        return self._cancel_requests

    def uncancel(self) -> int:
        if self._cancel_requests > 0:
            self._cancel_requests -= 1
        return self._cancel_requests

    def done(self) -> bool:
        return self._coro is None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def get_name(self) -> str:
        return self.name

    def get_context(self) -> contextvars.Context:
        return self._context

    def get_coro(self) -> Coroutine[Any, Any, Any] | None:
        return self._coro

    def __repr__(self) -> str:
        if self._coro is None:
            state = "done"
        else:
            state = "waiting for input" if self.waiting_for_input else "pending"
        return f"<HandlerTask {self.name!r} {state}>"
