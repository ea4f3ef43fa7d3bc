"""Schedule timetables and decisions, on fixed dates (no database): DST, intervals, jitter,
catch-up, overlap policies, and the bad input ScheduleSpec refuses."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from durable import ScheduleError
from durable._schedules import ScheduleSpec, apply_overlap, due_slots, next_look, slot_label

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def first(spec: ScheduleSpec, after: datetime, n: int) -> list[datetime]:
    return list(itertools.islice(spec.slots_after(after), n))


def local(slots: list[datetime], zone: ZoneInfo) -> list[str]:
    return [s.astimezone(zone).isoformat() for s in slots]


# ------------------------------------------------------------------ cron and DST
def test_a_nightly_cron_fires_at_local_time_in_its_zone() -> None:
    spec = ScheduleSpec.build(cron="0 3 * * *", timezone="Europe/Berlin")
    slots = first(spec, datetime(2026, 7, 1, tzinfo=UTC), 2)
    assert local(slots, BERLIN) == ["2026-07-01T03:00:00+02:00", "2026-07-02T03:00:00+02:00"]
    assert slots[0] == datetime(2026, 7, 1, 1, tzinfo=UTC)


def test_a_slot_in_the_spring_forward_gap_fires_once_when_the_clock_jumps() -> None:
    # 2026-03-29 in Berlin: 02:00 CET becomes 03:00 CEST; 02:30 does not exist
    spec = ScheduleSpec.build(cron="30 2 * * *", timezone="Europe/Berlin")
    slots = first(spec, datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3)
    assert local(slots, BERLIN) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_slot_in_the_repeated_fall_back_hour_fires_once() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST becomes 02:00 CET; 02:30 happens twice
    spec = ScheduleSpec.build(cron="30 2 * * *", timezone="Europe/Berlin")
    slots = first(spec, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3)
    assert local(slots, BERLIN) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_reckoned_from_inside_the_repeated_hour_the_slot_passed_is_not_fired_again() -> None:
    # 02:29 CET (the second 02:29) is after 02:30 CEST: the day's slot has passed
    after = datetime(2026, 10, 25, 1, 29, tzinfo=UTC)
    spec = ScheduleSpec.build(cron="30 2 * * *", timezone="Europe/Berlin")
    (slot,) = first(spec, after, 1)
    assert slot > after
    assert local([slot], BERLIN) == ["2026-10-26T02:30:00+01:00"]


def test_an_hourly_cron_fires_each_real_hour_across_both_transitions() -> None:
    spec = ScheduleSpec.build(cron="@hourly", timezone="America/New_York")
    spring = first(spec, datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK), 3)
    assert local(spring, NEW_YORK) == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]
    fall = first(spec, datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK), 3)
    assert [s - fall[0] for s in fall] == [timedelta(0), timedelta(hours=1), timedelta(hours=2)]


def test_aliases_and_whitespace() -> None:
    assert ScheduleSpec.build(cron="@daily").cron == "0 0 * * *"
    assert ScheduleSpec.build(cron="  */15   * * * * ").cron == "*/15 * * * *"
    spec = ScheduleSpec.build(cron="@weekly")
    (slot,) = first(spec, datetime(2026, 12, 7, tzinfo=UTC), 1)  # a Monday
    assert slot == datetime(2026, 12, 13, tzinfo=UTC)  # Sunday 00:00


def test_start_at_and_end_at_bound_the_slots() -> None:
    spec = ScheduleSpec.build(
        cron="0 * * * *",
        start_at=datetime(2026, 1, 1, 5, tzinfo=UTC),
        end_at=datetime(2026, 1, 1, 7, tzinfo=UTC),
    )
    slots = list(spec.slots_after(datetime(2026, 1, 1, tzinfo=UTC)))
    assert [s.hour for s in slots] == [5, 6, 7]  # start_at and end_at inclusive


# ------------------------------------------------------------------ intervals
def test_every_counts_from_the_epoch_plus_the_offset() -> None:
    spec = ScheduleSpec.build(every=timedelta(minutes=15), offset=timedelta(minutes=5))
    slots = first(spec, datetime(2026, 5, 5, 10, 7, tzinfo=UTC), 3)
    assert [s.strftime("%H:%M") for s in slots] == ["10:20", "10:35", "10:50"]
    exact = first(spec, datetime(2026, 5, 5, 10, 20, tzinfo=UTC), 1)
    assert exact[0].strftime("%H:%M") == "10:35"  # strictly after


def test_every_ignores_daylight_saving() -> None:
    spec = ScheduleSpec.build(every=timedelta(hours=1), timezone="Europe/Berlin")
    slots = first(spec, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 3)
    assert [s - slots[0] for s in slots] == [timedelta(0), timedelta(hours=1), timedelta(hours=2)]


# ------------------------------------------------------------------ jitter and labels
def test_jitter_is_the_same_for_the_same_slot_and_within_bounds() -> None:
    spec = ScheduleSpec.build(every=timedelta(minutes=1), jitter=timedelta(seconds=30))
    slots = first(spec, datetime(2026, 1, 1, tzinfo=UTC), 50)
    jitters = [spec.jitter_for("nightly", s) for s in slots]
    assert jitters == [spec.jitter_for("nightly", s) for s in slots]
    assert all(timedelta(0) <= j < timedelta(seconds=30) for j in jitters)
    assert len(set(jitters)) > 40  # spread, not one value
    assert jitters != [spec.jitter_for("other", s) for s in slots]
    assert ScheduleSpec.build(every=timedelta(minutes=1)).jitter_for("x", slots[0]) == timedelta(0)


def test_slot_labels_are_iso_utc() -> None:
    assert slot_label(datetime(2026, 3, 29, 3, tzinfo=BERLIN)) == "2026-03-29T01:00:00Z"
    assert slot_label(datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)) == (
        "2026-01-01T00:00:00.123Z"
    )


def test_the_stored_form_round_trips() -> None:
    spec = ScheduleSpec.build(
        cron="5 4 * * MON-FRI",
        timezone="Asia/Tokyo",
        jitter=timedelta(seconds=9),
        start_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert ScheduleSpec.from_json(spec.to_json()) == spec
    interval = ScheduleSpec.build(every=timedelta(hours=2), offset=timedelta(minutes=1))
    assert ScheduleSpec.from_json(interval.to_json()) == interval


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, "cron="),
        ({"cron": "* * * * *", "every": timedelta(minutes=1)}, "exactly one"),
        ({"cron": "61 * * * *"}, "cron='61 * * * *'"),
        ({"cron": "* * * *"}, "five fields"),
        ({"cron": "* * * * * *"}, "five fields"),
        ({"cron": "@reboot"}, "@reboot"),
        ({"cron": "0 0 30 2 *"}, "cron='0 0 30 2 *'"),
        ({"cron": 5}, "cron must be a string"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"every": timedelta(0)}, "every"),
        ({"every": timedelta(seconds=-5)}, "every"),
        ({"every": timedelta(milliseconds=1500)}, "whole number of seconds"),
        ({"every": 60}, "every must be a datetime.timedelta"),
        ({"every": timedelta(minutes=1), "offset": timedelta(minutes=1)}, "offset="),
        ({"cron": "* * * * *", "offset": timedelta(seconds=5)}, "offset="),
        ({"cron": "* * * * *", "jitter": timedelta(seconds=-1)}, "jitter"),
        ({"cron": "* * * * *", "start_at": datetime(2026, 1, 1)}, "start_at"),
        (
            {
                "cron": "* * * * *",
                "start_at": datetime(2026, 2, 1, tzinfo=UTC),
                "end_at": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "end_at=",
        ),
    ],
)
def test_bad_timetables_are_refused_naming_the_argument(kwargs: dict, names: str) -> None:
    with pytest.raises(ScheduleError, match=None) as raised:
        ScheduleSpec.build(**kwargs)
    assert names in str(raised.value)
    assert isinstance(raised.value, ValueError)


# ------------------------------------------------------------------ catch-up
def test_slots_older_than_the_catchup_window_are_counted_missed() -> None:
    spec = ScheduleSpec.build(every=timedelta(minutes=1))
    down_since = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 11, 0, 30, tzinfo=UTC)  # an hour and a half minute later
    due = due_slots(spec, "s", down_since, timedelta(minutes=5), now)
    assert due.missed == 56  # 10:00 .. 10:55
    assert [s.strftime("%H:%M") for s in due.fire] == ["10:56", "10:57", "10:58", "10:59", "11:00"]
    assert due.next_slot == datetime(2026, 1, 1, 11, 1, tzinfo=UTC)
    assert not due.more


def test_a_long_outage_is_worked_off_in_passes() -> None:
    spec = ScheduleSpec.build(every=timedelta(seconds=1))
    since = datetime(2026, 1, 1, tzinfo=UTC)
    now = since + timedelta(hours=1)
    due = due_slots(spec, "s", since, timedelta(minutes=1), now)
    assert due.more and due.missed + len(due.fire) == 1000
    assert next_look(spec, "s", due.next_slot, [], due.more, now) == now


def test_a_slot_is_not_due_before_its_jittered_time() -> None:
    spec = ScheduleSpec.build(every=timedelta(minutes=1), jitter=timedelta(seconds=50))
    slot = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    fires_at = slot + spec.jitter_for("j", slot)
    early = due_slots(spec, "j", slot, timedelta(minutes=5), fires_at - timedelta(microseconds=1))
    assert early.fire == [] and early.next_slot == slot
    on_time = due_slots(spec, "j", slot, timedelta(minutes=5), fires_at)
    assert on_time.fire == [slot]


# ------------------------------------------------------------------ overlap
T = [datetime(2026, 1, 1, 0, m, tzinfo=UTC) for m in range(6)]


def test_overlap_when_nothing_runs_starts_the_first_and_applies_to_the_rest() -> None:
    assert apply_overlap("skip", T[:3], [], False).start == [T[0]]
    assert apply_overlap("skip", T[:3], [], False).skipped == T[1:3]
    assert apply_overlap("allow_all", T[:3], [], True).start == T[:3]
    one = apply_overlap("buffer_one", T[:3], [], False)
    assert (one.start, one.buffered, one.skipped) == ([T[0]], [T[1]], [T[2]])
    every = apply_overlap("buffer_all", T[:3], [], False)
    assert (every.start, every.buffered) == ([T[0]], T[1:3])


def test_waiting_slots_start_once_the_open_run_closed() -> None:
    still = apply_overlap("buffer_all", [], T[:2], True)
    assert still.start == [] and still.buffered == T[:2]
    closed = apply_overlap("buffer_all", [T[2]], T[:2], False)
    assert closed.start == [T[0]] and closed.buffered == [T[1], T[2]]


def test_cancel_other_asks_the_open_run_to_cancel_and_keeps_the_newest_slot() -> None:
    out = apply_overlap("cancel_other", T[1:3], [], True)
    assert out.cancel_open and out.start == [] and out.buffered == [T[2]] and out.skipped == [T[1]]
    assert not apply_overlap("cancel_other", [], [T[2]], True).cancel_open


def test_terminate_other_terminates_the_open_run_and_starts_the_last_slot() -> None:
    out = apply_overlap("terminate_other", T[1:4], [], True)
    assert out.terminate_open and out.start == [T[3]] and out.skipped == T[1:3]
    quiet = apply_overlap("terminate_other", [T[1]], [], False)
    assert not quiet.terminate_open and quiet.start == [T[1]]


def test_a_schedule_with_waiting_slots_looks_again_soon() -> None:
    spec = ScheduleSpec.build(cron="0 3 * * *")
    now = datetime(2026, 1, 1, 4, tzinfo=UTC)
    nxt = datetime(2026, 1, 2, 3, tzinfo=UTC)
    assert next_look(spec, "s", nxt, [], False, now) == nxt
    assert next_look(spec, "s", nxt, [T[0]], False, now) == now + timedelta(seconds=1)
    assert next_look(spec, "s", None, [], False, now) is None


def test_a_transaction_of_many_schedules_takes_a_share_of_their_missed_slots() -> None:
    spec = ScheduleSpec.build(every=timedelta(seconds=1))
    since = datetime(2026, 1, 1, tzinfo=UTC)
    now = since + timedelta(hours=1)
    due = due_slots(spec, "s", since, timedelta(hours=2), now, share=4)
    assert len(due.fire) == 4 and due.more and due.next_slot == since + timedelta(seconds=4)
