"""The notebook tests' fixtures: a fake KIE server the environment points at, and a real
IPython shell with the extension loaded (defined once in magic_helpers, shared here)."""

from magic_helpers import server, shell  # noqa: F401  (fixtures for every test here)
