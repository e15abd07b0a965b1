"""A file from the user: only a regular file is read (up to a cap) or written, nothing blocks
on a FIFO, and an existing file is replaced only when forced."""

from __future__ import annotations

import os

import pytest

from muxtop.userfiles import UserFileError, create, read_bytes, read_text

pytestmark = pytest.mark.timeout(10)  # a FIFO opened the ordinary way blocks forever


def test_read_takes_a_regular_file_up_to_its_cap(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("héllo")
    assert read_text(path, 6) == "héllo"
    with pytest.raises(UserFileError, match="over 5 bytes"):
        read_bytes(path, 5)
    path.write_bytes(b"\xff")
    with pytest.raises(UserFileError, match="not UTF-8"):
        read_text(path, 10)


def test_read_refuses_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in [(fifo, "a FIFO"), ("/dev/zero", "a character device"),
                       (tmp_path, "a directory")]:
        with pytest.raises(UserFileError, match=f"it is {kind}, not a regular file"):
            read_bytes(path, 100)
    with pytest.raises(UserFileError, match="No such file"):
        read_bytes(tmp_path / "missing", 100)
    with pytest.raises(UserFileError, match=r"cannot read '\\x1b\]0;x\\x07'"):
        read_bytes("\x1b]0;x\x07", 100)  # the name, escaped


def test_create_never_replaces_a_file_unless_forced(tmp_path):
    path = tmp_path / "out.svg"
    with create(path) as file:
        file.write("first")
    with pytest.raises(UserFileError, match="exists .*--force"):
        create(path)
    assert path.read_text() == "first"  # untouched
    with create(path, force=True) as file:
        file.write("2")
    assert path.read_text() == "2"  # emptied, then written


def test_create_refuses_special_files_and_bad_names_in_one_line(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, force in [(fifo, False), (fifo, True), (tmp_path, False), (tmp_path, True),
                        ("/dev/full", False), ("/dev/full", True), ("", False),
                        (tmp_path / ("n" * 300), False), (tmp_path / "no-dir" / "f", False),
                        ("a\x00b", False)]:
        with pytest.raises(UserFileError) as caught:
            create(path, force=force)
        assert "\n" not in str(caught.value) and "cannot write" in str(caught.value)
    with pytest.raises(UserFileError, match="FIFO"):
        create(fifo, force=True)  # opened without blocking, then refused
    with pytest.raises(UserFileError, match="a directory, not a regular file"):
        create(tmp_path)
    with pytest.raises(UserFileError, match="cannot write '': the name is empty"):
        create("")  # was "No such file or directory", as if a folder were missing
