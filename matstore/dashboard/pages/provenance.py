"""Provenance: pick any stored value and see how it was made and where it came from."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from matstore.dashboard import charts, labels, queries, state

blank = labels.text_or_blank

st.title("Provenance")
st.caption("Every value links to its method (calculator or potential and parameters), its source "
           "(file hash, URL, DOI, licence), the job run that stored it and the configuration it came from.")

c1, c2 = st.columns([3, 1])
search = c1.text_input("Search values", placeholder="words of a material, method or property name, or a value id",
                       max_chars=200, value=state.get_text("q"))
scopes = ["all", "bulk", "surface", "configuration"]
scope = c2.radio("Scope", scopes, horizontal=True, index=state.index_of(scopes, state.get_text("scope")))
state.keep("q", search)
state.keep("scope", None if scope == "all" else scope)
found = queries.search_values(search=search, scope=scope)
linked = state.get_text("value")  # "bulk:12" from a link on another page
if found.empty and not linked:
    st.info("No stored value matches.")
    st.stop()


def _label(row: pd.Series) -> str:
    where = f" {row['orientation']}" if isinstance(row["orientation"], str) else ""
    return (f"{row['scope']} #{row['value_id']}: {row['material']}{where} · {row['property']} = "
            f"{charts.format_value(row['value'], row['unit'], 6)} · {row['method']}")


options = {f"{r.scope}:{r.value_id}": _label(r) for _, r in found.iterrows()}
if linked and linked not in options and linked.partition(":")[0] in ("bulk", "surface", "configuration") \
        and linked.partition(":")[2].isdigit():
    options = {linked: f"{linked.replace(':', ' #')} (linked)"} | options
keys = list(options)
key = st.selectbox(f"Value ({len(found)} newest matches)", keys, format_func=options.get,
                   index=state.index_of(keys, linked))
state.keep("value", key)
scope_of, value_id = key.split(":")
details = queries.value_provenance(scope=scope_of, value_id=int(value_id))
if details.empty:
    st.warning("This value is no longer in the store.")
    st.stop()
v = details.iloc[0]

st.subheader(f"{v['property']} of {v['material']}" + (f" {v['orientation']}" if isinstance(v["orientation"], str) else ""))
m1, m2, m3 = st.columns(3)
m1.metric("Value", charts.format_value(v["value"], v["unit"], 6))
m2.metric("Uncertainty", charts.format_value(v["uncertainty"], v["unit"], 3))
m3.metric("Validation flag", v["flag"] or "passed")
source = labels.source_label(method_name=v["method_name"], method_kind=v["method_kind"],
                             calculator=v["method_calculator"], potential=v["method_potential"])
st.caption(f"Source: {source} ({v['source_kind']}). Link to this view: `{state.provenance_url(scope_of, int(value_id))}`")

left, right = st.columns(2)
with left:
    st.markdown("#### Method")
    st.table(pd.DataFrame({"": ["name", "kind", "calculator", "potential", "potential sha256", "description"],
                           "value": [v["method_name"], v["method_kind"], v["method_calculator"] or "–",
                                     v["method_potential"] or "–", v["method_potential_sha256"] or "–",
                                     v["method_description"] or "–"]}).set_index(""))
    st.json({"parameters": v["method_parameters"], "software": v["method_software"]}, expanded=True)
    st.markdown("#### Source")
    st.table(pd.DataFrame({"": ["kind", "sha256", "URL / path", "DOI", "licence", "commit", "description"],
                           "value": [v["source_kind"], v["source_sha256"], v["source_uri"] or "–",
                                     v["source_doi"] or "–", v["source_license"] or "–",
                                     v["source_commit"] or "–", v["source_description"] or "–"]}).set_index(""))
    if v["source_doi"]:
        st.markdown(f"[doi.org/{v['source_doi']}](https://doi.org/{v['source_doi']})")
with right:
    st.markdown("#### Job run")
    st.table(pd.DataFrame({"": ["id", "kind", "status", "code version", "git commit", "host", "started", "finished"],
                           "value": [blank(v["job_id"]), v["job_kind"], v["job_status"], blank(v["job_code_version"]),
                                     blank(v["job_git_commit"]) or "–", blank(v["job_host"]),
                                     blank(v["job_started_at"]), blank(v["job_finished_at"]) or "–"]}).set_index(""))
    st.json({"parameters": v["job_parameters"]}, expanded=False)
    st.markdown("#### Configuration")
    if pd.isna(v["config_id"]):
        st.info("This value is not linked to a stored configuration.")
    else:
        st.table(pd.DataFrame({"": ["id", "formula", "atoms", "energy", "content sha256", "periodic"],
                               "value": [str(int(v["config_id"])), v["config_formula"], str(int(v["config_n_atoms"])),
                                         charts.format_value(v["config_energy"], "eV", 8), v["config_content_sha256"],
                                         blank(v["config_pbc"])]}).set_index(""))
        st.json({"cell (Å)": v["config_cell"], "info": v["config_info"]}, expanded=False)
    st.markdown("#### Computation details")
    st.json(v["details"] or {}, expanded=False)
