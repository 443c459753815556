"""The hand-over from relaying threads to a writer thread (the log's and the store's)."""

import threading

from chat.handover import Handover
from tests.helpers import QUIET_PERIOD_S, TIMEOUT_S


def test_items_are_taken_oldest_first_and_those_over_the_bound_are_refused():
    handover = Handover(max_items=2)
    assert handover.put("a") and handover.put("b")
    assert not handover.put("c")  # dropped: the giver counts it
    assert len(handover) == 2
    assert handover.take_all() == ["a", "b"]
    assert handover.put("d") and handover.take_all() == ["d"]


def test_an_item_handed_over_after_taking_wakes_the_taker_again():
    handover = Handover(max_items=10)
    handover.put("a")
    handover.wait()  # returns at once
    assert handover.take_all() == ["a"]
    woken = threading.Event()
    taker = threading.Thread(target=lambda: (handover.wait(), woken.set()))
    taker.start()
    assert not woken.wait(QUIET_PERIOD_S)  # nothing waiting: the taker sleeps
    handover.put("b")
    assert woken.wait(TIMEOUT_S)
    taker.join(TIMEOUT_S)
    assert handover.take_all() == ["b"]
