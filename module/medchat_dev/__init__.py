"""MedChat's development tooling, kept out of the runtime package `medchat`: the dev config
renderer behind `scripts/run` (devconfig), the multi-process cluster behind `scripts/run-cluster`
and the benchmarks (cluster), and a static host resolver for the federation tests (devhosts).
Production code never imports it, so the homeserver process loads no `subprocess` or `signal`
machinery it does not need.
"""
