"""The exercises' self-checks: each exercise's notebook cell ends with `check_exercise_<chapter>_<n>(answer)`.

A check that finds the exercise untouched (its answer still `None`) says so and does not fail, so a
fresh clone's notebooks run green; a wrong answer raises an AssertionError that says what is wrong.
One module per chapter or appendix (`ch05`, `appA`, ...) holds its checks; `common` holds what they share.
"""

from __future__ import annotations

from shared.checks.appA import check_exercise_A_1, check_exercise_A_2, check_exercise_A_3, check_exercise_A_4
from shared.checks.appE import check_exercise_E_1, check_exercise_E_2
from shared.checks.ch02 import check_exercise_2_1, check_exercise_2_2
from shared.checks.ch03 import check_exercise_3_1, check_exercise_3_2, check_exercise_3_3
from shared.checks.ch04 import check_exercise_4_1, check_exercise_4_2, check_exercise_4_3
from shared.checks.ch05 import (
    check_exercise_5_1,
    check_exercise_5_2,
    check_exercise_5_3,
    check_exercise_5_4,
    check_exercise_5_5,
    check_exercise_5_6,
)
from shared.checks.ch06 import check_exercise_6_1, check_exercise_6_2, check_exercise_6_3
from shared.checks.ch07 import check_exercise_7_1, check_exercise_7_2, check_exercise_7_3, check_exercise_7_4
from shared.checks.ch08 import check_exercise_8_1, check_exercise_8_2, check_exercise_8_3, check_exercise_8_4
from shared.checks.ch09 import check_exercise_9_1, check_exercise_9_2, check_exercise_9_3, check_exercise_9_4
from shared.checks.ch10 import check_exercise_10_1, check_exercise_10_2, check_exercise_10_3, check_exercise_10_4
from shared.checks.ch11 import check_exercise_11_1, check_exercise_11_2, check_exercise_11_3
from shared.checks.ch12 import check_exercise_12_1, check_exercise_12_2, check_exercise_12_3
from shared.checks.ch13 import check_exercise_13_1, check_exercise_13_2, check_exercise_13_3

__all__ = [
    "check_exercise_2_1",
    "check_exercise_2_2",
    "check_exercise_3_1",
    "check_exercise_3_2",
    "check_exercise_3_3",
    "check_exercise_4_1",
    "check_exercise_4_2",
    "check_exercise_4_3",
    "check_exercise_5_1",
    "check_exercise_5_2",
    "check_exercise_5_3",
    "check_exercise_5_4",
    "check_exercise_5_5",
    "check_exercise_5_6",
    "check_exercise_6_1",
    "check_exercise_6_2",
    "check_exercise_6_3",
    "check_exercise_7_1",
    "check_exercise_7_2",
    "check_exercise_7_3",
    "check_exercise_7_4",
    "check_exercise_8_1",
    "check_exercise_8_2",
    "check_exercise_8_3",
    "check_exercise_8_4",
    "check_exercise_9_1",
    "check_exercise_9_2",
    "check_exercise_9_3",
    "check_exercise_9_4",
    "check_exercise_10_1",
    "check_exercise_10_2",
    "check_exercise_10_3",
    "check_exercise_10_4",
    "check_exercise_11_1",
    "check_exercise_11_2",
    "check_exercise_11_3",
    "check_exercise_12_1",
    "check_exercise_12_2",
    "check_exercise_12_3",
    "check_exercise_13_1",
    "check_exercise_13_2",
    "check_exercise_13_3",
    "check_exercise_A_1",
    "check_exercise_A_2",
    "check_exercise_A_3",
    "check_exercise_A_4",
    "check_exercise_E_1",
    "check_exercise_E_2",
]
