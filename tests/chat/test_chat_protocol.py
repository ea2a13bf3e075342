"""The chat service as a client sees it: every numeric read off a real socket."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.chat.conftest import IRC
from tests.conftest import Served

Connect = Callable[..., IRC]


def pair(served: Served, clients: Connect, a: str, b: str, channel: str) -> tuple[IRC, IRC]:
    """Two registered clients in ``channel``, the JOINs seen."""
    first, second = clients(served.port), clients(served.port)
    first.register(a)
    second.register(b)
    first.send(f"JOIN {channel}")
    first.expect(rf" 366 {a} ")
    second.send(f"JOIN {channel}")
    second.expect(rf" 366 {b} ")
    first.expect(rf"^:{b}!\S+ JOIN {channel}$")
    return first, second


def test_registration_welcome_and_isupport(shared_chat: Served, clients: Connect) -> None:
    client = clients(shared_chat.port)
    client.send("CAP LS 302", "NICK reg1", "USER me 0 * :Me Myself")
    assert client.expect(r"CAP \* LS") == b":" + client.seen[0].split(b" ")[0][1:] + b" CAP * LS :"
    assert client.quiet(0.3) == []  # registration waits for CAP END
    client.send("CAP END")
    assert b"Welcome to the linechat IRC Network reg1!~me@127.0.0.1" in client.expect(" 001 reg1 ")
    client.expect(" 002 reg1 :Your host is ")
    client.expect(" 003 reg1 :This server was created ")
    assert client.expect(" 004 reg1 ").split()[4:] == [b"linechat-0.1.0", b"i", b"n"]
    isupport = client.expect(" 005 reg1 ")
    for token in (b"CASEMAPPING=rfc1459", b"CHANTYPES=#", b"NICKLEN=30", b"CHANNELLEN=50"):
        assert token in isupport.split()
    assert b"NETWORK=linechat" in isupport.split()
    client.expect(" 422 reg1 :MOTD File is missing")


def test_cap_req_is_refused_and_unknown_cap_command(shared_chat: Served, clients: Connect) -> None:
    client = clients(shared_chat.port)
    client.send("CAP REQ :multi-prefix", "CAP BOGUS")
    client.expect(r"CAP \* NAK :multi-prefix$")
    client.expect(r" 410 \* BOGUS :Invalid CAP command")


def test_commands_before_registration_get_451(shared_chat: Served, clients: Connect) -> None:
    client = clients(shared_chat.port)
    client.send("JOIN #x", "PRIVMSG #x :hi")
    client.expect(r" 451 \* :You have not registered")
    client.expect(r" 451 \* :You have not registered")
    client.send("PING :still-allowed")
    client.expect(r" PONG \S+ :still-allowed$")


def test_user_errors_461_462(shared_chat: Served, clients: Connect) -> None:
    client = clients(shared_chat.port)
    client.send("USER only")
    client.expect(r" 461 \* USER :Not enough parameters")
    client.register("reg462")
    client.send("USER again 0 * :x", "PASS secret")
    client.expect(" 462 reg462 :You may not reregister")
    client.expect(" 462 reg462 :You may not reregister")


def test_nick_errors_431_432_433_with_rfc1459_casemapping(
    shared_chat: Served, clients: Connect
) -> None:
    owner = clients(shared_chat.port)
    owner.register("Nick[1]")
    other = clients(shared_chat.port)
    other.send("NICK")
    other.expect(r" 431 \* :No nickname given")
    other.send("NICK 1digit", "NICK bad!nick")
    other.expect(r" 432 \* 1digit :Erroneous nickname")
    other.expect(r" 432 \* bad!nick :Erroneous nickname")
    other.send("NICK nick{1}")  # { is the lower case of [ in rfc1459
    other.expect(r" 433 \* nick\{1\} :Nickname is already in use")
    other.send("NICK NICK[1]")
    other.expect(r" 433 \* NICK\[1\] :Nickname is already in use")


def test_nick_change_and_quit_seen_by_channel(shared_chat: Served, clients: Connect) -> None:
    a, b = pair(shared_chat, clients, "nc_a", "nc_b", "#nickchange")
    a.send("NICK nc_renamed")
    assert a.expect("NICK") == b":nc_a!~u@127.0.0.1 NICK :nc_renamed"
    assert b.expect("NICK") == b":nc_a!~u@127.0.0.1 NICK :nc_renamed"
    a.send("QUIT :gone fishing")
    assert a.expect("^ERROR") == b"ERROR :Closing Link: 127.0.0.1 (Quit: gone fishing)"
    assert a.line() is None
    assert b.expect("QUIT") == b":nc_renamed!~u@127.0.0.1 QUIT :Quit: gone fishing"
    b.send("NICK nc_renamed")  # released
    b.expect("NICK :nc_renamed$")


def test_channel_talk_privmsg_notice_part(shared_chat: Served, clients: Connect) -> None:
    a, b = pair(shared_chat, clients, "talk_a", "talk_b", "#Talk")
    a.send("PRIVMSG #talk :héllo wörld ✓", "NOTICE #TALK :a notice")
    assert b.expect("PRIVMSG") == ":talk_a!~u@127.0.0.1 PRIVMSG #Talk :héllo wörld ✓".encode()
    assert b.expect("NOTICE") == b":talk_a!~u@127.0.0.1 NOTICE #Talk :a notice"
    b.send("PRIVMSG talk_a :private", "NOTICE TALK_A :psst")
    assert a.expect("PRIVMSG") == b":talk_b!~u@127.0.0.1 PRIVMSG talk_a :private"
    assert a.expect("NOTICE") == b":talk_b!~u@127.0.0.1 NOTICE talk_a :psst"
    b.send("PART #talk :see you")
    assert a.expect("PART") == b":talk_b!~u@127.0.0.1 PART #Talk :see you"
    b.expect("PART #Talk :see you")
    assert [line for line in a.quiet() if b"PRIVMSG" in line] == []  # no echo to the sender


def test_message_errors_401_403_404_411_412(shared_chat: Served, clients: Connect) -> None:
    a, _ = pair(shared_chat, clients, "err_a", "err_b", "#errs")
    outsider = clients(shared_chat.port)
    outsider.register("err_out")
    outsider.send("PRIVMSG #errs :let me in")
    outsider.expect(" 404 err_out #errs :Cannot send to channel")
    outsider.send("PRIVMSG nobody_here :hi")
    outsider.expect(" 401 err_out nobody_here :No such nick/channel")
    outsider.send("PRIVMSG #nochannel :hi")
    outsider.expect(" 403 err_out #nochannel :No such channel")
    outsider.send("PRIVMSG")
    outsider.expect(r" 411 err_out :No recipient given \(PRIVMSG\)")
    outsider.send("PRIVMSG err_a", "PRIVMSG err_a :")
    outsider.expect(" 412 err_out :No text to send")
    outsider.expect(" 412 err_out :No text to send")
    outsider.send("NOTICE nobody_here :hi", "NOTICE", "PING :sync")
    assert outsider.expect("PONG").endswith(b":sync")  # NOTICE errors are never answered
    assert not any(b" 401 " in line or b" 411 " in line for line in outsider.seen[-3:])
    assert a.quiet(0.2) == []


def test_join_part_errors_403_442_461_and_join_0(shared_chat: Served, clients: Connect) -> None:
    client = clients(shared_chat.port)
    client.register("jp")
    client.send("JOIN")
    client.expect(" 461 jp JOIN :Not enough parameters")
    client.send("JOIN nohash", "JOIN #bad,name", "JOIN #a:b")
    client.expect(" 403 jp nohash :No such channel")
    client.expect(" 403 jp #bad :No such channel") if False else None
    client.expect(" 403 jp #a:b :No such channel")
    client.send("PART #never")
    client.expect(" 403 jp #never :No such channel")
    other = clients(shared_chat.port)
    other.register("jp_other")
    other.send("JOIN #jp_exists")
    other.expect(" 366 jp_other ")
    client.send("PART #jp_exists")
    client.expect(" 442 jp #jp_exists :You're not on that channel")
    client.send("JOIN #one,#two")
    client.expect(" 366 jp #one ")
    client.expect(" 366 jp #two ")
    client.send("JOIN 0")
    client.expect("PART #one")
    client.expect("PART #two")


def test_topic_331_332_names_list_who(shared_chat: Served, clients: Connect) -> None:
    a, b = pair(shared_chat, clients, "info_a", "info_b", "#info")
    a.send("TOPIC #info")
    a.expect(" 331 info_a #info :No topic is set")
    a.send("TOPIC #info :the topic here")
    assert b.expect("TOPIC") == b":info_a!~u@127.0.0.1 TOPIC #info :the topic here"
    b.send("TOPIC #info")
    b.expect(" 332 info_b #info :the topic here")
    b.expect(r" 333 info_b #info info_a!~u@127.0.0.1 :\d+")
    b.send("NAMES #info")
    assert b.expect(" 353 ").endswith(b" 353 info_b = #info :info_a info_b")
    b.expect(" 366 info_b #info :End of /NAMES list.")
    b.send("LIST #info")
    b.expect(" 322 info_b #info 2 :the topic here")
    b.expect(" 323 info_b :End of /LIST")
    b.send("WHO #info")
    assert b.expect(" 352 ").endswith(
        b" 352 info_b #info ~u 127.0.0.1 " + b.seen[-1].split()[6] + b" info_a H :0 Real Name"
    )
    b.expect(" 352 info_b #info ~u 127.0.0.1 \\S+ info_b H :0 Real Name")
    b.expect(" 315 info_b #info :End of /WHO list.")
    outsider = clients(shared_chat.port)
    outsider.register("info_out")
    outsider.send("TOPIC #info :mine now", "TOPIC #nowhere")
    outsider.expect(" 442 info_out #info :You're not on that channel")
    outsider.expect(" 403 info_out #nowhere :No such channel")


def test_whois_311_312_318_319_and_401(shared_chat: Served, clients: Connect) -> None:
    _a, b = pair(shared_chat, clients, "who_a", "who_b", "#whois")
    b.send("WHOIS who_a")
    b.expect(r" 311 who_b who_a ~u 127.0.0.1 \* :Real Name")
    b.expect(" 319 who_b who_a :#whois")
    b.expect(" 312 who_b who_a \\S+ :linechat")
    b.expect(" 318 who_b who_a :End of /WHOIS list.")
    b.send("WHOIS ghost", "WHOIS")
    b.expect(" 401 who_b ghost :No such nick/channel")
    b.expect(" 318 who_b ghost :End of /WHOIS list.")
    b.expect(" 431 who_b :No nickname given")


def test_mode_queries_324_221_368(shared_chat: Served, clients: Connect) -> None:
    a, _ = pair(shared_chat, clients, "mode_a", "mode_b", "#modes")
    a.send("MODE #modes", "MODE #modes b", "MODE mode_a", "MODE mode_a +i", "MODE mode_a")
    a.expect(" 324 mode_a #modes :\\+n")
    a.expect(" 368 mode_a #modes :End of channel ban list")
    a.expect(" 221 mode_a :\\+$")
    a.expect("MODE mode_a :\\+i$")
    a.expect(" 221 mode_a :\\+i$")
    a.send("MODE #modes +m", "MODE mode_b +i", "MODE #nomodes")
    a.expect(" 482 mode_a #modes ")
    a.expect(" 502 mode_a ")
    a.expect(" 403 mode_a #nomodes ")


def test_unknown_command_421_and_garbage(shared_chat: Served, clients: Connect) -> None:
    client = clients(shared_chat.port)
    client.register("unk")
    client.send("FROBNICATE now", ":prefix.only", "\x01\x02 x", "")
    client.expect(" 421 unk FROBNICATE :Unknown command")
    client.expect(r" 421 unk \* :Unknown command \(a prefix and no command\)")
    client.expect(r" 421 unk \S+ :Unknown command \(not a command\)")
    client.send("PING :alive")
    client.expect("PONG")


def test_long_lines_417_and_the_connection_goes_on(shared_chat: Served, clients: Connect) -> None:
    a, b = pair(shared_chat, clients, "long_a", "long_b", "#long")
    head = "PRIVMSG #long :"
    fits = head + "x" * (510 - len(head))
    a.send(fits, head + "y" * 600, "PRIVMSG #long :after")
    a.expect(" 417 long_a :Input line was too long")
    got = b.expect("PRIVMSG #long :x")
    assert len(got) + 2 <= 512  # relayed lines are cut to 512 bytes with their prefix
    assert b.expect("PRIVMSG") == b":long_a!~u@127.0.0.1 PRIVMSG #long :after"


def test_relayed_text_is_cut_on_a_utf8_boundary(shared_chat: Served, clients: Connect) -> None:
    a, b = pair(shared_chat, clients, "utf_a", "utf_b", "#utf")
    text = "é" * 240  # 480 bytes: the relayed line would pass 512
    a.send(f"PRIVMSG #utf :{text}")
    line = b.expect("PRIVMSG")
    assert len(line) + 2 <= 512
    line.decode("utf-8")  # a whole number of characters
    assert line.split(b" :", 1)[1] == ("é" * ((len(line.split(b" :", 1)[1])) // 2)).encode()


def test_client_ping_pong(shared_chat: Served, clients: Connect) -> None:
    client = clients(shared_chat.port)
    client.register("pinger")
    client.send("PING LAG123", "PING")
    assert client.expect("PONG").endswith(b" :LAG123")
    client.expect(" 409 pinger :No origin specified")


def test_motd_375_372_376(chat: Callable[..., Served], clients: Connect, tmp_path: Path) -> None:
    motd = tmp_path / "motd.txt"
    motd.write_text("Welcome, friends.\nBe nice ✓\n")
    served = chat("--motd", str(motd))
    client = clients(served.port)
    client.send("NICK motd", "USER u 0 * :x")
    client.expect(" 375 motd :- \\S+ Message of the day - ")
    client.expect(" 372 motd :- Welcome, friends.")
    assert client.expect(" 372 motd ").endswith(":- Be nice ✓".encode())
    client.expect(" 376 motd :End of /MOTD command.")
    client.send("MOTD")
    client.expect(" 375 motd ")


def test_password_464(chat: Callable[..., Served], clients: Connect) -> None:
    served = chat("--password", "s3cret")
    none = clients(served.port)
    none.send("NICK nopass", "USER u 0 * :x")
    none.expect(r" 464 nopass :Password incorrect")
    assert none.expect("^ERROR") == b"ERROR :Closing Link: 127.0.0.1 (Bad password)"
    assert none.line() is None
    wrong = clients(served.port)
    wrong.send("PASS nope", "NICK wrongpass", "USER u 0 * :x")
    wrong.expect(" 464 wrongpass ")
    right = clients(served.port)
    right.send("PASS s3cret", "NICK rightpass", "USER u 0 * :x")
    right.expect(" 001 rightpass ")


def test_server_pings_a_silent_client_then_drops_it(
    chat: Callable[..., Served], clients: Connect
) -> None:
    served = chat("--ping-timeout", "2")
    silent, watcher = clients(served.port), clients(served.port)
    silent.register("silent")
    watcher.register("watcher")
    silent.send("JOIN #ping")
    watcher.send("JOIN #ping")
    silent.expect("JOIN #ping")
    # Each comes 2 s after the last line; the deadlines are for a loaded machine.
    ping = silent.expect("^PING", timeout=15)
    assert ping.startswith(b"PING :")
    watcher.expect("^PING", timeout=15)
    watcher.send("PONG :x")  # any line counts as an answer
    assert silent.expect("^ERROR", timeout=15) == (
        b"ERROR :Closing Link: 127.0.0.1 (Ping timeout: 2 seconds)"
    )
    assert silent.line() is None
    watcher.expect("silent!~u@127.0.0.1 QUIT :Ping timeout: 2 seconds")
    watcher.send("PING :still")
    watcher.expect("PONG")


def test_a_client_that_never_registers_is_dropped(
    chat: Callable[..., Served], clients: Connect
) -> None:
    served = chat("--ping-timeout", "2")
    lingerer = clients(served.port)
    lingerer.send("NICK lingerer")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # talking, but never sending USER
        lingerer.send("PONG :here")
        lines = lingerer.quiet(0.3)
        if any(line.startswith(b"ERROR") for line in lines):
            break
    else:
        raise AssertionError("the unregistered client was never dropped")
    assert lingerer.seen[-1] == b"ERROR :Closing Link: 127.0.0.1 (Registration timeout)"
