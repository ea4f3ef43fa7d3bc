"""The replayer on histories written by hand: no database, no worker, milliseconds each.

Each test builds the events a run recorded, step by step, and checks what the replayer
does with them: what a replay matches or refuses, what a live step records, and where."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import durable
from durable import WorkflowContext
from durable._errors import NondeterminismError, QueryError
from durable._events import REPLAY_RULES, Event
from durable._events import EventType as E
from durable._replayer import WorkflowInstance
from durable._serialization import decode, encode, encode_args

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@durable.activity
async def greet(name: str) -> str:
    raise AssertionError("activities do not run in the replayer")


@durable.activity
async def shout(name: str) -> str:
    raise AssertionError("activities do not run in the replayer")


class History:
    """A history written by hand: ``add`` appends an event, ``end_step`` marks the step's last."""

    def __init__(self, workflow: Any, *args: Any, rules: int | None = REPLAY_RULES) -> None:
        self.events: list[Event] = []
        started = {"name": workflow.name, "task_queue": "q", "args": encode_args(args, {})}
        if rules is not None:  # None: a run started before the rules were recorded (rule 1)
            started["rules"] = rules
        self.add(E.WORKFLOW_STARTED, **started)

    def add(self, etype: E, at: float = 0.0, **attrs: Any) -> int:
        seq = len(self.events) + 1
        self.events.append(Event(seq, etype, T0 + timedelta(seconds=at), attrs))
        return seq

    def end_step(self) -> History:
        self.events[-1].ends_step = True
        return self


def replayed(workflow: Any, history: History) -> WorkflowInstance:
    return WorkflowInstance.replayed(workflow, "wf", "run-1", history.events)


def scheduled(name: str) -> dict[str, Any]:
    return {"name": name, "task_queue": "q", "args": encode_args(["x"], {}), "retry": None}


def live_step(instance: WorkflowInstance, *incoming: tuple[E, dict[str, Any]]) -> list[Event]:
    instance.run_step(list(incoming))
    return instance.take_output().events


@durable.workflow
async def greeting(ctx: WorkflowContext, name: str) -> str:
    return await ctx.activity(greet, name)


@durable.workflow
async def greeting_changed(ctx: WorkflowContext, name: str) -> str:
    return await ctx.activity(shout, name)


@durable.workflow
async def greeting_shortened(ctx: WorkflowContext, name: str) -> str:
    return str(await ctx.wait_signal("name"))  # the activity is gone


def greeting_history(*, completed: bool) -> History:
    history = History(greeting, "x")
    scheduled_seq = history.add(E.ACTIVITY_SCHEDULED, **scheduled("greet"))
    history.end_step()
    if completed:
        history.add(E.ACTIVITY_COMPLETED, at=1, scheduled=scheduled_seq, result=encode("hi x"))
        history.add(E.WORKFLOW_COMPLETED, at=1, result=encode("hi x"))
        history.end_step()
    return history


def test_a_completed_history_replays_to_its_end_and_records_nothing() -> None:
    instance = replayed(greeting, greeting_history(completed=True))
    assert instance.closed
    assert instance.completed_steps == 2
    output = instance.take_output()
    assert (output.events, output.rejected_updates, output.next_seq) == ([], [], 5)


def test_an_activity_of_another_name_than_recorded_is_nondeterminism() -> None:
    with pytest.raises(NondeterminismError, match=r"issued ACTIVITY_SCHEDULED\(name='shout'\)"):
        replayed(greeting_changed, greeting_history(completed=True))


def test_a_recorded_command_the_code_no_longer_issues_is_nondeterminism() -> None:
    with pytest.raises(NondeterminismError, match="the code did not issue it"):
        replayed(greeting_shortened, greeting_history(completed=True))


def test_a_live_step_records_its_commands_the_last_one_ending_it() -> None:
    history = History(greeting, "x")  # the start, its step not completed yet
    instance = replayed(greeting, history)
    assert instance.completed_steps == 0
    (event,) = live_step(instance)
    assert (event.type, event.seq, event.attrs["name"], event.ends_step) == (
        E.ACTIVITY_SCHEDULED,
        2,
        "greet",
        True,
    )
    events = live_step(instance, (E.ACTIVITY_COMPLETED, {"scheduled": 2, "result": encode("hi")}))
    assert [(e.type, e.ends_step) for e in events] == [
        (E.ACTIVITY_COMPLETED, False),
        (E.WORKFLOW_COMPLETED, True),
    ]
    assert decode(events[-1].attrs["result"], str) == "hi"
    assert instance.closed


