"""Build ``report.md`` and ``plots/`` from a results folder alone (docs/experiments.md).

* `data` — read the folder; `series` — quantities derived from raw metrics;
* `phases` — migrations and per-phase statistics; `plots` — matplotlib figures;
* `build` — the Markdown report (``shiftcraft experiment report DIR``).
"""
