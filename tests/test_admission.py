"""Admission without sockets: seats, the limits per address, and each address's flood budget."""

from chat.admission import Admission, Seat, address_key
from chat.config import Limits

# Loopback is exempt in production; these tests count every address.
COUNTED = dict(exempt_loopback=False, max_address_rate=5)


def admitted(admission: Admission, host: str) -> Seat:
    seat = admission.admit(host)
    assert isinstance(seat, Seat), seat
    return seat


def drain(seat: Seat) -> None:
    while seat.address_budget.allow():
        pass


def test_a_new_address_gets_a_full_budget_of_twice_its_rate():
    seat = admitted(Admission(Limits(**COUNTED)), "10.0.0.1")
    assert (seat.address_budget.rate, seat.address_budget.burst) == (5, 10)
    assert seat.address_budget.available() == 10


def test_connections_from_one_address_share_its_budget():
    admission = Admission(Limits(**COUNTED))
    first = admitted(admission, "10.0.0.1")
    second = admitted(admission, "10.0.0.1")
    assert second.address_budget is first.address_budget


def test_connections_from_different_addresses_have_budgets_of_their_own():
    admission = Admission(Limits(**COUNTED))
    first = admitted(admission, "10.0.0.1")
    drain(first)
    other = admitted(admission, "10.0.0.2")
    assert other.address_budget is not first.address_budget
    assert other.address_budget.available() == 10


def test_an_address_keeps_its_drained_budget_while_one_of_its_connections_remains():
    # One line per 100 s: the drained budget stays empty for the whole test.
    admission = Admission(Limits(exempt_loopback=False, max_address_rate=0.01))
    first = admitted(admission, "10.0.0.1")
    second = admitted(admission, "10.0.0.1")
    drain(first)
    first.release()
    third = admitted(admission, "10.0.0.1")
    assert third.address_budget is second.address_budget
    assert not third.address_budget.allow()


def test_an_address_whose_last_connection_is_gone_starts_again_with_a_full_budget():
    admission = Admission(Limits(**COUNTED))
    seats = [admitted(admission, "10.0.0.1") for _ in range(3)]
    drained = seats[0].address_budget
    drain(seats[0])
    for seat in seats:
        seat.release()
    again = admitted(admission, "10.0.0.1")
    assert again.address_budget is not drained
    assert again.address_budget.available() == 10


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address():
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("fe80::1%eth0") == "fe80::1"
    admission = Admission(Limits(**COUNTED))
    assert admitted(admission, "::ffff:10.0.0.1").address_budget is admitted(admission, "10.0.0.1").address_budget


def test_the_limit_per_address_refuses_one_more_and_a_release_makes_room():
    admission = Admission(Limits(max_per_address=2, **COUNTED))
    first = admitted(admission, "10.0.0.1")
    admitted(admission, "10.0.0.1")
    assert admission.admit("10.0.0.1") == (
        "Too many connections from your address (limit: 2). Close one, or try again later."
    )
    admitted(admission, "10.0.0.2")
    first.release()
    admitted(admission, "10.0.0.1")


def test_a_full_server_refuses_everyone_and_a_release_makes_room():
    admission = Admission(Limits(max_clients=2, **COUNTED))
    first = admitted(admission, "10.0.0.1")
    admitted(admission, "10.0.0.2")
    assert admission.admit("10.0.0.3") == "Server is full (2 users). Try again later."
    first.release()
    admitted(admission, "10.0.0.3")


def test_the_full_server_message_says_user_for_a_limit_of_one():
    admission = Admission(Limits(max_clients=1, **COUNTED))
    admitted(admission, "10.0.0.1")
    assert admission.admit("10.0.0.2") == "Server is full (1 user). Try again later."


def test_releasing_a_seat_twice_frees_it_once():
    admission = Admission(Limits(max_clients=2, **COUNTED))
    first = admitted(admission, "10.0.0.1")
    admitted(admission, "10.0.0.2")
    first.release()
    first.release()
    admitted(admission, "10.0.0.3")
    assert admission.admit("10.0.0.4") == "Server is full (2 users). Try again later."


def test_loopback_is_exempt_from_the_limit_per_address_and_has_no_budget():
    admission = Admission(Limits(max_per_address=1, max_clients=3))
    seats = [admitted(admission, host) for host in ("127.0.0.1", "127.0.0.1", "::1")]
    assert [seat.address_budget for seat in seats] == [None, None, None]
    assert admission.admit("127.0.0.1") == "Server is full (3 users). Try again later."


def test_an_address_rate_of_zero_means_no_budget():
    admission = Admission(Limits(exempt_loopback=False, max_address_rate=0))
    assert admitted(admission, "10.0.0.1").address_budget is None
