"""Run experiment scenarios on the testbed and collect their data (docs/experiments.md).

* `run` — one run and all runs of a scenario (``shiftcraft experiment run``);
* `nodes` / `services` — start each kind of node as a real process, stop it;
* `actions` / `links` — the scenario's timed actions, link conditions;
* `collect` — scrape ``/metrics`` into the tidy ``metrics.csv``;
* `events` / `manifest` — ``events.jsonl`` and ``manifest.json`` of a run;
* `progress` — progress on stderr; `stats` — summaries and confidence intervals.
"""
