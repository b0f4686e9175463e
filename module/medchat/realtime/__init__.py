"""Real-time delivery: the /api/chat/ws WebSocket, a push form of Synapse's own event stream."""
