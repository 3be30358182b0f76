"""The pure core: synchronous, no I/O. Time comes in through `Clock`."""
