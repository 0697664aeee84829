"""The experiment around the runs: the driver, where runs execute (executors, the Ray cluster),
the sinks of their events (console, trackers) and calibration."""
