"""Which developer's series a model belongs to: the written rule that groups model families.

Leave-one-family-out refits leave out a lineage, and the model's optional lineage profile
(``[trend] lineage_profile``) gives each lineage its own reading of each benchmark: models of
one developer share training-data choices across versions (Qwen1.5, Qwen2, Qwen2.5).
"""

from __future__ import annotations

import re

import pandas as pd

_VERSION_SUFFIX = re.compile(r"(\s*\(.*\))|([-\s]?v?\d+(\.\d+)*)$")


def lineage(family: str) -> str:
    """A model family's lineage: the family name without a trailing version or parenthesis.

    The written rule (tests/test_robustness.py): drop a parenthetical, then a trailing version
    number with an optional '-' or space before it. 'Qwen1.5', 'Qwen2.5' -> 'Qwen';
    'Llama-3.1' -> 'Llama'; 'Yi-1.5' -> 'Yi'; 'Minitron (NVIDIA)' -> 'Minitron'; 'GPT-NeoX'
    stays (a different developer's series than 'GPT-3' -> 'GPT').
    """
    name = str(family).strip()
    for _ in range(2):
        name = _VERSION_SUFFIX.sub("", name).strip()
    return name or str(family)


def model_lineages(models: pd.DataFrame) -> pd.Series:
    """Each model's lineage (index aligned with ``models``): its family's, or the model's own
    name when the family is missing, so that a model of unknown family is a lineage of one
    rather than pooled with other unknowns."""
    family = models["family"] if "family" in models else pd.Series("", index=models.index)
    family = family.fillna("").astype(str).str.strip()
    own = models["model"].astype(str)
    return pd.Series([lineage(f) if f else m for f, m in zip(family, own)], index=models.index)
