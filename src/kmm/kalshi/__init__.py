"""kmm's Kalshi connector: signing, REST, WebSocket, rate limits, wire decode/encode.

It knows the wire and nothing about strategies.
"""
