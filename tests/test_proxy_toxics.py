"""toxiproxy's toxics as pipes on a fake clock: the latency added, the rate kept, the slice
sizes, the bytes before the cut, when a close or a reset comes, and the share of connections a
toxicity picks (a seeded RNG)."""

from __future__ import annotations

import argparse
import contextlib
import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxtop.proxy.errors import ApiError
from muxtop.proxy.toxics import ATTRIBUTES, Pipe, Toxic, ToxicSet, toxic_argument

pytestmark = pytest.mark.timeout(60)


def toxic(kind: str, stream: str = "downstream", toxicity: float = 1.0, name: str = "",
          **attributes: int) -> Toxic:
    plain = {"type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
    return Toxic.from_plain({**plain, "name": name} if name else plain)


def piped(*toxics: Toxic, seed: int = 7) -> tuple[ToxicSet, Pipe]:
    toxic_set = ToxicSet(random.Random(seed))
    for t in toxics:
        toxic_set.add(t)
    return toxic_set, toxic_set.pipe("downstream", 1, now=0.0)


def drive(pipe: Pipe, now: float, until: float = 1e9, limit: int = 1 << 30,
          steps: int = 1_000_000) -> list[tuple[float, bytes]]:
    """Run the pipe as a loop would: take what it gives, sleep to its due time; returns
    (time, bytes) of every take."""
    taken = []
    for _ in range(steps):
        while data := pipe.take(now, limit):
            taken.append((now, data))
        due = pipe.due(now)
        if due is None or due > until:
            return taken
        now = max(now, due)
    raise AssertionError("the pipe never settled")


def run(pipe: Pipe, feeds: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """Feed each (time, bytes) at its time, taking what the pipe gives between feeds."""
    taken: list[tuple[float, bytes]] = []
    now = 0.0
    for when, data in feeds:
        taken += drive(pipe, now, until=when)
        now = when
        pipe.feed(data, now)
    return taken + drive(pipe, now)


def test_a_pipe_without_toxics_passes_bytes_through_unchanged():
    _, pipe = piped()
    data = b"x" * 70_000
    pipe.feed(data, 0.0)
    assert pipe.buffered == len(data)
    assert pipe.take(0.0, 1 << 20) is data  # no copy
    assert pipe.due(0.0) is None and pipe.verdict(0.0) is None and pipe.applied == ()
    pipe.feed(b"abc", 0.0)
    pipe.feed(b"def", 0.0)
    assert pipe.take(0.0, 4) == b"abcd" and pipe.take(0.0, 100) == b"ef"
    pipe.feed_eof(0.0)
    assert pipe.verdict(0.0) == "eof"


def test_latency_adds_its_delay_to_every_chunk():
    _, pipe = piped(toxic("latency", latency=100))
    pipe.feed(b"first", 1.0)
    pipe.feed(b"second", 1.03)
    assert pipe.take(1.0999, 100) == b"" and pipe.buffered == 11
    assert pipe.due(1.05) == pytest.approx(1.1)
    taken = drive(pipe, 1.05)
    assert taken == [(pytest.approx(1.1), b"first"), (pytest.approx(1.13), b"second")]


def test_latency_with_jitter_keeps_order_and_its_spread():
    _, pipe = piped(toxic("latency", latency=100, jitter=30))
    chunks = [i.to_bytes(4, "big") for i in range(2000)]
    # 100 ms apart: more than the spread, so no chunk waits behind another.
    taken = run(pipe, [(i * 0.1, chunk) for i, chunk in enumerate(chunks)])
    assert [data for _, data in taken] == chunks  # order kept, nothing lost
    added = [(t - i * 0.1) * 1000 for i, (t, _) in enumerate(taken)]
    assert min(added) >= 70 - 1e-6 and max(added) <= 130
    assert sum(added) / len(added) == pytest.approx(100, abs=2)
    assert max(added) - min(added) > 50  # the jitter is there


def test_a_chunk_never_overtakes_the_one_before_it():
    _, pipe = piped(toxic("latency", latency=100, jitter=90))
    # 1 ms apart: the jitter would reorder them.
    taken = run(pipe, [(i * 0.001, bytes([i])) for i in range(200)])
    assert b"".join(data for _, data in taken) == bytes(range(200))


def test_two_latency_toxics_add_up_and_the_fin_follows_the_bytes():
    _, pipe = piped(toxic("latency", latency=50, name="a"), toxic("latency", latency=30,
                                                                  name="b"))
    pipe.feed(b"data", 0.0)
    pipe.feed_eof(0.0)
    assert pipe.verdict(0.05) is None
    assert drive(pipe, 0.0) == [(pytest.approx(0.08), b"data")]
    assert pipe.verdict(0.08) == "eof"


def test_bandwidth_paces_to_its_rate_in_pieces_of_100_ms():
    _, pipe = piped(toxic("bandwidth", rate=100))  # 100 KB/s = 100,000 bytes a second
    data = random.Random(1).randbytes(1_000_000)
    for i in range(10):
        pipe.feed(data[i * 100_000:(i + 1) * 100_000], 0.0)
    taken = drive(pipe, 0.0)
    assert b"".join(d for _, d in taken) == data
    assert max(len(d) for _, d in taken) == 10_000  # 100 ms worth
    assert taken[-1][0] == pytest.approx(10.0)  # 1 MB at 100 KB/s
    sent = 0
    for when, piece in taken:
        sent += len(piece)
        assert sent <= 100_000 * when + 1e-6  # never ahead of the rate


def test_bandwidth_earns_no_credit_while_idle_and_rate_0_stops_the_stream():
    _, pipe = piped(toxic("bandwidth", rate=10))  # 10 bytes a ms
    pipe.feed(b"x" * 100, 0.0)
    assert drive(pipe, 0.0) == [(pytest.approx(0.01), b"x" * 100)]
    pipe.feed(b"y" * 100, 50.0)  # after a long idle: still 10 ms for 100 bytes
    assert pipe.take(50.0, 1000) == b""
    assert drive(pipe, 50.0) == [(pytest.approx(50.01), b"y" * 100)]
    _, stopped = piped(toxic("bandwidth", rate=0))
    stopped.feed(b"z" * 10, 0.0)
    assert stopped.take(100.0, 100) == b"" and stopped.due(100.0) is None
    assert stopped.buffered == 10


def test_slicer_cuts_chunks_in_slices_sent_one_at_a_time_with_its_delay():
    _, pipe = piped(toxic("slicer", average_size=100, size_variation=20, delay=1000))
    data = random.Random(2).randbytes(10_000)
    pipe.feed(data, 0.0)
    taken = drive(pipe, 0.0)
    sizes = [len(d) for _, d in taken]
    assert b"".join(d for _, d in taken) == data
    assert len(taken) > 50 and max(sizes) <= 120 and min(sizes) > 0  # average + variation
    gaps = [b[0] - a[0] for a, b in zip(taken, taken[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.001)  # delay is in µs
    _, even = piped(toxic("slicer", average_size=100))
    even.feed(b"e" * 1000, 0.0)
    # toxiproxy halves until a piece is no larger than average + variation: 1000 -> 62/63.
    assert sorted({len(d) for _, d in drive(even, 0.0)}) == [62, 63]


def test_slicer_slices_are_never_joined_even_with_no_delay():
    _, pipe = piped(toxic("slicer", average_size=10))
    pipe.feed(b"s" * 100, 0.0)
    assert [len(pipe.take(0.0, 1000)) for _ in range(4)] == [6, 6, 6, 7]  # 100>50>25>12|13


def test_slow_close_delays_the_fin_not_the_bytes():
    _, pipe = piped(toxic("slow_close", delay=200))
    pipe.feed(b"bye", 0.0)
    pipe.feed_eof(0.0)
    assert pipe.take(0.0, 100) == b"bye"
    assert pipe.verdict(0.1) is None and pipe.due(0.1) == pytest.approx(0.2)
    assert pipe.verdict(0.2) == "eof"


def test_timeout_drops_bytes_then_closes_after_its_timeout():
    _, pipe = piped(toxic("timeout", timeout=500))
    pipe.feed(b"lost", 0.1)
    assert pipe.take(0.1, 100) == b"" and pipe.buffered == 0
    assert pipe.verdict(0.49) is None and pipe.due(0.2) == pytest.approx(0.5)
    assert pipe.verdict(0.5) == "close"


def test_timeout_0_never_closes_but_its_removal_does():
    toxic_set, pipe = piped(toxic("timeout", timeout=0, name="hang"))
    pipe.feed(b"lost", 0.0)
    assert pipe.due(1e6) is None and pipe.verdict(1e6) is None
    toxic_set.remove("hang")
    assert pipe.verdict(1e6) == "close"  # toxiproxy closes what it dropped bytes of


def test_reset_peer_resets_after_its_timeout_from_the_first_bytes():
    _, pipe = piped(toxic("reset_peer", timeout=300))
    assert pipe.due(5.0) is None and pipe.verdict(5.0) is None  # no bytes yet: no timer
    pipe.feed(b"hello", 10.0)
    assert pipe.due(10.0) == pytest.approx(10.3) and pipe.verdict(10.2) is None
    assert pipe.verdict(10.3) == "reset" and pipe.verdict(10.3) == "reset"
    _, now = piped(toxic("reset_peer"))
    now.feed(b"x", 1.0)
    assert now.verdict(1.0) == "reset"


def test_limit_data_passes_exactly_its_bytes_then_closes():
    _, pipe = piped(toxic("limit_data", bytes=1000))
    pipe.feed(b"a" * 600, 0.0)
    assert pipe.verdict(0.0) is None
    pipe.feed(b"b" * 600, 0.0)
    taken = pipe.take(0.0, 1 << 20)
    assert taken == b"a" * 600 + b"b" * 400
    assert pipe.verdict(0.0) == "close"
    pipe.feed(b"c" * 10, 0.0)
    assert pipe.take(0.0, 100) == b""


def test_limit_data_counts_across_an_update_of_its_limit():
    toxic_set, pipe = piped(toxic("limit_data", bytes=1000, name="cap"))
    pipe.feed(b"a" * 600, 0.0)
    assert len(pipe.take(0.0, 10_000)) == 600
    toxic_set.update("cap", {"attributes": {"bytes": 1200}})
    pipe.feed(b"b" * 700, 0.0)
    assert pipe.take(0.0, 10_000) == b"b" * 600 and pipe.verdict(0.0) == "close"


def test_the_close_waits_for_the_bytes_before_it():
    _, pipe = piped(toxic("limit_data", bytes=5), toxic("latency", latency=100))
    pipe.feed(b"0123456789", 0.0)
    assert pipe.verdict(0.05) is None
    assert pipe.take(0.1, 100) == b"01234" and pipe.verdict(0.1) == "close"


@pytest.mark.parametrize("toxicity", [0.0, 0.3, 0.75, 1.0])
def test_toxicity_is_the_share_of_connections_drawn_once_each(toxicity):
    toxic_set = ToxicSet(random.Random(3))
    toxic_set.add(toxic("latency", latency=10, toxicity=toxicity))
    pipes = [toxic_set.pipe("downstream", i, now=0.0) for i in range(4000)]
    applied = [bool(p.applied) for p in pipes]
    assert sum(applied) / len(pipes) == pytest.approx(toxicity, abs=0.03)
    for pipe in pipes[:50]:  # drawn once: feeding does not draw again
        before = pipe.applied
        pipe.feed(b"x", 0.0)
        assert pipe.applied == before
        assert (pipe.take(0.0, 10) == b"") == bool(before)


def test_a_toxic_acts_on_its_own_stream_only():
    toxic_set, down = piped(toxic("latency", latency=100))
    up = toxic_set.pipe("upstream", 1, now=0.0)
    up.feed(b"request", 0.0)
    assert up.take(0.0, 100) == b"request" and up.applied == ()


def test_toxics_added_and_removed_live_lose_no_byte():
    toxic_set, pipe = piped()
    pipe.feed(b"before", 0.0)
    assert pipe.take(0.0, 100) == b"before"
    toxic_set.add(toxic("latency", latency=1000, name="slow"))
    pipe.feed(b"held", 1.0)
    assert pipe.take(1.5, 100) == b"" and pipe.buffered == 4 and pipe.applied == ("slow",)
    toxic_set.remove("slow")
    assert pipe.take(1.5, 100) == b"held" and pipe.applied == ()


def test_an_updated_latency_re_times_what_it_holds_from_when_it_was_read():
    toxic_set, pipe = piped(toxic("latency", latency=600_000, name="slow"))
    pipe.feed(b"first", 1.0)
    pipe.feed(b"second", 2.0)
    assert pipe.take(3.0, 100) == b"" and pipe.due(3.0) == pytest.approx(601.0)
    toxic_set.update("slow", {"attributes": {"latency": 1500}})  # first due at 2.5, second 3.5
    assert pipe.take(3.0, 100) == b"first" and pipe.due(3.0) == pytest.approx(3.5)
    toxic_set.update("slow", {"attributes": {"latency": 0}})
    assert pipe.take(3.0, 100) == b"second" and pipe.buffered == 0


def test_an_update_that_changes_toxicity_draws_again():
    toxic_set = ToxicSet(random.Random(5))
    toxic_set.add(toxic("latency", latency=10, toxicity=0.0, name="l"))
    pipes = [toxic_set.pipe("downstream", i, now=0.0) for i in range(100)]
    assert not any(p.applied for p in pipes)
    toxic_set.update("l", {"toxicity": 1})
    assert all(p.applied == ("l",) for p in pipes)
    toxic_set.update("l", {"attributes": {"jitter": 5}})
    assert toxic_set.get("l").attributes == {"latency": 10, "jitter": 5}


@pytest.mark.parametrize(("plain", "words"), [
    ({"type": "latency", "stream": "sideways"}, "stream was invalid"),
    ({"type": "nope"}, "invalid toxic type"),
    ({"type": "latency", "attributes": {"latency": -1}}, "whole number"),
    ({"type": "latency", "attributes": {"latency": 1.5}}, "whole number"),
    ({"type": "latency", "attributes": {"latency": True}}, "whole number"),
    ({"type": "latency", "attributes": {"latency": "5"}}, "whole number"),
    ({"type": "latency", "toxicity": 2}, "toxicity"),
    ({"type": "latency", "name": "a/b"}, "without '/'"),
    ({"type": "latency", "name": "x" * 201}, "1 to 200"),
    ({"type": "latency", "attributes": [1]}, "JSON object"),
    ([], "JSON object"),
])
def test_a_bad_toxic_is_a_400_in_toxiproxys_words(plain, words):
    with pytest.raises(ApiError) as caught:
        Toxic.from_plain(plain)
    assert caught.value.status == 400 and words in caught.value.message


def test_a_toxic_has_toxiproxys_defaults_and_shape():
    made = Toxic.from_plain({"type": "slicer", "attributes": {"average_size": 5, "other": 1}})
    assert made.plain() == {
        "attributes": {"average_size": 5, "size_variation": 0, "delay": 0},
        "name": "slicer_downstream", "type": "slicer", "stream": "downstream",
        "toxicity": 1.0}
    toxic_set = ToxicSet()
    toxic_set.add(made)
    with pytest.raises(ApiError) as caught:
        toxic_set.add(Toxic.from_plain({"type": "latency", "name": "slicer_downstream",
                                        "stream": "upstream"}))
    assert caught.value.status == 409


def test_the_toxic_flag_form():
    made = toxic_argument("downstream:latency:latency=100,jitter=10")
    assert (made.name, made.stream, dict(made.attributes)) == (
        "latency_downstream", "downstream", {"latency": 100, "jitter": 10})
    made = toxic_argument("upstream:timeout:timeout=0,toxicity=0.5,name=hang")
    assert (made.name, made.toxicity, made.stream) == ("hang", 0.5, "upstream")
    assert toxic_argument("upstream:noop").type == "noop"


@pytest.mark.parametrize(("text", "words"), [
    ("latency", "is not STREAM:TYPE"),
    ("down:latency", "stream was invalid"),
    ("downstream:lag", "is not a toxic type"),
    ("downstream:latency:latency", "is not KEY=VALUE"),
    ("downstream:latency:latency=soon", "is not a whole number"),
    ("downstream:latency:toxicity=often", "is not a number"),
    ("downstream:latency:rate=5", "has no attribute 'rate'"),
    ("downstream:latency:latency=-5", "whole number"),
    ("downstream:latency:toxicity=7", "toxicity"),
    ("downstream:latency:name=\x1b[2J", "\\x1b"),
])
def test_a_bad_toxic_flag_is_one_plain_line(text, words):
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        toxic_argument(text)
    message = str(caught.value)
    assert words in message and "\n" not in message and "\x1b" not in message


def test_a_bad_toxic_value_is_said_in_the_command_lines_words():
    # Was: "argument --toxic: --toxic downstream:latency:latency=-5: bad request body: ...":
    # the flag twice, and the HTTP API's words for a command line.
    parser = argparse.ArgumentParser()
    parser.add_argument("--toxic", type=toxic_argument)
    said = io.StringIO()
    with contextlib.redirect_stderr(said), pytest.raises(SystemExit):
        parser.parse_args(["--toxic", "downstream:latency:latency=-5"])
    line = said.getvalue().splitlines()[-1]
    assert line.endswith("error: argument --toxic: 'downstream:latency:latency=-5': attribute "
                         "latency of latency must be a whole number from 0 to "
                         f"{2 ** 63 - 1}, not -5"), line


LOSSLESS = st.one_of(
    st.builds(lambda ms, jitter: ("latency", {"latency": ms, "jitter": jitter}),
              st.integers(0, 200), st.integers(0, 50)),
    st.builds(lambda rate: ("bandwidth", {"rate": rate}), st.integers(1, 100)),
    st.builds(lambda size, var, us: ("slicer", {"average_size": size, "size_variation": var,
                                                "delay": us}),
              st.integers(0, 300), st.integers(0, 100), st.integers(0, 5000)),
    st.builds(lambda ms: ("slow_close", {"delay": ms}), st.integers(0, 100)),
    st.just(("noop", {})),
)
STEPS = st.lists(st.one_of(
    st.tuples(st.just("feed"), st.integers(1, 5000)),
    st.tuples(st.just("wait"), st.floats(0, 0.3)),
    st.tuples(st.just("take"), st.integers(1, 10_000)),
    st.tuples(st.just("add"), LOSSLESS, st.sampled_from([0.0, 0.5, 1.0])),
    st.tuples(st.just("remove"), st.integers(0, 5)),
    st.tuples(st.just("toxicity"), st.integers(0, 5), st.sampled_from([0.0, 1.0])),
), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, seed=st.integers(0, 2**32))
def test_lossless_toxics_added_and_removed_at_any_time_keep_every_byte_in_order(steps, seed):
    """Whatever is fed, taken, added, removed or re-drawn, and whenever: what comes out is
    what went in, in order, and `buffered` is what went in and has not come out."""
    toxic_set = ToxicSet(random.Random(seed))
    pipe = toxic_set.pipe("downstream", 1, now=0.0)
    fed, out, now, made = bytearray(), bytearray(), 0.0, 0
    source = random.Random(seed)
    for step in steps:
        match step:
            case ("feed", size):
                data = source.randbytes(size)
                fed += data
                pipe.feed(data, now)
            case ("wait", seconds):
                now += seconds
            case ("take", limit):
                taken = pipe.take(now, limit)
                assert len(taken) <= limit
                out += taken
            case ("add", (kind, attributes), toxicity):
                made += 1
                toxic_set.add(toxic(kind, toxicity=toxicity, name=f"t{made}", **attributes))
            case ("remove", index):
                names = [t.name for t in toxic_set.all()]
                if names:
                    toxic_set.remove(names[index % len(names)])
            case ("toxicity", index, toxicity):
                names = [t.name for t in toxic_set.all()]
                if names:
                    toxic_set.update(names[index % len(names)], {"toxicity": toxicity})
        assert pipe.buffered == len(fed) - len(out)
        assert pipe.verdict(now) is None
    pipe.feed_eof(now)
    out += b"".join(data for _, data in drive(pipe, now))
    assert bytes(out) == bytes(fed) and pipe.buffered == 0
    due = pipe.due(now)
    assert pipe.verdict(max(now, due or now) + 1) == "eof"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
TOXIC_SHAPED = st.fixed_dictionaries({}, optional={
    "name": JSON | st.text(), "type": JSON | st.sampled_from(sorted(ATTRIBUTES)),
    "stream": JSON | st.sampled_from(["upstream", "downstream", "UPSTREAM", ""]),
    "toxicity": JSON, "attributes": JSON | st.dictionaries(
        st.sampled_from(["latency", "jitter", "rate", "delay", "bytes", "timeout",
                         "average_size", "size_variation"]), JSON)})


@settings(max_examples=400, deadline=None)
@given(plain=JSON | TOXIC_SHAPED)
def test_any_json_is_a_toxic_or_one_400(plain):
    try:
        made = Toxic.from_plain(plain)
    except ApiError as exc:
        assert exc.status == 400 and "\n" not in exc.message
        return
    assert made.plain()["type"] in ATTRIBUTES and 0 <= made.toxicity <= 1
    toxic_set = ToxicSet(random.Random(0))
    toxic_set.add(made)
    pipe = toxic_set.pipe(made.stream, 1, now=0.0)  # and a pipe runs it
    pipe.feed(b"x" * 100, 0.0)
    pipe.take(1.0, 1000)
    pipe.due(1.0)
    pipe.verdict(1.0)


@settings(max_examples=400, deadline=None)
@given(text=st.text())
def test_any_toxic_flag_is_a_toxic_or_one_printable_line(text):
    try:
        toxic_argument(text)
    except argparse.ArgumentTypeError as exc:
        assert str(exc).isprintable()
