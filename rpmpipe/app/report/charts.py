"""The report's charts as Vega-Lite specs built with Altair, and the Vega JavaScript that
draws them offline.

Each spec is built once per report and reads a named dataset (``table``); a page supplies
its own values, so a hundred thousand patient pages share two specs. The browser draws them
with Vega, Vega-Lite and Vega-Embed from the bundle vl-convert ships (no network).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

DATASET = "table"


def chart_specs() -> dict[str, dict[str, Any]]:
    """Every chart of the site, by name."""
    import altair as alt

    data = alt.NamedData(name=DATASET)
    days = (
        alt.Chart(data, title="Days with data per supply period")
        .mark_rect(stroke="white", strokeWidth=1)
        .encode(
            x=alt.X("day:O", title="Day of the period", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("period:N", title=None, sort=None),
            color=alt.Color(
                "status:N",
                title=None,
                scale=alt.Scale(
                    domain=["data", "no data", "still to come"],
                    range=["#1b7837", "#bdbdbd", "#f0f0f0"],
                ),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("date:N", title="date"),
                alt.Tooltip("status:N", title="status"),
            ],
        )
        .properties(
            width="container",
            autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
            description="Calendar of each 30-day supply period: a green cell is a day with "
            "a qualifying reading. The same figures are in the table below.",
        )
    )
    bars = (
        alt.Chart(data)
        .mark_bar(color="#2166ac")
        .encode(
            x=alt.X("month:N", title="Month", sort=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("minutes:Q", title="Management minutes"),
            tooltip=["month:N", "minutes:Q", "contacts:Q"],
        )
    )
    marks = (
        alt.Chart(data)
        .mark_point(shape="diamond", size=140, filled=True, color="#b2182b")
        .encode(
            x=alt.X("month:N", sort=None),
            y=alt.Y("minutes:Q"),
            opacity=alt.condition("datum.contacts > 0", alt.value(1), alt.value(0)),
            tooltip=[alt.Tooltip("contacts:Q", title="interactive contacts")],
        )
    )
    labels = (
        alt.Chart(data)
        .mark_text(dy=-14, color="#b2182b")
        .encode(x=alt.X("month:N", sort=None), y=alt.Y("minutes:Q"), text="contact_label:N")
    )
    minutes = alt.layer(bars, marks, labels, title="Management minutes per month").properties(
        width=alt.Step(70),
        height=220,
        autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
        description="Bars: management minutes per month. A red diamond marks a month with "
        "interactive contacts (the count is written above it). The same figures are in the "
        "table below.",
    )
    totals = (
        alt.Chart(data, title="Billed charges per month of service, by code")
        .mark_bar()
        .encode(
            x=alt.X("month:N", title="Month of service", sort=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("charges:Q", title="Charges (USD)"),
            color=alt.Color("code:N", title="Code"),
            tooltip=["month:N", "code:N", "lines:Q", "units:Q", "charges:Q"],
        )
        .properties(
            width="container",
            autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
            description="Stacked bars of billed charges per month by code; the same figures "
            "are in the tables below.",
        )
    )
    urgency = (
        alt.Chart(data, title="Open periods by urgency")
        .mark_bar(color="#762a83")
        .encode(
            x=alt.X("patients:Q", title="Patients"),
            y=alt.Y("urgency:N", title=None, sort=None, axis=alt.Axis(labelLimit=300)),
            tooltip=["urgency:N", "patients:Q"],
        )
        .properties(
            width="container",
            autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
            description="Number of patients in each urgency group of the worklist; the same "
            "figures are in the table beside it.",
        )
    )
    return {
        "days": days.to_dict(),
        "minutes": minutes.to_dict(),
        "totals": totals.to_dict(),
        "urgency": urgency.to_dict(),
    }


_bundle_lock = threading.Lock()
_bundle: Future[str] | None = None


def start_vega_bundle() -> Future[str]:
    """Start bundling the Vega scripts in a thread (the bundler releases the GIL and takes
    seconds): a report starts it first and reads it last. Once per process."""
    global _bundle
    with _bundle_lock:
        if _bundle is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="vega-bundle")
            _bundle = pool.submit(_make_bundle)
            pool.shutdown(wait=False)
        return _bundle


def vega_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one classic script (sets ``window.vegaEmbed``)."""
    return start_vega_bundle().result()


def _make_bundle() -> str:
    import altair as alt
    import vl_convert

    # The Vega-Lite version the specs were written for (Altair's), e.g. "v6.4".
    version = ".".join(str(alt.SCHEMA_VERSION).split(".")[:2])
    snippet = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"
    return str(vl_convert.javascript_bundle(snippet, vl_version=version))
