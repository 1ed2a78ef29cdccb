"""Host profiling: run xentop, perf, oprofile and friends in dom0 and parse them."""
