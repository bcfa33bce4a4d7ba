"""The decoder's newest-frame-wins hand-off: the reader never waits, stale frames go."""

from __future__ import annotations

import asyncio
import threading

import pytest

from vidpipe.decoding.handoff import LatestFrames


async def test_latest_frames_when_consumer_is_slow_then_oldest_dropped_and_counted() -> None:
    # given a buffer of two and a reader thread offering six frames while nobody reads
    dropped: list[int] = []
    buffer: LatestFrames[int] = LatestFrames(asyncio.get_running_loop(), 2, dropped.append)

    def read() -> None:
        for i in range(6):
            buffer.offer(i)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=1)
    # when the loop catches up / then the reader never blocked, only the newest two remain
    assert not reader.is_alive()
    assert [await buffer.get(), await buffer.get()] == [4, 5]
    assert dropped == [0, 1, 2, 3] and buffer.dropped == 4


async def test_latest_frames_when_consumer_keeps_up_then_nothing_dropped() -> None:
    buffer: LatestFrames[int] = LatestFrames(asyncio.get_running_loop(), 2)
    got = []
    for i in range(5):
        buffer.offer(i)
        got.append(await buffer.get())
    assert got == [0, 1, 2, 3, 4] and buffer.dropped == 0


async def test_latest_frames_when_end_marker_offered_last_then_it_is_never_dropped() -> None:
    buffer: LatestFrames[object] = LatestFrames(asyncio.get_running_loop(), 1)
    end = object()
    buffer.offer(1)
    buffer.offer(2)
    buffer.offer_last(end)
    await asyncio.sleep(0)
    assert await buffer.get() == 2 and await buffer.get() is end


def test_latest_frames_when_capacity_zero_then_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LatestFrames(asyncio.new_event_loop(), 0)


async def test_latest_frames_when_lossless_then_reader_waits_and_nothing_is_dropped() -> None:
    # given a lossless buffer of two and a file reader putting ten frames
    buffer: LatestFrames[int] = LatestFrames(asyncio.get_running_loop(), 2, lossless=True)
    stop = threading.Event()
    reader = threading.Thread(target=lambda: [buffer.put(i, stop) for i in range(10)])
    reader.start()
    # when the loop reads slowly / then every frame arrives, in order
    got = []
    for _ in range(10):
        await asyncio.sleep(0.01)
        got.append(await buffer.get())
    reader.join(timeout=1)
    assert got == list(range(10)) and buffer.dropped == 0


async def test_latest_frames_when_stopped_while_full_then_put_gives_up() -> None:
    buffer: LatestFrames[int] = LatestFrames(asyncio.get_running_loop(), 1, lossless=True)
    stop = threading.Event()
    assert buffer.put(1, stop)
    stop.set()
    assert not await asyncio.to_thread(buffer.put, 2, stop)
