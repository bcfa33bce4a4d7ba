"""Decoding a camera's stream into stored frames and events: the source reader
(:mod:`.source`), the reader-to-loop hand-off (:mod:`.handoff`), the per-frame publisher
(:mod:`.publisher`) and the stream loop (:mod:`.stream`). Shared by ``vidpipe run decoder``
(one camera by hand) and ``vidpipe run agent`` (the cameras Kafka assigns it)."""
