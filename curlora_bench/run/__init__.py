"""One run of a task sequence (method x seed): its phases, training, evaluation, data."""
