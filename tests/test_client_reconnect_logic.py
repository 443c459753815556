"""The client's pure parts for history and reconnecting: which replayed lines are new, whose lines
are our own, what the transcript shows, and how long to wait between tries."""

import socket

import pytest

from chat.client.client import away_note, describe_retry_error, retry_delay
from chat.client.completion import Roster
from chat.client.link import KEEPALIVE_IDLE_S, LinkError
from chat.sockets import enable_keepalive
from chat.client.replay import (
    Admitted,
    AwayNote,
    Live,
    OwnNames,
    Replayed,
    Transcript,
    is_public,
    unseen,
)
from chat.client.terminal import render
from chat.core import messages
from chat.core.history import HISTORY_END, history_start

# unseen(): the longest overlap with the end of what was seen.


def test_with_no_overlap_every_replayed_line_is_new():
    assert unseen(["a", "b"], ["c", "d"]) == (["c", "d"], 0)


def test_with_nothing_seen_every_replayed_line_is_new():
    assert unseen([], ["c", "d"]) == (["c", "d"], 0)


def test_an_empty_replay_has_nothing_new():
    assert unseen(["a"], []) == ([], 0)


def test_the_lines_after_the_overlap_are_new():
    assert unseen(["x", "a", "b"], ["a", "b", "c", "d"]) == (["c", "d"], 2)


def test_a_replay_entirely_seen_has_nothing_new():
    assert unseen(["x", "a", "b", "c"], ["a", "b", "c"]) == ([], 3)


def test_a_replay_that_reaches_further_back_than_what_was_seen_overlaps_all_of_it():
    assert unseen(["b", "c"], ["a", "b", "c", "d"]) == (["d"], 2)


def test_a_line_said_again_while_away_is_new_though_identical_to_one_seen():
    assert unseen(["x", "a"], ["x", "a", "a"]) == (["a"], 2)
    assert unseen(["a", "b", "a"], ["a", "b", "a", "c"]) == (["c"], 3)


def test_the_longest_overlap_wins_over_a_later_shorter_one():
    # "b" ends the replay too, but "a", "b" overlaps further.
    assert unseen(["a", "b"], ["a", "b", "c", "b"]) == (["c", "b"], 2)


def test_of_equally_long_overlaps_the_latest_wins():
    assert unseen(["a"], ["a", "b", "a", "c"]) == (["c"], 1)


# unseen(): an overlap counts only if it holds something a person said.

CID_JOINED, CID_LEFT = messages.joined("Cid"), messages.left("Cid")


def test_after_a_server_restart_a_repeated_leave_is_not_taken_for_where_the_client_left_off():
    # Bob saw Cid come and go; the server restarted with an empty history; Dan spoke; Cid came
    # and went again. The same words end both, but what Dan said must not be hidden.
    seen = ["Ann: hi", CID_JOINED, CID_LEFT]
    replayed = [messages.joined("Dan"), "Dan: the meeting moved to 3pm", CID_JOINED, CID_LEFT]
    assert unseen(seen, replayed) == (replayed, 0)


def test_an_overlap_of_notices_only_is_no_overlap():
    assert unseen([CID_LEFT], [CID_LEFT, "Ann: new"]) == ([CID_LEFT, "Ann: new"], 0)
    renamed = messages.renamed("Cid", "Cy")
    assert unseen(["Ann: hi", CID_JOINED, renamed], ["x: y", CID_JOINED, renamed, "* Cy waves"]) == (
        ["x: y", CID_JOINED, renamed, "* Cy waves"],
        0,
    )


def test_an_overlap_holding_a_chat_line_counts_though_notices_follow_it():
    seen = ["Ann: hi", CID_JOINED, CID_LEFT]
    assert unseen(seen, ["Ann: hi", CID_JOINED, CID_LEFT, "Dan: new"]) == (["Dan: new"], 3)


def test_an_overlap_holding_an_action_counts():
    assert unseen(["* Ann waves", CID_LEFT], ["* Ann waves", CID_LEFT, CID_JOINED]) == ([CID_JOINED], 2)


