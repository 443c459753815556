"""Admission without sockets: places for opening connections, seats, the limits per address, and each address's budgets."""

from chat.admission import SERVER_BUSY, Admission, Arrival, Seat, address_in, address_key
from chat.core.addresses import format_peer, unmapped
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
    assert address_key("fe80::1%eth0") == "fe80::/64"
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


def arrived(admission: Admission, host: str) -> Arrival:
    arrival = admission.arrive(host)
    assert isinstance(arrival, Arrival), arrival
    return arrival


def test_an_ipv6_client_is_counted_by_its_64_bit_network_one_home_or_phone():
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    admission = Admission(Limits(max_per_address=1, **COUNTED))
    admitted(admission, "2001:db8:1:2::5")
    assert "Too many connections" in admission.admit("2001:db8:1:2::6")
    admitted(admission, "2001:db8:1:3::5")


def test_connections_still_opening_are_limited_per_address_and_hold_no_seat():
    # Before: half-open HTTP heads held seats, and 12 addresses kept out everyone.
    admission = Admission(Limits(max_clients=5, max_opening_per_address=2, **COUNTED))
    openings = [arrived(admission, "10.0.0.1") for _ in range(2)]
    assert admission.arrive("10.0.0.1") == (
        "Too many connections from your address are opening at once (limit: 2). Try again in a few seconds."
    )
    seats = [admitted(admission, f"10.0.1.{n}") for n in range(5)]  # every seat is still there for others
    assert "Server is full" in admission.seat(openings[0])
    seats[0].release()
    admitted(admission, "10.0.0.1")  # its place among those opening was given back


def test_when_every_opening_place_is_taken_the_oldest_opening_connection_makes_room():
    # Before: twenty addresses with ten half-sent heads each could keep every newcomer out.
    admission = Admission(Limits(max_opening=2))
    first, second = arrived(admission, "127.0.0.1"), arrived(admission, "10.0.0.2")
    closed = []
    first.on_evict, second.on_evict = lambda: closed.append("first"), lambda: closed.append("second")
    newcomer = arrived(admission, "10.0.0.3")
    assert closed == ["first"] and first.evicted and not second.evicted
    arrived(admission, "10.0.0.4")
    assert closed == ["first", "second"]
    assert admission.seat(first) == SERVER_BUSY  # closed to make room: it may not join
    assert isinstance(admission.seat(newcomer), Seat)


def test_while_as_many_are_being_closed_as_there_are_places_a_newcomer_is_told_the_server_is_busy():
    admission = Admission(Limits(max_opening=1))
    first = arrived(admission, "10.0.0.1")
    arrived(admission, "10.0.0.2")  # the first is being closed for it
    assert admission.arrive("10.0.0.3") == SERVER_BUSY
    first.release()  # it closed
    third = arrived(admission, "10.0.0.3")  # and the second is being closed for this one
    admission.seat(third)
    assert admission.arrive("10.0.0.4") == SERVER_BUSY  # only closing ones are left


def test_new_connections_from_one_address_are_limited_per_second_after_a_burst(clock):
    admission = Admission(Limits(max_connect_rate=2, max_connect_burst=3, **COUNTED), clock=clock)
    for _ in range(3):
        arrived(admission, "10.0.0.1").release()
    assert admission.arrive("10.0.0.1") == (
        "Too many new connections from your address (limit: 2 a second). Try again in a few seconds."
    )
    arrived(admission, "10.0.0.2")  # another address is not held up
    clock.advance(0.5)
    arrived(admission, "10.0.0.1")


def test_joins_from_one_address_are_limited_per_second_after_a_burst(clock):
    # Before: one address reconnected a thousand times a second, and everyone heard of each.
    admission = Admission(Limits(max_join_rate=2, max_join_burst=3, **COUNTED), clock=clock)
    for _ in range(3):
        admitted(admission, "10.0.0.1").release()
    assert admission.admit("10.0.0.1") == (
        "Too many joins from your address (limit: 2 a second). Try again in a few seconds."
    )
    admitted(admission, "10.0.0.2")
    clock.advance(0.5)
    admitted(admission, "10.0.0.1")


def test_a_class_of_fifty_behind_one_router_loads_the_page_at_once(clock):
    # Each page load is four connections (the page, its script and style, the WebSocket).
    admission = Admission(Limits(**COUNTED), clock=clock)
    for _ in range(50 * 4):
        arrived(admission, "10.0.0.1").release()  # answered, or seated, in milliseconds


def test_a_class_behind_one_router_gets_forty_connections_in_within_a_few_seconds(clock):
    admission = Admission(Limits(**COUNTED), clock=clock)
    admitted_at = []
    while len(admitted_at) < 40:
        if isinstance(admission.admit("10.0.0.1"), Seat):
            admitted_at.append(clock.now)
        else:
            clock.advance(0.1)
    assert admitted_at[-1] <= admitted_at[0] + 3


def test_loopback_is_exempt_from_the_rates_of_new_connections_and_joins(clock):
    admission = Admission(Limits(max_connect_rate=1, max_connect_burst=1, max_join_rate=1, max_join_burst=1), clock=clock)
    for _ in range(10):
        admitted(admission, "127.0.0.1").release()


def test_a_trusted_proxy_is_exempt_at_arrival_and_its_client_is_counted_when_seated(clock):
    limits = Limits(max_per_address=1, max_opening_per_address=1, **COUNTED)
    admission = Admission(limits, trusted_proxies=("10.0.0.9",), clock=clock)
    first, second = arrived(admission, "10.0.0.9"), arrived(admission, "10.0.0.9")
    assert isinstance(admission.seat(first, "203.0.113.7"), Seat)
    assert "Too many connections" in admission.seat(second, "203.0.113.7")
    assert isinstance(admission.seat(arrived(admission, "10.0.0.9"), "203.0.113.8"), Seat)


def test_an_address_may_announce_so_many_joins_a_minute_whatever_its_reconnections(clock):
    admission = Admission(Limits(max_join_notices_per_minute=3, **COUNTED), clock=clock)
    announced = []
    for _ in range(5):
        seat = admitted(admission, "10.0.0.1")
        announced.append(seat.may_announce())
        seat.release()  # gone before it comes back: the budget is remembered all the same
    assert announced == [True, True, True, False, False]
    clock.advance(20)
    assert admitted(admission, "10.0.0.1").may_announce()
    assert admitted(admission, "10.0.0.2").may_announce()


def test_loopback_joins_are_always_announced():
    admission = Admission(Limits(max_join_notices_per_minute=1))
    assert all(admitted(admission, "127.0.0.1").may_announce() for _ in range(5))


def test_an_address_a_proxy_names_loses_its_zone_which_could_be_any_text():
    assert address_in("[fe80::1%eth0]:80") == "fe80::1"
    assert address_in("fe80::1%\x9b31mFORGED") == "fe80::1"
    assert address_in("203.0.113.9:5000") == "203.0.113.9"
    assert address_in("not an address") is None


def test_an_ipv4_client_of_a_dual_stack_listener_is_logged_and_counted_as_itself():
    assert unmapped(("::ffff:127.0.0.1", 5000, 0, 0)) == ("127.0.0.1", 5000)
    assert unmapped(("::1", 5000, 0, 0)) == ("::1", 5000)
    assert format_peer(unmapped(("::ffff:10.0.0.2", 5000, 0, 0))) == "('10.0.0.2', 5000)"
    assert format_peer(("2001:db8::7", 5000)) == "[2001:db8::7]:5000"
