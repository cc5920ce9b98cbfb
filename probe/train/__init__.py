"""Training and evaluation of character models (the loop reads top to bottom in loop.py)."""
