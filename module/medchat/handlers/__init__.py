"""Feature logic: what each REST endpoint and callback does, between the servlets (`medchat.api`)
and Synapse (`medchat.synapse`) or MedChat's own tables (`medchat.store`)."""
