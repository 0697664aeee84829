"""Where models, task data and corpora come from: built-ins, embedded assets, hub, files."""