def test_a_replayed_run_goes_on_live_where_its_history_ends() -> None:
    instance = replayed(greeting, greeting_history(completed=False))
    assert not instance.closed and instance.completed_steps == 1
    events = live_step(instance, (E.ACTIVITY_COMPLETED, {"scheduled": 2, "result": encode("hi")}))
    assert [e.seq for e in events] == [3, 4]
    assert instance.closed


@durable.workflow
async def mailbox(ctx: WorkflowContext) -> list[str]:
    received: list[str] = []
    ctx.on_signal("a", lambda: received.append("a"))
    ctx.on_update("b", lambda: received.append("b") or len(received))
    await ctx.wait_until(lambda: "a" in received)
    return received


@pytest.mark.parametrize(("rules", "returned"), [(None, ["a", "b"]), (REPLAY_RULES, ["a"])])
def test_every_message_of_a_step_reaches_its_handler_before_the_run_closes(
    rules: int | None, returned: list[str]
) -> None:
    """Under rule 2 the code returns on the first message (the second has not arrived yet
    in its eyes), and the second still reaches its handler before the run closes."""
    instance = replayed(mailbox, History(mailbox, rules=rules))
    live_step(instance)
    events = live_step(
        instance,
        (E.SIGNAL_RECEIVED, {"name": "a", "args": encode_args([], {})}),
        (E.UPDATE_ACCEPTED, {"update_id": "u", "name": "b", "args": encode_args([], {})}),
    )
    assert [e.type for e in events][-2:] == [E.UPDATE_COMPLETED, E.WORKFLOW_COMPLETED]
    assert decode(events[-2].attrs["result"], int) == 2
    assert decode(events[-1].attrs["result"], list[str]) == returned


@durable.workflow
async def sleeper(ctx: WorkflowContext) -> str:
    before = ctx.now()
    await ctx.sleep(5)
    return f"{(ctx.now() - before).total_seconds():g}"


def test_timers_run_on_the_workflow_clock_of_the_recorded_steps() -> None:
    history = History(sleeper)
    timer = history.add(E.TIMER_STARTED, fire_at=(T0 + timedelta(seconds=5)).timestamp())
    history.end_step()
    history.add(E.TIMER_FIRED, at=7, started=timer)  # fired late: the step's time is 7 s
    history.add(E.WORKFLOW_COMPLETED, at=7, result=encode("7"))
    history.end_step()
    instance = replayed(sleeper, history)
    assert instance.closed


def test_a_live_timer_is_due_at_its_step_time_plus_its_duration() -> None:
    instance = replayed(sleeper, History(sleeper))
    (event,) = live_step(instance)
    step_time = event.timestamp
    assert event.type is E.TIMER_STARTED
    assert event.attrs["fire_at"] == pytest.approx((step_time + timedelta(seconds=5)).timestamp())
    assert instance.take_output().next_due == datetime.fromtimestamp(event.attrs["fire_at"], tz=UTC)


@durable.workflow
async def patched_greeting(ctx: WorkflowContext, name: str) -> str:
    if ctx.patched("shout"):
        return await ctx.activity(shout, name)
    return await ctx.activity(greet, name)


def test_a_patch_follows_history_on_replay_and_is_recorded_live() -> None:
    old = replayed(patched_greeting, greeting_history(completed=True))  # recorded before it
    assert old.closed
    fresh = replayed(patched_greeting, History(patched_greeting, "x"))
    events = live_step(fresh)
    assert [(e.type, e.attrs.get("change_id") or e.attrs.get("name")) for e in events] == [
        (E.PATCH, "shout"),
        (E.ACTIVITY_SCHEDULED, "shout"),
    ]


CALLS: list[int] = []


def _roll() -> int:
    CALLS.append(1)
    return 4


@durable.workflow
async def rolls(ctx: WorkflowContext) -> int:
    value = await ctx.side_effect(_roll)
    await ctx.sleep(1)
    return value


