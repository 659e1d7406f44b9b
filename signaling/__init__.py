"""The aiohttp gateway: auth, rooms and sessions, WebRTC negotiation, media relay, browser pages, /metrics."""
