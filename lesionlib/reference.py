"""The numbers the paper reports (Fig 1-3), for side-by-side comparison with ours.

Source: Krishnan et al., "A Case Study of Transfer of Lesion-Knowledge", Section 5, Fig. 1-3;
transcribed in `resources/reported-results.yaml`. These are cited, never used as results.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

CITATION = ("Krishnan, Khincha, Vig, Dash, Srinivasan: A Case Study of Transfer of Lesion-Knowledge "
            "(Section 5, Fig. 1-5)")


@lru_cache(maxsize=1)
def reported() -> dict:
    """The whole transcription as a dict."""
    return yaml.safe_load(resources.files("lesionlib").joinpath("resources/reported-results.yaml").read_text())


def paper_table(fig: str, direction: str):
    """The paper's Fig 1 or Fig 2 table: rows = size names, columns = (arm, R/P), plus 'best'."""
    import pandas as pd

    rows = reported()[fig][direction]
    data = {}
    for size, row in rows.items():
        data[size] = {(arm, m): row[arm][i] for arm in ("base", "lesagn", "lesaug") for i, m in enumerate("RP")}
        data[size][("best", "")] = row["best"]
    df = pd.DataFrame.from_dict(data, orient="index")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def paper_ranges(direction: str):
    """The paper's Fig 3: min and max of R and P over its 5 folds, per arm it reports."""
    import pandas as pd

    rows = reported()["fig3"][direction]
    return pd.DataFrame({arm: {"R min": v["R"][0], "R max": v["R"][1], "P min": v["P"][0], "P max": v["P"][1]}
                         for arm, v in rows.items()}).T
