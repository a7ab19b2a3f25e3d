"""What leaves the app: tables as CSV or Parquet, figure download settings, and the command line
that re-trains a design.

Figures are exported by plotly.js in the browser (the camera button of each figure's mode bar),
as PNG or SVG: a server-side export would need kaleido and a Chrome of its own.
"""

from __future__ import annotations

import io
import json
import shlex
from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd

from workbench.explore._frames import ExploreError, parse_trial_key, sql
from workbench.store import Store

ImageFormat = Literal["svg", "png"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("svg", "png")


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """A named or non-default index becomes columns; column names become strings."""
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
        frame = frame.reset_index()
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV (the index kept as a column when it carries names)."""
    return _flat(frame).to_csv(index=False).encode("utf-8")


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet. A column mixing types (a parameter table's values: 64, "switch",
    None) is written as text, since Parquet columns have one type."""
    flat = _flat(frame)
    for column in flat.columns:
        if flat[column].dtype == object:
            kinds = {type(v) for v in flat[column] if v is not None and not pd.isna(v)}
            if len(kinds) > 1 or (kinds and not kinds <= {str}):
                flat[column] = flat[column].map(lambda v: None if v is None or pd.isna(v) else str(v))
    buffer = io.BytesIO()
    flat.to_parquet(buffer, index=False)
    return buffer.getvalue()


def figure_config(image_format: ImageFormat = "svg", filename: str = "figure") -> dict[str, Any]:
    """plotly ``config`` for ``st.plotly_chart``: the mode bar's camera button downloads the
    figure as ``image_format`` (SVG: vector, for papers; PNG at twice the screen resolution)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format '{image_format}': expected one of {', '.join(IMAGE_FORMATS)}")
    options: dict[str, Any] = {"format": image_format, "filename": filename}
    if image_format == "png":
        options["scale"] = 2
    return {"displaylogo": False, "toImageButtonOptions": options}


def _set_value(value: Any) -> str:
    """A value as ``workbench run --set`` parses it back (JSON, else the raw text)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value  # plain text stays plain: --set memory.kind=switch
        return json.dumps(value)  # text that reads as JSON ("64", "true") is quoted to stay text
    return json.dumps(value)


def rerun_command(
    space_name: str,
    study_name: str,
    trial_number: int,
    design: Mapping[str, Any],
    *,
    tokens: int | None = None,
    seed: int | None = None,
) -> str:
    """``workbench run spaces/SPACE.py --set a=b ...`` that trains this design again (one
    ``--set`` per line, joined by shell line continuations).

    ``design``: the trial's sampled parameters (the rest come from the space file). The token
    budget and the seed are set too, since a study is often run with them overridden. The run
    goes to a new study (``STUDY-retrain-N``): the original study's space differs from a space
    with everything fixed, and the store refuses to mix them.
    """
    parts = [
        "workbench",
        "run",
        f"spaces/{space_name}.py",
        "--study-name",
        f"{study_name}-retrain-{int(trial_number)}",
        "--trials",
        "1",
    ]
    if seed is not None:
        parts += ["--seed", str(int(seed))]
    settings = dict(design)
    if tokens is not None:
        settings.setdefault("train.tokens", int(tokens))
    settings.pop("train.seed", None)  # --seed sets it
    lines = [" ".join(shlex.quote(p) for p in parts)]
    lines += [f"--set {shlex.quote(f'{name}={_set_value(settings[name])}')}" for name in sorted(settings)]
    return " \\\n  ".join(lines)


def trial_rerun_command(store: Store, key: str) -> str:
    """:func:`rerun_command` for the stored trial ``key`` (``study#n``), from one small query."""
    study, number = parse_trial_key(key)
    rows = store.sql(sql("trial_design"), {"study_name": study, "trial_number": number})
    if rows.empty:
        raise ExploreError(f"no parameters stored for trial {key}")
    values = {
        name: json.loads(v) if v is not None else None
        for name, v in zip(rows["name"], rows["value_json"], strict=True)
    }
    design = {name: values[name] for name in rows.loc[rows["sampled"].astype(bool), "name"]}
    return rerun_command(
        str(rows["space_name"].iloc[0]),
        study,
        number,
        design,
        tokens=values.get("train.tokens"),
        seed=values.get("train.seed"),
    )
