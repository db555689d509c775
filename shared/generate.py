"""Deprecated name of the chat command: `python -m shared.generate CHECKPOINT` still works, but the command is
now `python -m shared.chat CHECKPOINT` (this module held no `generate` function, while three other things
are called generate). Import `continue_text` from `shared.chat` and `load_trained_model` from
`shared.pretrained`.
"""

from __future__ import annotations

import sys
import warnings

from shared.chat import continue_text, main, parse_args  # noqa: F401
from shared.pretrained import load_trained_model  # noqa: F401

NOTE = "shared.generate is now shared.chat (python -m shared.chat CHECKPOINT); the old name will go."

if __name__ == "__main__":
    print(f"note: {NOTE}", file=sys.stderr)
    main()
else:
    warnings.warn(NOTE, DeprecationWarning, stacklevel=2)
