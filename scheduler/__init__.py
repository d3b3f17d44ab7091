"""The control plane: where each player's picture is rendered (docs/scheduler.md).

messages (protocol) · smoothing · registry · policies · engine (safeguards,
decisions) · decisions (JSONL log) · metrics · service + http (asyncio
service) · agent (`SchedulerLink`, the peer side) · replay (offline traces)
· config · cli (``shiftcraft scheduler``).
"""
