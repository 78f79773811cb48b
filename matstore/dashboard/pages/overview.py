"""Overview: what the store holds and how the latest jobs went."""

from __future__ import annotations

import streamlit as st

from matstore.dashboard import charts, labels, queries

st.title("Overview")
st.caption("Counts of everything in the store, the latest job runs and any failures.")

c = queries.counts().iloc[0]
row1 = st.columns(4)
row1[0].metric("Materials", f"{int(c.materials):,}")
row1[1].metric("Methods", f"{int(c.methods):,}", help="Calculators, interatomic potentials, levels of theory")
row1[2].metric("Surfaces", f"{int(c.surfaces):,}")
n_values = int(c.bulk_properties + c.surface_properties + c.configuration_properties)
row1[3].metric("Property values", f"{n_values:,}",
               help=f"{int(c.bulk_properties):,} bulk + {int(c.surface_properties):,} surface + "
                    f"{int(c.configuration_properties):,} per-configuration values")
row2 = st.columns(4)
row2[0].metric("Configurations", f"{int(c.configurations):,}")
row2[1].metric("Equation models", f"{int(c.equation_models):,}")
row2[2].metric("Equation versions", f"{int(c.equation_versions):,}")
row2[3].metric("Job runs", f"{int(c.job_runs):,}", delta=f"{int(c.failed_job_runs)} failed" if c.failed_job_runs else None,
               delta_color="inverse", delta_arrow="off")

left, right = st.columns([3, 2])
with left:
    st.subheader("Latest job runs")
    runs = queries.job_runs(limit=15)
    if runs.empty:
        st.info("No job runs yet: ingest data with `matstore ingest`.")
    else:
        st.dataframe(
            labels.blank_missing(runs[["id", "kind", "model", "status", "started_at", "duration_s", "code_version", "git_commit", "host"]]),
            hide_index=True, width="stretch",
            column_config={"duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f s"),
                           "started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss")},
        )
with right:
    st.subheader("Runs by kind and status")
    st.plotly_chart(charts.job_status_bars(queries.job_status_counts()), width="stretch")

failed = queries.job_runs(statuses=("failed",), limit=10)
st.subheader("Failures")
if failed.empty:
    st.success("No failed job runs.")
else:
    st.warning(f"{int(c.failed_job_runs)} job run(s) failed; the newest are listed below.")
    st.dataframe(labels.blank_missing(failed[["id", "kind", "model", "started_at", "host", "error"]]), hide_index=True, width="stretch")
