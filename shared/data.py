"""Deprecated: `shared.data` was split in two. The shipped novels (`load_novel`, `load_corpus`, `NOVELS`, ...)
are in `shared.corpus`; chapter 2's datasets and loaders (`GPTDatasetV1`, `create_dataloader_v1`,
`join_documents`, `pack_documents`) are in `shared.dataloader`. The name also sat beside the `shared/data/`
folder of shipped files. This module re-exports both so older notebooks and scripts still run.
"""

from __future__ import annotations

import warnings

from shared.corpus import DATA_DIR, NOVEL_TITLES, NOVELS, load_corpus, load_novel, read_shipped_file  # noqa: F401
from shared.dataloader import GPTDatasetV1, create_dataloader_v1, join_documents, pack_documents  # noqa: F401

warnings.warn("shared.data is now shared.corpus (the novels) and shared.dataloader (chapter 2's datasets).",
              DeprecationWarning, stacklevel=2)
