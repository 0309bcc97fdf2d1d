"""A task's life: inputs → upload → submit → poll → download, its state, history and files.

Uses :mod:`kie_jupyter.api`; knows nothing of notebooks, widgets or the shell.
"""
