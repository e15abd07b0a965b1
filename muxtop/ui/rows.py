"""Which fds the connection table shows, and in which order: sort, filter, freeze.

Runs once per new Snapshot (4 Hz at most), never per frame. Each step is one C-level pass
over the connections (`sorted` with a key, a dict build, a substring test), about a
millisecond at 10,000 rows; drawing then touches only the rows on screen.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from operator import attrgetter, itemgetter
from typing import NamedTuple

from muxtop.snapshot import CLOSED, KIND_CONN, ConnView, Snapshot


class Column(NamedTuple):
    """One table column: its id, header label, width in cells (0: takes the rest), whether
    numbers sit on the right, and how it sorts (None: not sortable)."""

    id: str
    label: str
    width: int
    right: bool
    key: Callable[[ConnView], object] | None
    descending: bool  # the first click or `s` puts the biggest first


def _queue(field: str) -> Callable[[ConnView], int]:
    get = attrgetter(field)

    def key(view: ConnView) -> int:
        value = get(view)
        return -1 if value is None else value

    return key


def _rtt(view: ConnView) -> int:
    return -1 if view.tcp is None else view.tcp.rtt_us


COLUMNS: tuple[Column, ...] = (
    Column("fd", "fd", 6, True, itemgetter(1), False),  # ConnView.fd, by index: the default
    Column("peer", "peer", 0, False, attrgetter("peer"), False),
    Column("state", "state", 11, False, attrgetter("state"), False),
    Column("interest", "interest", 8, False, attrgetter("interest"), True),
    Column("events", "last ev", 7, False, attrgetter("last_events"), True),
    Column("out_buffer", "app-out", 7, True, attrgetter("out_buffer"), True),
    Column("rx_queue", "rx-q", 7, True, _queue("rx_queue"), True),
    Column("tx_queue", "tx-q", 7, True, _queue("tx_queue"), True),
    Column("bytes_in", "in", 7, True, attrgetter("bytes_in"), True),
    Column("bytes_out", "out", 7, True, attrgetter("bytes_out"), True),
    # Age and idle sort on the time they count from: the oldest (smallest) first.
    Column("age", "age", 7, True, attrgetter("opened_at"), False),
    Column("idle", "idle", 7, True, attrgetter("last_io_at"), False),
    Column("rtt", "rtt", 7, True, _rtt, True),
    Column("flags", "flags", 5, False, attrgetter("flags"), True),
)
COLUMN_BY_ID = {c.id: c for c in COLUMNS}
# What `s` steps through: the columns people sort a busy server by, most useful first.
SORT_CYCLE = ("fd", "rx_queue", "tx_queue", "out_buffer", "bytes_in", "bytes_out", "idle",
              "age", "rtt", "state", "peer")
_PINNED_KINDS = frozenset({"listener", "control", "epoll"})
_KIND = itemgetter(2)  # ConnView.kind, by index: faster than the NamedTuple property
_FD = attrgetter("fd")


class ConnRows:
    """The ordered, filtered list of ConnViews the table draws, rebuilt from each Snapshot."""

    def __init__(self) -> None:
        self.sort = "fd"
        self.descending = False
        self.query = ""  # lower-case filter text; "" shows everything
        self.frozen = False  # keep the row order, let the values change
        self.rows: list[ConnView] = []  # what the table draws, top to bottom
        self.total = 0  # rows before filtering
        self._ordered: list[ConnView] = []  # the last unfiltered order below the pinned rows
        self._order: list[int] | None = None  # its cids, taken when the order is frozen
        self._haystacks: dict[int, str] = {}  # cid -> lower-case text the filter searches

    # ---- settings ----------------------------------------------------------------------

    def set_sort(self, column_id: str, descending: bool | None = None) -> None:
        """Sort by a column; None: its natural direction (biggest first for amounts)."""
        column = COLUMN_BY_ID[column_id]
        self.sort = column_id
        self.descending = column.descending if descending is None else descending

    def cycle_sort(self, shown: Collection[str] = COLUMN_BY_ID) -> str:
        """Sort by the next column of SORT_CYCLE among those `shown` (attach has fewer)."""
        cycle = [c for c in SORT_CYCLE if c in shown]
        here = cycle.index(self.sort) if self.sort in cycle else -1
        self.set_sort(cycle[(here + 1) % len(cycle)])
        return self.sort

    def click(self, column_id: str) -> None:
        """A header click: sort by that column, or reverse it if it is already the one."""
        if column_id == self.sort:
            self.descending = not self.descending
        else:
            self.set_sort(column_id)

    # ---- the rebuild -------------------------------------------------------------------

    def update(self, snapshot: Snapshot) -> list[ConnView]:
        views = snapshot.connections
        self.total = len(views)
        pinned, body = _split_pinned(views, snapshot.source == "engine")
        if self.frozen and self._order is None:
            self._order = [v.cid for v in self._ordered]  # the order on screen now
        if self.frozen and self._order:
            by_cid = {v.cid: v for v in body}
            ordered = [by_cid.pop(cid) for cid in self._order if cid in by_cid]
            ordered.extend(v for v in body if v.cid in by_cid)  # new since the freeze
        else:
            key = COLUMN_BY_ID[self.sort].key
            ordered = sorted(body, key=key, reverse=self.descending)
        if not self.frozen:
            self._order = None
        self._ordered = ordered
        rows = pinned + ordered
        if self.query:
            rows = self._filter(rows)
        self.rows = rows
        return rows

    def _filter(self, rows: list[ConnView]) -> list[ConnView]:
        query = self.query
        haystacks = self._haystacks
        if len(haystacks) > 2 * len(rows) + 64:
            haystacks.clear()  # forget connections long gone
        kept = []
        for view in rows:
            text = haystacks.get(view.cid)
            if text is None:
                text = haystacks[view.cid] = f"fd {view.fd} {view.peer} {view.kind}".lower()
            # The note (what an fd is: an attached socket's local address, why one closed)
            # and the TCP state change over time, so they stay out of the cached text.
            if (query in text or query in view.state or query in view.flags.lower()
                    or query in view.note.lower()
                    or (view.tcp is not None and query in view.tcp.state.lower())):
                kept.append(view)
        return kept


def _split_pinned(views: tuple[ConnView, ...],
                  pinned_first: bool) -> tuple[list[ConnView], Sequence[ConnView]]:
    """The pinned rows (listener, control, epoll fds) and the rest. Sources list them first,
    so the common case slices the tuple instead of copying 10,000 rows through Python; the
    engine promises it (`pinned_first`), other sources are checked."""
    head = 0
    while head < len(views) and views[head][2] in _PINNED_KINDS:
        head += 1
    body = views[head:]
    if pinned_first or _PINNED_KINDS.isdisjoint(map(_KIND, body)):  # C-level, no Python per row
        pinned = sorted(views[:head], key=_FD)
        return pinned, body
    pinned = sorted((v for v in views if v[2] in _PINNED_KINDS), key=_FD)
    return pinned, [v for v in views if v[2] not in _PINNED_KINDS]


def can_act_on(view: ConnView | None) -> bool:
    """Close and pause apply to a live connection, not to the listener, control fd or a
    connection already closed."""
    return view is not None and view.kind == KIND_CONN and view.state != CLOSED
