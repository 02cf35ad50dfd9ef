//! WebSocket test server (in progress).
