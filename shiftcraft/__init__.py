"""Cross-cutting pieces of Shiftcraft: the command line, the sim protocol's
message definitions, metric names and the benchmark registry."""

__version__ = "0.1.0"
