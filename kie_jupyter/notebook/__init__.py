"""The Jupyter face: the magics, their options, the live panel and the static cards."""
