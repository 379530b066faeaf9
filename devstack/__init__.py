"""The local stack: the whole system on one machine against an embedded AWS emulator (DESIGN.md §5).

Nothing here ships to Lambda. It runs the real handlers from app.py; only endpoints and transports differ.
"""
