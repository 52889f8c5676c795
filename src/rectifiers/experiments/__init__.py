"""The computations behind the chapters' figures and tables, one module per experiment.

Each function returns a dataclass of tensors that a notebook plots or tabulates; nothing here
draws. Import the modules directly, e.g. ``from rectifiers.experiments import signal_depth``.
"""
