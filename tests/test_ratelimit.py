import pytest

from chat.core.ratelimit import TokenBucket
from tests.helpers import FakeClock


def test_a_burst_passes_then_lines_are_refused():
    bucket = TokenBucket(10, 20, clock=FakeClock())
    assert [bucket.allow() for _ in range(21)] == [True] * 20 + [False]


def test_tokens_come_back_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(10, 20, clock=clock)
    for _ in range(20):
        bucket.allow()
    clock.now += 0.1
    assert bucket.allow() and not bucket.allow()


def test_a_long_pause_refills_only_up_to_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(10, 20, clock=clock)
    clock.now += 3600
    assert sum(bucket.allow() for _ in range(100)) == 20


def test_nonsense_settings_are_refused():
    with pytest.raises(ValueError):
        TokenBucket(0, 20)
