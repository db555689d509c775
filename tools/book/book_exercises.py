"""A Sphinx extension for the website (`make book`): mark the sections of exercises and of their solutions.

tools/build_book.py labels each exercise heading `(exercise-5-1)=` and each solution heading `(solution-5-1)=`
in its copies of the notebooks; this puts the class `exercise` or `solution` on the section that such a heading
opens, so that book.css can mark the whole exercise, text, code and check.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx

LABEL = re.compile(r"(exercise|solution)-[a-z0-9]+-[0-9]+")


def mark_exercises(app: Sphinx, doctree: nodes.document) -> None:
    """Add the class `exercise` or `solution` to each section labelled exercise-N-M or solution-N-M."""
    for section in doctree.findall(nodes.section):
        for name in section["ids"]:
            match = LABEL.fullmatch(name)
            if match and match.group(1) not in section["classes"]:
                section["classes"].append(match.group(1))


def setup(app: Sphinx) -> dict:
    """Register the hook; it keeps no state, so pages may be read and written in parallel."""
    app.connect("doctree-read", mark_exercises)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