def test_a_side_effect_replays_its_recorded_value_without_running_again() -> None:
    history = History(rolls)
    history.add(E.SIDE_EFFECT, value=encode(9))
    history.add(E.TIMER_STARTED, fire_at=(T0 + timedelta(seconds=1)).timestamp())
    history.end_step()
    CALLS.clear()
    instance = replayed(rolls, history)
    events = live_step(instance, (E.TIMER_FIRED, {"started": 3}))
    assert CALLS == []
    assert decode(events[-1].attrs["result"], int) == 9


@durable.workflow
async def counter(ctx: WorkflowContext) -> None:
    count = [0]
    ctx.on_query("count", lambda: count[0])
    ctx.on_query("meddle", lambda: ctx.continue_as_new())
    ctx.on_signal("add", lambda: count.__setitem__(0, count[0] + 1))
    await ctx.wait_signal("never")


def test_a_query_reads_state_and_one_that_changes_the_run_fails_alone() -> None:
    instance = replayed(counter, History(counter))
    live_step(instance, (E.SIGNAL_RECEIVED, {"name": "add", "args": encode_args([], {})}))
    assert decode(instance.query("count", encode_args([], {})), int) == 1
    with pytest.raises(QueryError, match="must not change the workflow"):
        instance.query("meddle", encode_args([], {}))
    assert instance.tainted  # the worker replays it from history before its next step
    assert not instance.closed
    assert instance.take_output().events == []


def test_a_second_outcome_of_one_activity_is_a_corrupt_history() -> None:
    history = greeting_history(completed=False)
    history.add(E.ACTIVITY_COMPLETED, at=1, scheduled=2, result=encode("hi"))
    history.add(E.ACTIVITY_COMPLETED, at=1, scheduled=2, result=encode("again"))
    history.add(E.WORKFLOW_COMPLETED, at=1, result=encode("hi"))
    history.end_step()
    with pytest.raises(NondeterminismError, match="corrupt history"):
        replayed(greeting, history)


def _positive(value: int) -> None:
    if value <= 0:
        raise ValueError(f"{value} is not positive")


@durable.workflow
async def adder(ctx: WorkflowContext) -> int:
    total = [0]

    def add(value: int) -> int:
        total[0] += value
        return total[0]

    ctx.on_update("add", add, validator=_positive)
    await ctx.wait_until(lambda: total[0] >= 5)
    return total[0]


def test_an_update_its_validator_refuses_is_not_recorded() -> None:
    instance = replayed(adder, History(adder))
    live_step(instance)
    instance.run_step(
        [
            (E.UPDATE_ACCEPTED, {"update_id": "u1", "name": "add", "args": encode_args([-1], {})}),
            (E.UPDATE_ACCEPTED, {"update_id": "u2", "name": "add", "args": encode_args([5], {})}),
        ]
    )
    events, rejected, *_ = instance.take_output()
    assert [(update_id, failure.get("message")) for update_id, failure in rejected] == [
        ("u1", "-1 is not positive")
    ]
    assert [e.type for e in events] == [E.UPDATE_ACCEPTED, E.UPDATE_COMPLETED, E.WORKFLOW_COMPLETED]
    assert events[0].attrs["update_id"] == "u2"


@durable.activity
def lookup(key: str) -> str:
    raise AssertionError("local activities run in the worker, not in the replayer")


@durable.workflow
async def local_lookup(ctx: WorkflowContext) -> str:
    return await ctx.local_activity(lookup, "k")


def test_a_local_activity_is_left_to_the_worker_and_its_outcome_resolves_it() -> None:
    instance = replayed(local_lookup, History(local_lookup))
    assert live_step(instance)[0].type is E.STEP_COMPLETED  # nothing but the step's end
    (call,), stopped = instance.local_activity_changes()
    assert stopped == []
    assert (call.local_id, call.definition.name, call.args) == (1, "lookup", ("k",))
    assert instance.runs_local_activities
    outcome = {"local_id": 1, "name": "lookup", "result": encode("v")}
    events = live_step(instance, (E.LOCAL_ACTIVITY_COMPLETED, outcome))
    assert decode(events[-1].attrs["result"], str) == "v"


def test_a_cancel_request_cancels_the_body() -> None:
    instance = replayed(greeting, greeting_history(completed=False))
    events = live_step(instance, (E.CANCEL_REQUESTED, {"reason": "enough"}))
    assert [e.type for e in events][-2:] == [E.ACTIVITY_CANCEL_REQUESTED, E.WORKFLOW_CANCELLED]


