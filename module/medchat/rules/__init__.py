"""Rules MedChat enforces inside Synapse's callbacks, so they hold for every Matrix client.

Who may contact whom and who may be in a room: `decisions` holds the pure decision functions
(plain values in, a refusal or None out), `contact` gathers the facts the contact rules need
(profiles, account data, contact lists), `membership` is the one decision on every membership
change (invite, join, knock) and `callbacks` adapts it to Synapse's event-rules and spam-checker
callbacks. `directory` keeps hidden and unlisted users out of Matrix's user-directory search.
`room_text` holds room names and topics set by Matrix clients to the API's rule for names.
"""