def test_a_longer_overlap_holding_a_chat_line_wins_over_a_later_one_of_notices():
    seen = ["Ann: hi", CID_JOINED, CID_LEFT]
    replayed = ["Ann: hi", CID_JOINED, CID_LEFT, "Dan: new", CID_JOINED, CID_LEFT]
    assert unseen(seen, replayed) == (["Dan: new", CID_JOINED, CID_LEFT], 3)


def test_identical_chat_lines_said_again_among_notices_are_still_matched_at_their_last_saying():
    seen = ["Ann: ok", CID_JOINED, "Ann: ok"]
    replayed = ["Ann: ok", CID_JOINED, "Ann: ok", "Ann: ok", CID_LEFT]
    assert unseen(seen, replayed) == (["Ann: ok", CID_LEFT], 3)


def test_a_replay_of_seen_lines_holding_a_chat_line_has_nothing_new():
    seen = ["Ann: hi", CID_JOINED, CID_LEFT]
    assert unseen(seen, list(seen)) == ([], 3)


def test_a_replay_of_seen_notices_only_is_shown_again_as_notices_alone_cannot_tell():
    assert unseen([CID_JOINED, CID_LEFT], [CID_JOINED, CID_LEFT]) == ([CID_JOINED, CID_LEFT], 0)


def test_public_lines_are_chat_actions_and_renames():
    public = ["Ann: hi", "* Ann waves", messages.renamed("Ann", "Bo")]
    private = [
        messages.joined("Ann"),  # the history keeps no joins or leaves
        messages.left("Ann"),
        "[PM from Ann] psst",
        "[PM to Ann] psst",
        messages.error("No user named Zed is online."),
        messages.welcome("Bob", 1),
        messages.SHUTTING_DOWN,
        messages.system("Online (2): Ann, Bob"),
    ]
    assert all(is_public(line) for line in public)
    assert not any(is_public(line) for line in private)


def test_own_names_come_from_the_welcome_and_renames_of_the_current_name():
    names = OwnNames()
    assert names.current is None and not names.is_own("Bob: hi")
    names.update(messages.welcome("Bob", 0))
    names.update(messages.renamed("Ann", "Cid"))  # someone else: not us
    names.update(messages.renamed("bob", "Robert"))  # our name, in another case
    assert names.current == "Robert"
    for line in [
        "Bob: hi",
        "ROBERT: hi",
        "* Bob waves",
        messages.joined("Bob"),
        messages.left("Robert"),
        messages.renamed("Bob", "Robert"),
    ]:
        assert names.is_own(line), line
    for line in ["Ann: Bob: hi", "Cid: hi", messages.joined("Cid"), "[PM from Bob] hi", messages.renamed("Ann", "Cid")]:
        assert not names.is_own(line), line


def test_a_rename_back_to_an_earlier_name_makes_it_current_again_and_both_stay_our_own():
    names = OwnNames()
    names.update(messages.welcome("Ann", 0))
    names.update(messages.renamed("Ann", "Bob"))
    assert names.current == "Bob"
    names.update(messages.renamed("Bob", "Ann"))
    assert names.current == "Ann"
    assert names.is_own("Ann: hi") and names.is_own("Bob: hi") and names.is_own(messages.left("Ann"))


def test_only_a_rename_of_our_current_name_renames_us_not_one_of_a_name_we_had_before():
    names = OwnNames()
    names.update(messages.welcome("Ann", 0))
    names.update(messages.renamed("Ann", "Bob"))
    names.update(messages.renamed("Ann", "Cid"))  # someone else took "Ann" since, and left it
    assert names.current == "Bob"


# Transcript: what is shown of each line, across connections.


def stamped(line: str, time: str = "14:02:01") -> str:
    return f"[{time}] {line}"


def fed(transcript: Transcript, *lines: str) -> list:
    shown = []
    for line in lines:
        shown += transcript.feed(line)
    return shown


def join(transcript: Transcript, name: str = "Bob", history=()) -> list:
    """What a (re)connection shows once it is let in, with ``history`` replayed before the welcome."""
    again = transcript.joined
    transcript.new_connection()
    block = [history_start(len(history)), *(stamped(line) for line in history), HISTORY_END] if history else []
    shown = fed(transcript, *block, messages.welcome(name, 1))
    assert shown[0] == Admitted(again)  # always first: see the tests of Admitted
    return shown[1:]