@durable.workflow
async def racing(ctx: WorkflowContext) -> list[str]:
    first = asyncio.ensure_future(ctx.activity(greet, "a"))
    second = asyncio.ensure_future(ctx.activity(shout, "b"))
    done, _ = await asyncio.wait([first, second], return_when=asyncio.ALL_COMPLETED)
    return [str(ctx.random().random()), *sorted(t.result() for t in done)]


def test_the_same_history_replays_the_same_way_in_every_instance() -> None:
    instance = replayed(racing, History(racing))
    live_step(instance)
    outcomes = [
        (E.ACTIVITY_COMPLETED, {"scheduled": 3, "result": encode("B")}),
        (E.ACTIVITY_COMPLETED, {"scheduled": 2, "result": encode("A")}),
    ]
    first = decode(live_step(instance, *outcomes)[-1].attrs["result"], list[str])
    again = replayed(racing, History(racing))
    live_step(again)
    assert decode(live_step(again, *outcomes)[-1].attrs["result"], list[str]) == first


@durable.workflow
async def first_of_two(ctx: WorkflowContext) -> int:
    calls = [ctx.start_activity(greet, "a"), ctx.start_activity(shout, "b")]
    done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    return len(done)


def _both_done_in_one_step(rules: int | None) -> History:
    history = History(first_of_two, rules=rules)
    history.add(E.ACTIVITY_SCHEDULED, **scheduled("greet"))
    history.add(E.ACTIVITY_SCHEDULED, **scheduled("shout"))
    history.end_step()
    history.add(E.ACTIVITY_COMPLETED, at=1, scheduled=2, result=encode("A"))
    history.add(E.ACTIVITY_COMPLETED, at=1, scheduled=3, result=encode("B"))
    return history


@pytest.mark.parametrize(("rules", "done"), [(None, 2), (1, 2), (REPLAY_RULES, 1)])
def test_a_step_runs_the_code_after_each_event_or_after_all_as_its_run_s_rules_say(
    rules: int | None, done: int
) -> None:
    """Rule 2: the code runs after each incoming event (the first outcome ends the wait);
    rule 1, for runs started before it: after all of the step's events (both are done)."""
    live = replayed(first_of_two, _both_done_in_one_step(rules))
    events = live_step(live)
    assert [e.type for e in events] == [E.WORKFLOW_COMPLETED]
    assert decode(events[0].attrs["result"], int) == done
    recorded = _both_done_in_one_step(rules)
    recorded.events.extend(events)
    assert replayed(first_of_two, recorded).closed  # and it replays so


@durable.workflow
async def echoes(ctx: WorkflowContext) -> None:
    async def echo(word: str) -> None:
        await ctx.activity(greet, word)

    ctx.on_signal("say", echo)
    await ctx.wait_signal("never")


def test_commands_are_recorded_between_the_events_that_caused_them_and_replay_so() -> None:
    instance = replayed(echoes, History(echoes))
    live_step(instance)
    say = [(E.SIGNAL_RECEIVED, {"name": "say", "args": encode_args([w], {})}) for w in "ab"]
    events = live_step(instance, *say)
    assert [e.type for e in events] == [
        E.SIGNAL_RECEIVED,
        E.ACTIVITY_SCHEDULED,
        E.SIGNAL_RECEIVED,
        E.ACTIVITY_SCHEDULED,
    ]
    history = History(echoes)
    history.add(E.STEP_COMPLETED)
    history.end_step()
    history.events.extend(events)
    again = replayed(echoes, history)
    assert again.completed_steps == 2 and again.take_output().events == []
    history.events[3:5] = [history.events[4], history.events[3]]  # the command before its cause
    with pytest.raises(NondeterminismError):
        replayed(echoes, history)


@durable.workflow
async def patched_on_signal(ctx: WorkflowContext) -> str:
    word = await ctx.wait_signal("first")
    if ctx.patched("loud"):
        word = str(word).upper()
    await ctx.wait_signal("second")
    return str(word)


