"""FloodControl with a clock the test moves: which verdict each line gets, and when."""

import pytest

from chat.core.flood import FloodControl, Verdict
from chat.core.ratelimit import TokenBucket

ALLOWED, TOO_FAST, ADDRESS_TOO_FAST, DROPPED_AGAIN, EXCESS_FLOOD = (
    Verdict.ALLOWED,
    Verdict.TOO_FAST,
    Verdict.ADDRESS_TOO_FAST,
    Verdict.DROPPED_AGAIN,
    Verdict.EXCESS_FLOOD,
)


def verdicts(flood: FloodControl, lines: int) -> "list[Verdict]":
    return [flood.check() for _ in range(lines)]


def test_at_ten_lines_a_second_the_201st_line_dropped_at_once_is_an_excess_flood(clock):
    # A burst of 20 passes; then 10 bursts (200 lines) are dropped, and the next one is too many.
    flood = FloodControl(10, clock=clock)
    assert verdicts(flood, 221) == [ALLOWED] * 20 + [TOO_FAST] + [DROPPED_AGAIN] * 199 + [EXCESS_FLOOD]


def test_at_one_line_a_second_the_21st_line_dropped_at_once_is_an_excess_flood(clock):
    flood = FloodControl(1, clock=clock)
    assert verdicts(flood, 23) == [ALLOWED] * 2 + [TOO_FAST] + [DROPPED_AGAIN] * 19 + [EXCESS_FLOOD]


def test_a_sender_that_goes_on_after_an_excess_flood_stays_one(clock):
    flood = FloodControl(1, clock=clock)
    verdicts(flood, 23)
    assert verdicts(flood, 3) == [EXCESS_FLOOD] * 3


def test_dropped_lines_are_forgiven_at_the_rate(clock):
    flood = FloodControl(1, clock=clock)
    assert verdicts(flood, 22)[-1] is DROPPED_AGAIN  # 20 dropped: at the threshold
    clock.advance(1)  # one line forgiven, and one token back
    assert verdicts(flood, 3) == [ALLOWED, DROPPED_AGAIN, EXCESS_FLOOD]


def test_a_sender_at_twice_its_rate_loses_lines_but_is_never_cut_off(clock):
    flood = FloodControl(1, clock=clock)
    seen = set()
    for _ in range(600):  # five minutes, two lines a second
        seen.update(verdicts(flood, 1))
        clock.advance(0.5)
    assert seen == {ALLOWED, TOO_FAST, DROPPED_AGAIN}


def test_the_first_line_dropped_after_the_count_is_taken_is_announced_again(clock):
    flood = FloodControl(1, clock=clock)
    assert verdicts(flood, 5) == [ALLOWED, ALLOWED, TOO_FAST, DROPPED_AGAIN, DROPPED_AGAIN]
    assert flood.take_dropped() == 3
    assert flood.take_dropped() == 0
    assert verdicts(flood, 2) == [TOO_FAST, DROPPED_AGAIN]


def test_the_address_budget_drops_lines_the_connections_own_bucket_allows(clock):
    address = TokenBucket(2, 4, clock)
    flood = FloodControl(10, address_budget=address, clock=clock)
    assert verdicts(flood, 6) == [ALLOWED] * 4 + [ADDRESS_TOO_FAST, DROPPED_AGAIN]


def test_the_stricter_rate_sets_the_excess_flood_cut_off(clock):
    # The address allows 2 lines a second: 10 bursts of 4 are 40 lines dropped.
    address = TokenBucket(2, 4, clock)
    flood = FloodControl(10, address_budget=address, clock=clock)
    assert verdicts(flood, 45) == [ALLOWED] * 4 + [ADDRESS_TOO_FAST] + [DROPPED_AGAIN] * 39 + [EXCESS_FLOOD]


def test_an_address_budget_alone_is_enforced(clock):
    flood = FloodControl(0, address_budget=TokenBucket(1, 2, clock), clock=clock)
    assert flood.enabled
    assert verdicts(flood, 23) == [ALLOWED] * 2 + [ADDRESS_TOO_FAST] + [DROPPED_AGAIN] * 19 + [EXCESS_FLOOD]


def test_rate_zero_without_an_address_budget_allows_everything(clock):
    flood = FloodControl(0, clock=clock)
    assert not flood.enabled
    assert set(verdicts(flood, 10_000)) == {ALLOWED}
    assert flood.seconds_until_calm() == 0.0


def test_the_flood_is_calm_when_the_slower_bucket_has_a_token_again(clock):
    address = TokenBucket(0.5, 1, clock)
    flood = FloodControl(1, address_budget=address, clock=clock)
    assert verdicts(flood, 2) == [ALLOWED, ADDRESS_TOO_FAST]
    assert flood.seconds_until_calm() == 2.0  # the address's token, at half a line a second
    clock.advance(1.5)
    assert flood.seconds_until_calm() == 0.5
    clock.advance(0.5)
    assert flood.seconds_until_calm() == 0.0
    assert verdicts(flood, 1) == [ALLOWED]
