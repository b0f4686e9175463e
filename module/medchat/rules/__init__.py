"""Who may contact whom.

`decisions` holds the pure decision functions (plain values in, a refusal or None out), `contact`
gathers the facts they need (profiles, account data, contact lists) and `callbacks` adapts them to
Synapse's spam-checker callbacks, so the same rules hold for the REST API, Element and federation.
"""
