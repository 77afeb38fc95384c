"""On-demand performance measurements; see docs/performance.md.  Never run as tests."""
