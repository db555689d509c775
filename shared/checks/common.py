"""What every chapter's checks share: the "not attempted yet" and "correct!" messages, and a count test."""

from __future__ import annotations


def not_attempted(exercise: str, *answers) -> bool:
    """True (after saying so) when any answer is still None: the exercise cell has not been filled in."""
    if any(answer is None for answer in answers):
        print(f"Exercise {exercise}: not attempted yet. Replace the None above with your answer, then run this cell.")
        return True
    return False


def correct(exercise: str, detail: str = "") -> None:
    """Print that the exercise's answer is right, with an optional remark about it."""
    print(f"Exercise {exercise}: correct!" + (f" {detail}" if detail else ""))


def is_count(value) -> bool:
    """True for a whole number (int, or a float/tensor holding one), False for fractions and bools."""
    if isinstance(value, bool):
        return False
    try:
        return float(value) == int(value)
    except (TypeError, ValueError):
        return False