def test_the_first_time_the_history_is_shown_whole_with_its_markers_and_times():
    transcript = Transcript()
    shown = join(transcript, "Bob", ["Ann: hello", "* Ann waves"])
    assert shown == [
        Live(history_start(2)),
        Replayed("Ann: hello", "14:02:01"),
        Replayed("* Ann waves", "14:02:01"),
        Live(HISTORY_END),
        Live(messages.welcome("Bob", 1)),
    ]
    assert transcript.joined and transcript.name == "Bob"


def test_after_a_reconnect_only_the_lines_said_while_away_are_shown_under_a_note():
    transcript = Transcript()
    join(transcript, "Bob", ["Ann: hello"])
    fed(transcript, "Ann: seen live", "Cid: me too")
    shown = join(transcript, "Bob", ["Ann: hello", "Ann: seen live", "Cid: me too", "Ann: missed", "* Cid waves"])
    assert shown == [
        AwayNote(2, gap=False),
        Replayed("Ann: missed", "14:02:01"),
        Replayed("* Cid waves", "14:02:01"),
        Live(messages.welcome("Bob", 1)),
    ]


def test_joins_and_leaves_seen_after_the_last_line_said_do_not_hide_where_the_client_left_off():
    # The history keeps no joins or leaves: the replay ends with the last line said.
    transcript = Transcript()
    join(transcript, "Bob", ["Ann: hello"])
    fed(transcript, "Ann: seen live", messages.joined("Cid"), messages.left("Cid"))
    assert join(transcript, "Bob", ["Ann: hello", "Ann: seen live"]) == [Live(messages.welcome("Bob", 1))]


def test_a_replay_that_was_all_seen_shows_nothing_but_the_welcome():
    transcript = Transcript()
    join(transcript, "Bob", ["Ann: hello"])
    fed(transcript, "Ann: seen live")
    assert join(transcript, "Bob", ["Ann: hello", "Ann: seen live"]) == [Live(messages.welcome("Bob", 1))]


def test_without_an_overlap_every_line_is_shown_with_a_note_that_some_may_be_missing():
    transcript = Transcript()
    join(transcript, "Bob")
    fed(transcript, "Ann: seen live")
    shown = join(transcript, "Bob", ["Ann: new 1", "Ann: new 2"])
    assert shown[0] == AwayNote(2, gap=True)
    assert [item.line for item in shown[1:3]] == ["Ann: new 1", "Ann: new 2"]


def test_after_a_server_restart_the_lines_behind_a_repeated_notice_are_all_shown_with_the_gap_note():
    transcript = Transcript()
    join(transcript, "Bob")
    fed(transcript, messages.renamed("Cid", "Cy"))
    # The server restarts: its history starts empty.
    replay = ["Dan: the meeting moved to 3pm", messages.renamed("Cid", "Cy")]
    shown = join(transcript, "Bob", replay)
    assert shown == [
        AwayNote(2, gap=True),
        *(Replayed(line, "14:02:01") for line in replay),
        Live(messages.welcome("Bob", 1)),
    ]


def test_an_overlap_that_is_notices_once_our_own_lines_are_left_out_is_no_overlap():
    transcript = Transcript()
    join(transcript, "Bob")
    fed(transcript, messages.renamed("Cid", "Cy"))
    # Bob's own line is left out on both sides, which leaves a notice alone to match.
    replay = ["Bob: brb", messages.renamed("Cid", "Cy"), "Ann: new"]
    shown = join(transcript, "Bob", replay)
    assert shown[0] == AwayNote(2, gap=True)
    assert [item.line for item in shown if isinstance(item, Replayed)] == [messages.renamed("Cid", "Cy"), "Ann: new"]


def test_an_overlap_with_a_chat_line_before_the_notices_still_hides_what_was_seen():
    transcript = Transcript()
    join(transcript, "Bob")
    fed(transcript, "Ann: hi", messages.joined("Cid"), messages.left("Cid"))
    shown = join(transcript, "Bob", ["Ann: hi", messages.joined("Cid"), messages.left("Cid"), "Ann: new"])
    assert shown == [AwayNote(1, gap=False), Replayed("Ann: new", "14:02:01"), Live(messages.welcome("Bob", 1))]


