"""Experiment configs: strict YAML -> dataclass parsing (parse) and the experiment schema."""
