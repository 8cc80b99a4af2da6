//! The settings (`[realtime]`, `APP_REALTIME__*`).

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Open Socket.IO connections this instance accepts in all.
    pub max_connections: usize,
    /// ... and per account, so one account cannot take them all.
    pub max_connections_per_account: usize,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_connection: usize,
    /// Packets queued for a connection that is not reading; past it the connection is a slow
    /// consumer and is dropped, so the others never wait for it.
    pub send_buffer: usize,
    /// The largest WebSocket message a client may send.
    pub max_message_bytes: usize,
    /// How often the server pings, and how long it waits for the pong.
    pub ping_interval_secs: u64,
    pub ping_timeout_secs: u64,
    /// Events a connection may send per second, and in a burst.
    pub events_per_second: u32,
    pub event_burst: u32,
    /// How many of the latest changes, and for how long, are kept for clients that come back
    /// (`join` with `since`).
    pub replay_events: usize,
    pub replay_secs: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_account: 10,
            max_rooms_per_connection: 100,
            send_buffer: 128,
            max_message_bytes: 16 * 1024,
            ping_interval_secs: 25,
            ping_timeout_secs: 20,
            events_per_second: 10,
            event_burst: 20,
            replay_events: 1000,
            replay_secs: 120,
        }
    }
}

impl RealtimeConfig {
    /// Checks what types alone cannot, naming the environment variable to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        let zeros = [
            ("APP_REALTIME__MAX_CONNECTIONS", self.max_connections == 0),
            (
                "APP_REALTIME__MAX_CONNECTIONS_PER_ACCOUNT",
                self.max_connections_per_account == 0,
            ),
            (
                "APP_REALTIME__MAX_ROOMS_PER_CONNECTION",
                self.max_rooms_per_connection == 0,
            ),
            ("APP_REALTIME__SEND_BUFFER", self.send_buffer == 0),
            ("APP_REALTIME__MAX_MESSAGE_BYTES", self.max_message_bytes == 0),
            ("APP_REALTIME__PING_INTERVAL_SECS", self.ping_interval_secs == 0),
            ("APP_REALTIME__PING_TIMEOUT_SECS", self.ping_timeout_secs == 0),
            ("APP_REALTIME__EVENTS_PER_SECOND", self.events_per_second == 0),
            ("APP_REALTIME__EVENT_BURST", self.event_burst == 0),
            ("APP_REALTIME__REPLAY_EVENTS", self.replay_events == 0),
        ];
        if let Some((name, _)) = zeros.into_iter().find(|(_, zero)| *zero) {
            bail!("{name} must be greater than 0");
        }
        Ok(())
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_secs(self.ping_timeout_secs)
    }

    pub fn replay_window(&self) -> Duration {
        Duration::from_secs(self.replay_secs)
    }
}
