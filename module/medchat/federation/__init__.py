"""Federation between institutions: the allow-list check, the federated directory and
verification attestations other servers can check."""
