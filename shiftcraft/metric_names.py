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
SERVER_INPUT_FRAMES_DUPLICATE_TOTAL = "shiftcraft_server_input_frames_duplicate_total"
SERVER_INPUT_FRAMES_MISSING_TOTAL = "shiftcraft_server_input_frames_missing_total"  # seq gaps
SERVER_BLOCK_CHANGES_TOTAL = "shiftcraft_server_block_changes_total"

# -- render node (renderer/node) ----------------------------------------------------------
RENDER_SESSIONS = "shiftcraft_render_sessions"  # streaming now
RENDER_SESSIONS_STARTED_TOTAL = "shiftcraft_render_sessions_started_total"
RENDER_SESSIONS_ENDED_TOTAL = "shiftcraft_render_sessions_ended_total"  # label: reason
RENDER_FRAMES_TOTAL = "shiftcraft_render_frames_total"  # encoded and sent
RENDER_FRAMES_DROPPED_TOTAL = "shiftcraft_render_frames_dropped_total"  # ticks skipped (behind)
RENDER_KEYFRAMES_TOTAL = "shiftcraft_render_keyframes_total"
RENDER_FRAME_DURATION_SECONDS = "shiftcraft_render_frame_duration_seconds"  # render only
RENDER_ENCODE_DURATION_SECONDS = "shiftcraft_render_encode_duration_seconds"
RENDER_PIPELINE_DURATION_SECONDS = "shiftcraft_render_pipeline_duration_seconds"  # tick->sent
RENDER_SENT_BYTES_TOTAL = "shiftcraft_render_sent_bytes_total"  # encoded video
RENDER_TARGET_BITRATE = "shiftcraft_render_target_bitrate_bytes_per_second"  # sum, sessions
RENDER_ENCODER_REBUILDS_TOTAL = "shiftcraft_render_encoder_rebuilds_total"  # label: reason
RENDER_SIM_CONNECTED = "shiftcraft_render_sim_connected"  # 0/1
RENDER_SECTIONS = "shiftcraft_render_sections"  # sections in the node's replica

# -- scheduler (scheduler/) ---------------------------------------------------------------
# Labels: from/to are locations (device, edge, cloud), never node or player names.
SCHEDULER_DECISIONS_TOTAL = "shiftcraft_scheduler_decisions_total"  # labels: from, to, reason
SCHEDULER_HOLDS_TOTAL = "shiftcraft_scheduler_holds_total"  # label: reason (not switched)
SCHEDULER_MIGRATIONS_TOTAL = "shiftcraft_scheduler_migrations_total"  # label: outcome (reports)
SCHEDULER_MIGRATION_GAP_SECONDS = "shiftcraft_scheduler_migration_gap_seconds"  # reported
SCHEDULER_MIGRATION_DURATION_SECONDS = "shiftcraft_scheduler_migration_duration_seconds"
SCHEDULER_EVALUATION_DURATION_SECONDS = "shiftcraft_scheduler_evaluation_duration_seconds"
SCHEDULER_EVALUATIONS_TOTAL = "shiftcraft_scheduler_evaluations_total"
SCHEDULER_TELEMETRY_SAMPLES_TOTAL = "shiftcraft_scheduler_telemetry_samples_total"
SCHEDULER_TELEMETRY_IGNORED_TOTAL = "shiftcraft_scheduler_telemetry_ignored_total"  # dup/late
SCHEDULER_MESSAGES_REJECTED_TOTAL = "shiftcraft_scheduler_messages_rejected_total"  # reason
SCHEDULER_CLIENTS = "shiftcraft_scheduler_clients"  # connected, label: mode
SCHEDULER_NODES = "shiftcraft_scheduler_nodes"  # alive, label: location
SCHEDULER_NODE_SESSIONS = "shiftcraft_scheduler_node_sessions"  # label: node
SCHEDULER_NODE_CAPACITY = "shiftcraft_scheduler_node_capacity"  # label: node (sessions)

# -- game client (client/) ------------------------------------------------------------------
# One client per endpoint (`shiftcraft play --metrics-port`): no player label.
# Unknown values (no render node, no battery) are left out of the exposition.
CLIENT_FRAMES_TOTAL = "shiftcraft_client_frames_total"  # displayed (new content)
CLIENT_FRAME_INTERVAL_SECONDS = "shiftcraft_client_frame_interval_seconds"  # histogram
CLIENT_FRAME_INTERVAL_WINDOW_SECONDS = "shiftcraft_client_frame_interval_window_seconds"  # pct
CLIENT_FPS = "shiftcraft_client_fps"  # displayed frames per second, last window
CLIENT_RTT_SIM_SECONDS = "shiftcraft_client_rtt_sim_seconds"  # ping/pong, last
CLIENT_RTT_NODE_SECONDS = "shiftcraft_client_rtt_node_seconds"  # data channel (remote)
CLIENT_RESIDENT_MEMORY_BYTES = "shiftcraft_client_resident_memory_bytes"
CLIENT_CPU_SECONDS_TOTAL = "shiftcraft_client_cpu_seconds_total"
CLIENT_CPU_RATIO = "shiftcraft_client_cpu_ratio"  # share of the whole machine, last second
CLIENT_RECEIVED_BYTES_TOTAL = "shiftcraft_client_received_bytes_total"  # label: link
CLIENT_SENT_BYTES_TOTAL = "shiftcraft_client_sent_bytes_total"  # label: link (sim|stream)
CLIENT_RECEIVE_RATE = "shiftcraft_client_received_bytes_per_second"  # label: link
CLIENT_SEND_RATE = "shiftcraft_client_sent_bytes_per_second"  # label: link
CLIENT_BATTERY_LEVEL_RATIO = "shiftcraft_client_battery_level_ratio"
CLIENT_BATTERY_CHARGING = "shiftcraft_client_battery_charging"  # 0/1: on a charger
CLIENT_BATTERY_POWER_WATTS = "shiftcraft_client_battery_power_watts"  # drawn
CLIENT_BATTERY_ENERGY_JOULES_TOTAL = "shiftcraft_client_battery_energy_joules_total"  # drawn
CLIENT_REMOTE = "shiftcraft_client_remote"  # 0/1: showing a render node's stream
CLIENT_PLACEMENT = "shiftcraft_client_placement"  # 1 for the current node, label: node
CLIENT_MIGRATIONS_TOTAL = "shiftcraft_client_migrations_total"  # labels: outcome, trigger
CLIENT_MIGRATION_GAP_SECONDS = "shiftcraft_client_migration_gap_seconds"  # histogram
CLIENT_MIGRATION_DURATION_SECONDS = "shiftcraft_client_migration_duration_seconds"  # histogram
CLIENT_SCHEDULER_CONNECTED = "shiftcraft_client_scheduler_connected"  # 0/1
CLIENT_TELEMETRY_SAMPLES_TOTAL = "shiftcraft_client_telemetry_samples_total"  # collected
