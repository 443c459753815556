import math
import threading

import pytest

from chat.core.messages import PASSWORD_NEEDED, PASSWORD_WRONG
from chat.core.password import FailureTracker, password_matches


@pytest.fixture
def tracker(clock) -> FailureTracker:
    return FailureTracker(first_delay_s=1, max_delay_s=8, forget_after_s=600, max_addresses=3, clock=clock)


def test_the_right_password_matches():
    assert password_matches("s3cret", "s3cret")


@pytest.mark.parametrize("given", ["", "s3cre", "s3cret ", "S3CRET", "s3crez", "s3cret\n"])
def test_anything_else_does_not_match(given):
    assert not password_matches(given, "s3cret")


def test_passwords_outside_ascii_are_compared_too():
    assert password_matches("pässwörd 🔑", "pässwörd 🔑")
    assert not password_matches("passwörd 🔑", "pässwörd 🔑")


def test_the_password_lines_are_a_system_notice_and_an_error():
    assert PASSWORD_NEEDED == "[SYSTEM] This chat needs a password: send /pass PASSWORD first."
    assert PASSWORD_WRONG.startswith("[ERROR] ")


def test_an_address_that_never_failed_is_checked_at_once(tracker):
    assert tracker.wait_before_check("10.0.0.1") == 0
    assert tracker.wait_before_check("10.0.0.1") == 0


def test_the_gap_between_checks_doubles_with_each_failure_up_to_the_bound(tracker, clock):
    waits = []
    for _ in range(6):
        tracker.failed("10.0.0.1")
        waits.append(tracker.wait_before_check("10.0.0.1"))
        clock.advance(waits[-1])
    assert waits == [1, 2, 4, 8, 8, 8]


def test_failures_from_one_address_do_not_slow_another(tracker):
    tracker.failed("10.0.0.1")
    tracker.failed("10.0.0.1")
    assert tracker.wait_before_check("10.0.0.2") == 0


def test_time_already_waited_counts(tracker, clock):
    tracker.failed("10.0.0.1")
    tracker.failed("10.0.0.1")  # the next check may come 2 s later
    clock.advance(1.5)
    assert tracker.wait_before_check("10.0.0.1") == pytest.approx(0.5)


def test_attempts_made_at_the_same_time_take_turns(tracker):
    tracker.failed("10.0.0.1")  # checks are now 1 s apart
    assert [tracker.wait_before_check("10.0.0.1") for _ in range(4)] == [1, 2, 3, 4]


def test_an_attempt_whose_turn_is_too_far_away_is_refused(tracker):
    tracker.failed("10.0.0.1")
    waits = [tracker.wait_before_check("10.0.0.1") for _ in range(10)]
    assert waits[:8] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert waits[8:] == [None, None]


def waits_for_two_checks(tracker: FailureTracker, address: str) -> "tuple[float, float]":
    """The waits of two checks from ``address`` made now: the second shows the gap its failures earn."""
    return tracker.wait_before_check(address), tracker.wait_before_check(address)


def test_the_gap_doubles_from_the_first_delay_up_to_the_bound(tracker):
    assert [tracker.delay_after(failures) for failures in range(7)] == [0, 1, 2, 4, 8, 8, 8]


def test_a_success_forgets_the_failures(tracker):
    tracker.failed("10.0.0.1")
    tracker.failed("10.0.0.1")
    tracker.succeeded("10.0.0.1")
    assert len(tracker) == 0
    assert waits_for_two_checks(tracker, "10.0.0.1") == (0, 0)
    tracker.failed("10.0.0.1")  # counted as the first failure again, not the third
    assert waits_for_two_checks(tracker, "10.0.0.1") == (1, 2)