def test_a_patch_recorded_between_events_is_skipped_by_code_that_dropped_it() -> None:
    history = History(patched_on_signal)
    history.add(E.STEP_COMPLETED)
    history.end_step()
    history.add(E.SIGNAL_RECEIVED, at=1, name="first", args=encode_args(["hi"], {}))
    history.add(E.PATCH, at=1, change_id="loud")
    history.add(E.SIGNAL_RECEIVED, at=1, name="second", args=encode_args([], {}))
    history.add(E.WORKFLOW_COMPLETED, at=1, result=encode("HI"))
    history.end_step()
    assert replayed(patched_on_signal, history).closed
    assert replayed(greeting_shortened_to_signals, history).closed


@durable.workflow
async def greeting_shortened_to_signals(ctx: WorkflowContext) -> str:
    word = await ctx.wait_signal("first")
    await ctx.wait_signal("second")
    return str(word).upper()  # the patch deprecated and removed


def test_the_first_step_runs_at_the_start_s_time_plus_its_delay() -> None:
    instance = replayed(sleeper, History(sleeper))
    (event,) = live_step(instance)
    assert event.timestamp == T0
    delayed = History(sleeper)
    delayed.events[0].attrs["start_delay"] = 2.5
    (event,) = live_step(replayed(sleeper, delayed))
    assert event.timestamp == T0 + timedelta(seconds=2.5)
    assert event.attrs["fire_at"] == (T0 + timedelta(seconds=7.5)).timestamp()


@durable.workflow
async def changes_its_mind(ctx: WorkflowContext, name: str) -> str:
    ctx.start_activity(shout, "x").cancel()  # never sent: not recorded
    ctx.start_activity(greet, "x").cancel()  # the same name as the one that follows
    return await ctx.activity(greet, "x")


@durable.workflow
async def changes_its_mind_less(ctx: WorkflowContext, name: str) -> str:
    ctx.start_activity(shout, "x")  # no longer cancelled: a command history lacks
    return await ctx.activity(greet, "x")


def test_work_taken_back_at_once_is_not_recorded_and_replays() -> None:
    instance = replayed(changes_its_mind, History(changes_its_mind, "x"))
    (event,) = live_step(instance)
    assert (event.seq, event.type, event.attrs["name"]) == (2, E.ACTIVITY_SCHEDULED, "greet")
    history = greeting_history(completed=True)
    history.events[0].attrs["rules"] = REPLAY_RULES
    assert replayed(changes_its_mind, history).closed
    with pytest.raises(NondeterminismError, match=r"issued ACTIVITY_SCHEDULED\(name='shout'\)"):
        replayed(changes_its_mind_less, history)


def test_under_rule_1_work_taken_back_is_recorded_and_replays_so() -> None:
    history = History(changes_its_mind, "x", rules=None)
    for name in ("shout", "greet"):
        seq = history.add(E.ACTIVITY_SCHEDULED, **scheduled(name))
        history.add(E.ACTIVITY_CANCEL_REQUESTED, scheduled=seq)
    history.add(E.ACTIVITY_SCHEDULED, **scheduled("greet"))
    history.end_step()
    instance = replayed(changes_its_mind, history)
    assert instance.completed_steps == 1 and instance.take_output().events == []


@durable.workflow
async def waits_for_a_word(ctx: WorkflowContext) -> list[str]:
    words: list[str] = []
    while len(words) < 2:
        try:
            words.append(str(await ctx.wait_signal("word", timeout=3)))
        except TimeoutError:
            words.append("(timeout)")
    return words


def test_a_timer_the_code_cancelled_as_an_earlier_message_came_is_not_delivered() -> None:
    """The signal and the timeout of its wait come in one step: the signal, first, ends the
    wait and cancels the timer, whose message is then dropped (under rule 1 both were
    delivered before the code ran: the timer, still pending, fired)."""
    instance = replayed(waits_for_a_word, History(waits_for_a_word))
    (timer,) = live_step(instance)
    word = (E.SIGNAL_RECEIVED, {"name": "word", "args": encode_args(["hi"], {})})
    events = live_step(instance, word, (E.TIMER_FIRED, {"started": timer.seq}))
    assert [e.type for e in events] == [
        E.SIGNAL_RECEIVED,
        E.TIMER_CANCELLED,
        E.TIMER_STARTED,
    ]
    history = History(waits_for_a_word)
    history.events.extend([timer, *events])
    assert replayed(waits_for_a_word, history).completed_steps == 2