def test_own_lines_are_never_shown_again_and_do_not_spoil_the_match():
    transcript = Transcript()
    join(transcript, "Bob")
    # What Bob said is not sent back to him; the others' lines are.
    fed(transcript, "Ann: hi Bob")
    replay = [messages.joined("Bob"), "Bob: hi Ann", "Ann: hi Bob", "* Bob waves", messages.left("Bob"), "Ann: bye?"]
    shown = join(transcript, "Bob", replay)
    assert shown == [AwayNote(1, gap=False), Replayed("Ann: bye?", "14:02:01"), Live(messages.welcome("Bob", 1))]


def test_after_a_rename_the_new_name_is_asked_for_and_lines_under_both_names_are_own():
    transcript = Transcript()
    join(transcript, "Bob")
    fed(transcript, "Ann: hi", messages.renamed("Bob", "Robert"), "Ann: nice name")
    assert transcript.name == "Robert"
    replay = [
        "Bob: hello",
        "Ann: hi",
        messages.renamed("Bob", "Robert"),
        "Ann: nice name",
        "Robert: thanks",
        messages.left("Robert"),
        "Ann: gone?",
    ]
    shown = join(transcript, "Robert", replay)
    assert [item.line for item in shown if isinstance(item, Replayed)] == ["Ann: gone?"]
    assert shown[0] == AwayNote(1, gap=False)


def test_after_a_rename_back_the_first_name_is_asked_for_and_lines_under_both_names_are_own():
    transcript = Transcript()
    join(transcript, "Ann")
    fed(transcript, "Cid: hi", messages.renamed("Ann", "Bob"), messages.renamed("Bob", "Ann"), "Cid: welcome back")
    assert transcript.name == "Ann"
    replay = [
        "Cid: hi",
        "Ann: hello",
        messages.renamed("Ann", "Bob"),
        "Bob: I am Bob now",
        messages.renamed("Bob", "Ann"),
        "Cid: welcome back",
        messages.left("Ann"),
        "Cid: gone?",
    ]
    shown = join(transcript, "Ann", replay)
    assert shown == [AwayNote(1, gap=False), Replayed("Cid: gone?", "14:02:01"), Live(messages.welcome("Ann", 1))]


def test_lines_remembered_under_a_name_taken_later_are_our_own_on_both_sides_of_the_match():
    transcript = Transcript()
    join(transcript, "Bob")
    # Ann's lines are remembered as someone else's; then Bob takes her name.
    fed(transcript, "Cid: hi", "Ann: bye all", messages.left("Ann"), messages.renamed("Bob", "Ann"))
    replay = ["Cid: hi", "Ann: bye all", messages.left("Ann"), messages.renamed("Bob", "Ann"), "Cid: new"]
    shown = join(transcript, "Ann", replay)
    # Matched on "Cid: hi" alone: left out of the replay, Ann's lines are left out of what was seen too.
    assert shown == [AwayNote(1, gap=False), Replayed("Cid: new", "14:02:01"), Live(messages.welcome("Ann", 1))]


def test_a_name_given_on_rejoining_is_our_own_too():
    transcript = Transcript()
    join(transcript, "Bob")
    fed(transcript, "Ann: hi")
    join(transcript, "Bob-2", ["Ann: hi"])  # the server had not yet noticed that Bob was gone
    assert transcript.name == "Bob-2"
    shown = join(transcript, "Bob-2", ["Ann: hi", messages.joined("Bob-2"), "Bob-2: back", "Ann: wb"])
    assert [item.line for item in shown if isinstance(item, Replayed)] == ["Ann: wb"]


def test_lines_shown_after_a_reconnect_are_remembered_for_the_next_one():
    transcript = Transcript()
    join(transcript, "Bob", ["Ann: one"])
    join(transcript, "Bob", ["Ann: one", "Ann: two"])
    fed(transcript, "Ann: three")
    shown = join(transcript, "Bob", ["Ann: one", "Ann: two", "Ann: three", "Ann: four"])
    assert [item.line for item in shown if isinstance(item, Replayed)] == ["Ann: four"]


def test_only_the_last_lines_seen_are_remembered():
    transcript = Transcript(max_seen=2)
    join(transcript, "Bob")
    fed(transcript, "Ann: 1", "Ann: 2", "Ann: 3")
    # "Ann: 1" is forgotten, so the overlap is "Ann: 2", "Ann: 3".
    shown = join(transcript, "Bob", ["Ann: 1", "Ann: 2", "Ann: 3", "Ann: 4"])
    assert [item.line for item in shown if isinstance(item, Replayed)] == ["Ann: 4"]


