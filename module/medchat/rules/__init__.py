"""Rules MedChat enforces inside Synapse's callbacks, so they hold for every Matrix client.

Who may contact whom: `decisions` holds the pure decision functions (plain values in, a refusal or
None out), `contact` gathers the facts they need (profiles, account data, contact lists) and
`callbacks` adapts them to Synapse's spam-checker callbacks. `directory` keeps hidden and unlisted
users out of Matrix's user-directory search.
"""
