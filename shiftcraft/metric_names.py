"""Every Prometheus metric name, defined once.

Names carry the ``shiftcraft_`` prefix, then the service, and end in their
base unit (``_seconds``, ``_bytes``, ``_total`` for counters, ratios 0-1).
Labels stay few (role, reason, type, action). Services build their
collectors from these constants on a registry of their own — never the
global default registry — so two services in one process (tests) do not clash.
"""

from __future__ import annotations

# -- sim server -------------------------------------------------------------------
SERVER_TICK_DURATION_SECONDS = "shiftcraft_server_tick_duration_seconds"
SERVER_TICKS_TOTAL = "shiftcraft_server_ticks_total"
SERVER_TICKS_SKIPPED_TOTAL = "shiftcraft_server_ticks_skipped_total"  # resynchronised
SERVER_COMMIT_DURATION_SECONDS = "shiftcraft_server_commit_duration_seconds"
SERVER_COMMIT_FAILURES_TOTAL = "shiftcraft_server_commit_failures_total"
SERVER_PLAYERS = "shiftcraft_server_players"  # label: role
SERVER_CONNECTIONS_TOTAL = "shiftcraft_server_connections_total"
SERVER_DISCONNECTS_TOTAL = "shiftcraft_server_disconnects_total"  # label: reason
SERVER_SECTIONS_SENT_TOTAL = "shiftcraft_server_sections_sent_total"
SERVER_SECTIONS_LOADED = "shiftcraft_server_sections_loaded"
SERVER_SECTION_CACHE_BYTES = "shiftcraft_server_section_cache_bytes"
SERVER_BLOCK_DELTAS_SENT_TOTAL = "shiftcraft_server_block_deltas_sent_total"
SERVER_SENT_BYTES_TOTAL = "shiftcraft_server_sent_bytes_total"
SERVER_RECEIVED_BYTES_TOTAL = "shiftcraft_server_received_bytes_total"
SERVER_MESSAGES_SENT_TOTAL = "shiftcraft_server_messages_sent_total"
SERVER_MESSAGES_RECEIVED_TOTAL = "shiftcraft_server_messages_received_total"  # label: type
SERVER_MESSAGES_REJECTED_TOTAL = "shiftcraft_server_messages_rejected_total"  # label: reason
SERVER_EDITS_APPLIED_TOTAL = "shiftcraft_server_edits_applied_total"  # label: action
SERVER_EDITS_REJECTED_TOTAL = "shiftcraft_server_edits_rejected_total"  # label: reason
SERVER_INPUT_FRAMES_TOTAL = "shiftcraft_server_input_frames_total"
SERVER_INPUT_FRAMES_DROPPED_TOTAL = "shiftcraft_server_input_frames_dropped_total"  # speed
SERVER_BLOCK_CHANGES_TOTAL = "shiftcraft_server_block_changes_total"
