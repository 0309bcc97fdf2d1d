from class_helpers import hub, kie, ledger, make_proxy, proxy  # noqa: F401 - fixtures
