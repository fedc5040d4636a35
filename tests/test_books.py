"""The account books (agent/accounts/books.py): the newest entries read from the file's tail."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.accounts import books


@pytest.mark.parametrize("block", [7, 64, books.READ_BLOCK])
def test_the_newest_entries_come_first_whatever_the_block_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(books, "READ_BLOCK", block)
    book = books.AccountBook(tmp_path)
    for i in range(30):
        book.write("a", {"i": i, "text": "é" * (i % 7), "pad": "x" * (i * 3 % 11)})
    for limit in (1, 2, 5, 29, 30, 31, 100):
        expected = list(range(29, max(-1, 29 - limit), -1))
        assert [e["i"] for e in book.latest("a", limit)] == expected, limit
    assert book.latest("a", 0) == [] and book.latest("nobody") == []


def test_a_damaged_or_half_written_line_is_skipped(tmp_path: Path) -> None:
    book = books.AccountBook(tmp_path)
    book.write("a", {"i": 1})
    with book.path("a").open("a", encoding="utf-8") as out:
        out.write("not json\n")
    book.write("a", {"i": 2})
    with book.path("a").open("a", encoding="utf-8") as out:
        out.write('{"i": 3, "cut off by a wri')  # a writer mid-append
    assert [e["i"] for e in book.latest("a", 10)] == [2, 1]