def test_the_last_200_lines_seen_are_remembered_so_a_run_of_199_repeats_is_still_told_from_five_more():
    transcript = Transcript()
    join(transcript, "Bob")
    seen = ["Ann: vote now", *["Cid: +1"] * 199]
    fed(transcript, *seen)
    # Only "Ann: vote now", 200 lines back, tells where Bob left off: remembering fewer
    # lines, the client would match the new "+1"s with the ones it saw and hide them.
    shown = join(transcript, "Bob", [*seen, *["Cid: +1"] * 5])
    assert shown[0] == AwayNote(5, gap=False)
    assert [item.line for item in shown if isinstance(item, Replayed)] == ["Cid: +1"] * 5


def test_private_lines_and_replies_are_not_remembered_and_do_not_break_the_overlap():
    transcript = Transcript()
    join(transcript, "Bob")
    fed(transcript, "Ann: 1", "[PM from Ann] psst", messages.system("Online (2): Ann, Bob"), "Ann: 2")
    shown = join(transcript, "Bob", ["Ann: 1", "Ann: 2", "Ann: 3"])
    assert [item.line for item in shown if isinstance(item, Replayed)] == ["Ann: 3"]


def test_a_block_that_is_never_ended_ends_at_the_first_line_without_a_time():
    transcript = Transcript()
    join(transcript, "Bob")
    fed(transcript, "Ann: 1")
    transcript.new_connection()
    shown = fed(transcript, history_start(2), stamped("Ann: 1"), stamped("Ann: 2"), messages.welcome("Bob", 1))
    assert shown == [
        Admitted(again=True),
        AwayNote(1, gap=False),
        Replayed("Ann: 2", "14:02:01"),
        Live(messages.welcome("Bob", 1)),
    ]


def test_a_marker_after_the_welcome_is_an_ordinary_line():
    transcript = Transcript()
    join(transcript, "Bob")
    assert fed(transcript, history_start(1), "Ann: hi") == [Live(history_start(1)), Live("Ann: hi")]


def test_a_marker_after_the_welcome_of_a_reconnect_is_shown_live_too():
    transcript = Transcript()
    join(transcript, "Bob")
    join(transcript, "Bob")  # a reconnect, whose replay is matched instead of shown
    assert fed(transcript, history_start(1), "Ann: hi") == [Live(history_start(1)), Live("Ann: hi")]


def test_before_joining_a_second_connection_shows_its_history_whole():
    transcript = Transcript()
    transcript.new_connection()
    fed(transcript, messages.system("Server is full (1 users). Try again later."))
    assert not transcript.joined
    shown = join(transcript, "Bob", ["Ann: hi"])
    assert shown[0] == Live(history_start(1))


def test_a_replay_longer_than_the_bound_keeps_only_its_end():
    transcript = Transcript(max_replay=3)
    join(transcript, "Bob")
    shown = join(transcript, "Bob", [f"Ann: {number}" for number in range(10)])
    assert [item.line for item in shown if isinstance(item, Replayed)] == ["Ann: 7", "Ann: 8", "Ann: 9"]


# Admitted: "Connected!" and "Reconnected." only once the server has let the client in.


def test_a_connection_is_let_in_at_the_start_of_its_history_once():
    transcript = Transcript()
    transcript.new_connection()
    assert fed(transcript, history_start(1))[:2] == [Admitted(again=False), Live(history_start(1))]
    shown = fed(transcript, stamped("Ann: hi"), HISTORY_END, messages.welcome("Bob", 1))
    assert Admitted(again=False) not in shown and transcript.admitted


def test_without_history_a_connection_is_let_in_at_its_welcome():
    transcript = Transcript()
    transcript.new_connection()
    assert fed(transcript, messages.welcome("Bob", 0)) == [Admitted(again=False), Live(messages.welcome("Bob", 0))]


