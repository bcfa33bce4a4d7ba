"""The latest-frame pointer's pure part: which frame of each camera a batch offers."""

from __future__ import annotations

from tests.unit.fakes import decoded
from vidpipe.events import FrameDecoded
from vidpipe.latest import newest_per_camera, pointer_key


def frame(camera: str, seq: int, ts: int, client: str = "acme") -> FrameDecoded:
    return decoded(client, camera, seq, ts)


def test_newest_per_camera_when_batch_mixes_cameras_then_latest_capture_of_each() -> None:
    frames = [frame("a", 5, 50), frame("a", 3, 70), frame("b", 9, 10), frame("a", 4, 60)]
    frames.append(frame("a", 1, 99, client="other"))
    newest = {(f.client_id, f.camera_id): f.frame_seq for f in newest_per_camera(frames)}
    # capture time decides, not seq (a restarted decoder numbers from 0 again)
    assert newest == {("acme", "a"): 3, ("acme", "b"): 9, ("other", "a"): 1}


def test_pointer_key_carries_client_and_camera() -> None:
    assert pointer_key("acme", "cam-1") == "vidpipe:latest-frame:acme/cam-1"
    assert pointer_key("acme", "cam-1") != pointer_key("other", "cam-1")
