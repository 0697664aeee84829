"""One run of a task sequence (method x seed) and the experiment that drives the runs."""
