from class_helpers import kie, ledger, make_proxy, proxy  # noqa: F401 - fixtures
