"""Rules MedChat enforces inside Synapse's callbacks, so they hold for every Matrix client."""
