"""The smtp-sink's Maildir writer and trace header fields."""

from __future__ import annotations

import mailbox
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from linechat.services.smtp_sink.maildir import SPILL, Maildir
from linechat.services.smtp_sink.trace import address_literal, client_description, trace_headers


def files(path: Path, sub: str) -> list[str]:
    return sorted(os.listdir(path / sub))


def test_small_message_appears_whole_in_new(tmp_path: Path) -> None:
    folder = Maildir(tmp_path / "mail")
    delivery = folder.begin(folder.unique_id(), b"Return-Path: <a@b.c>\r\n")
    delivery.write(b"Subject: x\r\n\r\n")
    delivery.write(b"body \xff\x00\r\n")
    assert files(tmp_path / "mail", "tmp") == [] and files(tmp_path / "mail", "new") == []
    delivery.commit()
    assert files(tmp_path / "mail", "new") == [delivery.name]
    assert files(tmp_path / "mail", "tmp") == [] and files(tmp_path / "mail", "cur") == []
    box = mailbox.Maildir(tmp_path / "mail", create=False)
    (key,) = box.keys()
    assert box.get_bytes(key) == b"Return-Path: <a@b.c>\r\nSubject: x\r\n\r\nbody \xff\x00\r\n"
    mode = (tmp_path / "mail" / "new" / delivery.name).stat().st_mode & 0o777
    assert mode == 0o600


def test_large_message_is_written_as_it_comes_and_renamed_at_the_end(tmp_path: Path) -> None:
    folder = Maildir(tmp_path)
    delivery = folder.begin(folder.unique_id())
    block = bytes(range(256)) * 256  # 64 KiB
    for _ in range(SPILL // len(block) + 3):
        delivery.write(block)
    assert files(tmp_path, "tmp") == [delivery.name]  # spilled: on disk, not in memory
    assert files(tmp_path, "new") == []
    delivery.commit()
    assert files(tmp_path, "tmp") == []
    data = (tmp_path / "new" / delivery.name).read_bytes()
    assert data == block * (SPILL // len(block) + 3)


def test_discard_leaves_no_trace(tmp_path: Path) -> None:
    folder = Maildir(tmp_path)
    small = folder.begin(folder.unique_id(), b"x")
    small.discard()
    big = folder.begin(folder.unique_id())
    big.write(b"y" * (SPILL + 1))
    assert files(tmp_path, "tmp") == [big.name]
    big.discard()
    big.discard()  # twice is harmless
    assert files(tmp_path, "tmp") == [] and files(tmp_path, "new") == []


def test_names_are_unique_and_follow_the_maildir_convention(tmp_path: Path) -> None:
    folder = Maildir(tmp_path)
    idents = {folder.unique_id() for _ in range(1000)}
    assert len(idents) == 1000
    delivery = folder.begin(next(iter(idents)))
    seconds, rest = delivery.name.split(".", 1)
    assert seconds.isdigit() and rest.startswith("M") and f"P{os.getpid()}Q" in rest
    assert "/" not in delivery.name and ":" not in delivery.name


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    folder = Maildir(tmp_path)
    delivery = folder.begin("fixed")
    (tmp_path / "tmp" / delivery.name).write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        delivery.commit()
    assert (tmp_path / "tmp" / delivery.name).read_bytes() == b"someone else's"


WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_trace_headers_for_one_recipient() -> None:
    head = trace_headers(
        helo=b"client.example",
        client=client_description(("127.0.0.1", 4321)),
        hostname=b"sink.test",
        esmtp=True,
        tls=None,
        smtputf8=False,
        ident=b"ID1",
        mail_from=b"a@b.c",
        rcpts=[b"x@y.z"],
        when=WHEN,
    )
    assert head == (
        b"Return-Path: <a@b.c>\r\n"
        b"Received: from client.example ([127.0.0.1]:4321)\r\n"
        b"\tby sink.test (linechat smtp-sink) with ESMTP\r\n"
        b"\tid ID1\r\n"
        b"\tfor <x@y.z>; Fri, 02 Jan 2026 03:04:05 +0000\r\n"
        b"X-Envelope-To: <x@y.z>\r\n"
    )


def test_trace_headers_with_tls_proxy_and_several_recipients() -> None:
    head = trace_headers(
        helo=None,
        client=client_description(("2001:db8::7", 25, 0, 0), via=("127.0.0.1", 40000)),
        hostname=b"sink.test",
        esmtp=True,
        tls="TLSv1.3 with cipher TLS_AES_256_GCM_SHA384",
        smtputf8=True,
        ident=b"ID2",
        mail_from=b"",
        rcpts=[b"x@y.z", b"q@r.s"],
        when=WHEN,
    )
    assert head == (
        b"Return-Path: <>\r\n"
        b"Received: from unknown ([IPv6:2001:db8::7]:25 via PROXY [127.0.0.1]:40000)\r\n"
        b"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
        b"\tby sink.test (linechat smtp-sink) with UTF8SMTPS\r\n"
        b"\tid ID2; Fri, 02 Jan 2026 03:04:05 +0000\r\n"
        b"X-Envelope-To: <x@y.z>,\r\n\t<q@r.s>\r\n"
    )


def test_address_literals() -> None:
    assert address_literal(("192.0.2.1", 25)) == "[192.0.2.1]:25"
    assert address_literal(("::ffff:192.0.2.1", 25, 0, 0)) == "[192.0.2.1]:25"
    assert address_literal(("2001:DB8::1", 25, 0, 0)) == "[IPv6:2001:db8::1]:25"
    assert address_literal("") == "unix socket"
    assert address_literal(None) == "unix socket"