def test_an_address_quiet_for_long_enough_is_forgotten(clock):
    # Without a bound on the gap, the gap tells exactly how many failures are remembered.
    tracker = FailureTracker(first_delay_s=1, max_delay_s=math.inf, forget_after_s=600, clock=clock)
    for _ in range(5):
        tracker.failed("10.0.0.1")
    clock.advance(599)
    assert waits_for_two_checks(tracker, "10.0.0.1") == (0, tracker.delay_after(5))
    assert tracker.delay_after(5) == 16
    clock.advance(1)  # checks are not failures: the last failure was 600 s ago
    assert waits_for_two_checks(tracker, "10.0.0.1") == (0, 0)
    assert len(tracker) == 0


def test_at_most_max_addresses_are_remembered_the_quietest_go_first(tracker, clock):
    for address in ["a", "b", "c", "d"]:
        tracker.failed(address)
        clock.advance(1)
    assert len(tracker) == 3
    assert waits_for_two_checks(tracker, "a") == (0, 0)
    assert [waits_for_two_checks(tracker, address) for address in "bcd"] == [(0, 1), (0, 1), (0, 1)]


def test_a_new_failure_moves_an_address_to_the_back_of_the_line(tracker, clock):
    for address in ["a", "b", "c"]:
        tracker.failed(address)
        clock.advance(1)
    tracker.failed("a")
    tracker.failed("d")
    assert len(tracker) == 3
    assert waits_for_two_checks(tracker, "b") == (0, 0)
    assert waits_for_two_checks(tracker, "a") == (2, 4)  # two failures: checks 2 s apart


def test_expired_records_are_dropped_when_another_address_fails(tracker, clock):
    tracker.failed("a")
    clock.advance(600)
    tracker.failed("b")
    assert len(tracker) == 1


def test_many_threads_failing_at_once_are_all_counted(clock):
    # Without a bound, the gap after 800 failures is 2**799 s: one lost failure would halve it.
    tracker = FailureTracker(first_delay_s=1, max_delay_s=math.inf, clock=clock)
    start = threading.Barrier(8)

    def fail_100_times() -> None:
        start.wait(5)
        for _ in range(100):
            tracker.failed("10.0.0.1")

    threads = [threading.Thread(target=fail_100_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    assert tracker.wait_before_check("10.0.0.1") == tracker.delay_after(800) == 2.0**799


def test_addresses_with_failures_share_a_room_wide_budget_of_checks(clock):
    # Before: 40 addresses checked 400 passwords in 20 s, each at its own pace.
    tracker = FailureTracker(first_delay_s=1, max_delay_s=15, room_rate=2, clock=clock)
    guessers = [f"10.0.0.{n}" for n in range(40)]
    for _ in range(3):  # three failures: guessing
        for address in guessers:
            tracker.failed(address)
    clock.advance(4)  # each address's own delay is over
    waits = [tracker.wait_before_check(address) for address in guessers]
    # Two checks a second, whichever address they come from; a turn past the bound is refused at once.
    assert waits == [n / 2 for n in range(31)] + [None] * 9


def test_a_newcomer_or_a_member_who_mistyped_twice_never_waits_for_the_guessers(clock):
    tracker = FailureTracker(first_delay_s=1, max_delay_s=30, room_rate=2, clock=clock)
    for n in range(100):
        for _ in range(3):
            tracker.failed(f"10.0.0.{n}")
        tracker.wait_before_check(f"10.0.0.{n}")  # the room's turns are booked 30 s ahead
    assert tracker.wait_before_check("10.0.1.1") == 0
    tracker.failed("10.0.1.2")
    tracker.failed("10.0.1.2")
    clock.advance(2)
    assert tracker.wait_before_check("10.0.1.2") == 0


def test_without_a_room_wide_budget_addresses_wait_only_for_themselves(clock):
    tracker = FailureTracker(first_delay_s=1, max_delay_s=30, clock=clock)
    for n in range(40):
        tracker.failed(f"10.0.0.{n}")
    clock.advance(1)
    assert {tracker.wait_before_check(f"10.0.0.{n}") for n in range(40)} == {0}
