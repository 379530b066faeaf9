"""gangway's Lambda code: everything here ships to AWS with app.py."""
