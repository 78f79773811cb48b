"""Jobs: recent job runs with status and errors, and procrastinate's queue when present."""

from __future__ import annotations

import streamlit as st

from matstore.dashboard import charts, labels, queries
from matstore.schema.provenance import JOB_STATUSES

st.title("Jobs")
st.caption("Every ingest, fit, refit and pipeline run recorded in `job_run`.")

statuses = st.multiselect("Status", JOB_STATUSES, default=[], placeholder="all statuses")
limit = st.select_slider("Rows", options=[25, 50, 100, 250, 500], value=100)
runs = queries.job_runs(statuses=tuple(statuses), limit=limit)

st.plotly_chart(charts.job_status_bars(queries.job_status_counts()), width="stretch")
if runs.empty:
    st.info("No job runs match.")
else:
    st.dataframe(
        labels.blank_missing(runs[["id", "kind", "model", "status", "started_at", "finished_at", "duration_s", "code_version", "git_commit",
              "host", "pid", "error"]]),
        hide_index=True, width="stretch",
        column_config={"duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f s")},
    )
    failed = runs[runs["status"] == "failed"]
    for run in failed.itertuples():
        model, ended = labels.text_or_blank(run.model), labels.text_or_blank(run.finished_at)
        with st.expander(f"Run {run.id} ({run.kind}{' ' + model if model else ''}) failed at "
                         f"{ended or labels.text_or_blank(run.started_at)}"):
            st.code(labels.text_or_blank(run.error) or "(no error text)", language="text")
            st.json({"parameters": run.parameters, "summary": run.summary}, expanded=False)

st.subheader("Task queue")
if bool(queries.procrastinate_present().iloc[0]["present"]):
    counts = queries.procrastinate_status_counts()
    if not counts.empty:
        cols = st.columns(len(counts))
        for col, row in zip(cols, counts.itertuples(), strict=True):
            col.metric(row.status, f"{int(row.n):,}")
    queued = queries.procrastinate_jobs()
    if queued.empty:
        st.info("No queued or scheduled jobs.")
    else:
        st.dataframe(queued, hide_index=True, width="stretch")
else:
    st.info("No task queue in this database (procrastinate's tables are not installed; see `matstore worker`).")