@pytest.mark.parametrize(
    "refusal",
    [
        messages.PASSWORD_NEEDED,
        messages.PASSWORD_WRONG,
        messages.PASSWORD_TOO_MANY_TRIES,
        messages.system("Server is full (1 users). Try again later."),
        messages.system("You are banned from this chat for 59 more minutes."),
    ],
)
def test_a_connection_refused_is_never_let_in_first_or_on_a_reconnect(refusal):
    transcript = Transcript()
    transcript.new_connection()
    assert fed(transcript, refusal) == [Live(refusal)]
    join(transcript, "Bob")
    transcript.new_connection()  # a reconnect, refused
    assert fed(transcript, refusal) == [Live(refusal)]
    assert not transcript.admitted


def test_a_reconnect_is_let_in_again():
    transcript = Transcript()
    join(transcript, "Bob")
    assert fed(transcript, messages.welcome("Bob", 0)) == [Live(messages.welcome("Bob", 0))]  # once a connection
    transcript.new_connection()
    assert fed(transcript, messages.welcome("Bob", 0))[0] == Admitted(again=True)


# What the client prints, and how long it waits.


def test_a_replayed_line_shows_its_time_after_the_mark_and_keeps_its_colors():
    assert render("Ann: hi", False, "14:02:01") == [("", "📨 [14:02:01] Ann: hi")]
    assert render("Ann: hi", True, "14:02:01")[1:] == render("Ann: hi", True)[1:]
    assert render("Ann: hi", True, "14:02:01")[0] == ("", "📨 [14:02:01] ")
    assert render("* Ann waves", True, "14:02:01")[0] == ("", "📨 [14:02:01] * ")
    notice = messages.joined("Ann")
    assert render(notice, True, "14:02:01") == [("", "📨 [14:02:01] "), ("ansiyellow", notice)]


def test_the_away_note_counts_the_messages_and_says_when_some_may_be_missing():
    assert away_note(AwayNote(1, gap=False)) == "📜 1 message while you were away:"
    assert away_note(AwayNote(3, gap=True)) == "📜 3 messages while you were away (earlier ones may be missing):"


@pytest.mark.parametrize(
    "retries, low, high",
    [(0, 0.5, 1.0), (1, 1.0, 2.0), (2, 2.0, 4.0), (4, 8.0, 16.0), (5, 15.0, 30.0), (40, 15.0, 30.0)],
)
def test_the_wait_between_tries_doubles_up_to_30_seconds_less_up_to_half_at_random(retries, low, high):
    assert retry_delay(retries, random_fraction=lambda: 0.0) == high
    assert retry_delay(retries, random_fraction=lambda: 1.0) == low
    assert low <= retry_delay(retries) <= high


@pytest.mark.parametrize("retries, high", [(0, 0.25), (1, 0.5), (3, 2.0), (6, 16.0), (7, 30.0)])
def test_the_first_wait_can_be_chosen_and_the_others_double_from_it_up_to_30_seconds(retries, high):
    assert retry_delay(retries, 0.25, random_fraction=lambda: 0.0) == high
    assert retry_delay(retries, 0.25, random_fraction=lambda: 1.0) == high / 2


@pytest.mark.parametrize(
    "error, sentence",
    [
        (ConnectionRefusedError(111, "Connection refused"), "Could not reconnect (connection refused)."),
        (socket.gaierror(-2, "Name or service not known"), "Could not reconnect (the host was not found)."),
        (TimeoutError("timed out"), "Could not reconnect (timed out)."),
        (OSError(101, "Network is unreachable"), "Could not reconnect (Network is unreachable)."),
        (LinkError("wss://x/ws refused the connection (HTTP 502)."), "wss://x/ws refused the connection (HTTP 502)."),
    ],
)
def test_a_failed_try_is_one_short_sentence(error, sentence):
    assert describe_retry_error(error) == sentence


def test_after_a_gap_the_roster_forgets_everyone_but_us():
    roster = Roster()
    for line in [messages.welcome("Bob", 2), messages.joined("Ann"), messages.joined("Cid")]:
        roster.update(line)
    roster.forget_others()
    assert roster.me == "Bob" and roster.others() == []
    roster.update(messages.joined("Dee"))
    assert roster.others() == ["Dee"]


def test_a_raw_connection_notices_a_silent_network_with_keepalive():
    with socket.socket() as sock:
        enable_keepalive(sock, KEEPALIVE_IDLE_S)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
