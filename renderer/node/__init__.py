"""The render node: renders players' cameras from one world replica and streams them over WebRTC.

See ``docs/render-node.md``. Modules, one job each:

* `service`  — `RenderNode`: sim connection, interest, HTTP/signalling server, sessions
* `session`  — `StreamSession`: one player's peer connection, state machine, frame loop
* `world`    — `NodeWorld`: the shared replica and players; `ViewFeed` for per-session views
* `camera`   — `CameraDriver`: authoritative pose + the client's newest input
* `pipeline` — `SessionPipeline`: view -> render -> encode in a worker thread
* `track`    — `EncodedVideoTrack` (hands aiortc encoded packets) and the RTCP tap
* `rate`     — `BitrateController`: REMB-following bitrate in deliberate steps
* `sdp`      — codec preference and negotiated-codec helpers
* `metrics`  — Prometheus collectors
* `cli`      — ``shiftcraft render-node``
"""
