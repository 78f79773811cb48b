"""Names and keys with control characters or bidirectional overrides are refused at ingest.

From a least-privilege audit: ``matstore ingest table esc.csv -m esc.yaml`` stored a method
name holding ESC ``]0;PWNED-TITLE`` ESC ``\\`` (sets the terminal's title) and ESC ``[8m``
(hides what follows); ``matstore predict --method`` and ``matstore models show`` later printed
it raw to whoever read the store.  Every text that becomes a stored name or key (material,
prototype, method name, kind and potential, configuration key, mapping keys and values,
structure metadata, vocabulary units and symbols) must hold no character of Unicode category
Cc and none of the bidi embeddings/overrides/isolates U+202A–U+202E, U+2066–U+2069: one line
naming file, row/line and column (or mapping key) and the character as U+XXXX, nothing written.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from matstore import crud
from matstore.cli import app
from matstore.db import session_scope
from matstore.ingest.errors import IngestError, MappingError, ParseError
from matstore.ingest.structures import ingest_structure_file
from matstore.ingest.table import ingest_table
from matstore.names import TEXT, UnsafeTextError, describe_character, unsafe_reason

ESC_NAME = "PBE\x1b]0;PWNED-TITLE\x1b\\\x1b[8m"
#: How messages show ESC_NAME: Python's repr (ESC as \x1b, the backslash doubled), never raw.
ESC_SHOWN = r"'PBE\x1b]0;PWNED-TITLE\x1b\\\x1b[8m'"
TABLES = ("source", "material", "method", "bulk_property", "material_configuration", "configuration_property")


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}


def _write(path, content: str):
    path.write_text(content, encoding="utf-8")
    return path


def _refusal(engine, table, mapping, error: type[Exception] = ParseError) -> str:
    """The one-line ``error`` of ingesting ``table`` with ``mapping``, after checking nothing was stored."""
    before = _counts(engine)
    with pytest.raises(error) as err:
        ingest_table(table, mapping, engine=engine)
    assert _counts(engine) == before  # nothing stored, not even the rows before the bad one
    return str(err.value)


def _yaml(tmp_path, method_name: str, *, name: str = "m.yaml"):
    return _write(tmp_path / name, "material: {column: species, prototype: fcc}\n"
                                   f'method: {{name: "{method_name}", kind: dft}}\n'
                                   "columns:\n  a: {definition: lattice_constant, unit: angstrom}\n")


def test_characters_are_named_by_code_point() -> None:
    assert describe_character("\x1b") == "the control character U+001B (ESC)"
    assert describe_character("\x00") == "the control character U+0000 (NUL)"
    assert describe_character("\x7f") == "the control character U+007F (DEL)"
    assert describe_character("\x9b") == "the control character U+009B (CSI)"
    assert describe_character("\u2069") == "the bidirectional formatting character U+2069 (POP DIRECTIONAL ISOLATE)"
    assert unsafe_reason("Cu\tfcc", "the prototype") == r"the prototype 'Cu\tfcc' contains the control character U+0009 (HT)"
    assert unsafe_reason("line one\n\tline two", "description", TEXT) is None  # descriptions keep tabs and line feeds
    assert unsafe_reason("a\rb", "description", TEXT) == r"description 'a\rb' contains the control character U+000D (CR)"
    assert unsafe_reason("DFT–PBE (Müller) Ni₃Al γ′", "the method name") is None


def test_esc_in_a_mapping_method_name_is_refused(engine, tmp_path) -> None:
    """The audit's case: ESC sequences in `method: {name: ...}`; refused naming the mapping line and key."""
    table = _write(tmp_path / "esc.csv", "species,a\nCu,3.615\n")
    mapping = _write(tmp_path / "esc.yaml", "material: {column: species, prototype: fcc}\n"
                                            r'method: {name: "PBE\e]0;PWNED-TITLE\e\\\e[8m", kind: dft}' "\n"
                                            "columns:\n  a: {definition: lattice_constant, unit: angstrom}\n")
    before = _counts(engine)
    with pytest.raises(MappingError) as err:
        ingest_table(table, mapping, engine=engine)
    assert str(err.value) == f"{mapping}, line 2: method.name {ESC_SHOWN} contains the control character U+001B (ESC)"
    assert _counts(engine) == before
    result = CliRunner().invoke(app, ["ingest", "table", str(table), "--mapping", str(mapping)])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "contains the control character U+001B (ESC)" in result.output
    assert _counts(engine) == before


def test_esc_in_a_csv_material_cell_is_refused(engine, tmp_path) -> None:
    table = _write(tmp_path / "t.csv", "species,a\nCu,3.615\nNi\x1b[8m,3.524\n")
    assert _refusal(engine, table, _yaml(tmp_path, "DFT-PBE")) == (
        f"{table}, row 2, line 3, column 'species': the material (formula) 'Ni\\x1b[8m' contains the control "
        "character U+001B (ESC)")


def test_esc_in_a_csv_method_cell_is_refused(engine, tmp_path) -> None:
    table = _write(tmp_path / "t.csv", f"species,model,a\nCu,EAM,3.615\nNi,{ESC_NAME},3.524\n")
    mapping = _write(tmp_path / "m.yaml", "material: {column: species}\nmethod: {column: model, kind: interatomic_potential}\n"
                                          "columns:\n  a: {definition: lattice_constant, unit: angstrom}\n")
    assert _refusal(engine, table, mapping) == (f"{table}, row 2, line 3, column 'model': the method name "
                                                f"{ESC_SHOWN} contains the control character U+001B (ESC)")


def test_bidi_override_in_a_configuration_key_is_refused(engine, tmp_path) -> None:
    """A right-to-left override makes one key read as another; the key cell is refused."""
    table = _write(tmp_path / "k.csv", "_id,species,E\nvac-1,Mo,1.5\nvac-\u202e21,Mo,1.7\n")
    mapping = _write(tmp_path / "k.yaml", "material: {column: species}\nmethod: {name: DFT-PBE, kind: dft}\n"
                                          "key: {column: _id, prefix: 'mos2:'}\n"
                                          "columns:\n  E: {definition: formation_energy, unit: eV}\n")
    assert _refusal(engine, table, mapping) == (
        f"{table}, row 2, line 3, column '_id': the configuration key 'vac-\\u202e21' contains the bidirectional "
        "formatting character U+202E (RIGHT-TO-LEFT OVERRIDE)")


def test_bidi_override_in_a_mapping_column_key_and_prefix(tmp_path, engine) -> None:
    table = _write(tmp_path / "t.csv", "species,a\nCu,3.615\n")
    bad_prefix = _write(tmp_path / "p.yaml", "material: {column: species}\nmethod: {name: DFT-PBE, kind: dft}\n"
                                             "key: {column: species, prefix: \"x\u2066y\"}\n"
                                             "columns:\n  a: {definition: lattice_constant, unit: angstrom}\n")
    assert _refusal(engine, table, bad_prefix, MappingError) == (
        f"{bad_prefix}, line 3: key.prefix 'x\\u2066y' contains the bidirectional formatting character U+2066 "
        "(LEFT-TO-RIGHT ISOLATE)")
    bad_column = _write(tmp_path / "c.yaml", "material: {column: species}\nmethod: {name: DFT-PBE, kind: dft}\n"
                                             "columns:\n  \"a\u202e\": {definition: lattice_constant, unit: angstrom}\n")
    assert _refusal(engine, table, bad_column, MappingError) == (
        f"{bad_column}, line 4: columns: key 'a\\u202e' contains the bidirectional formatting character U+202E "
        "(RIGHT-TO-LEFT OVERRIDE)")


def test_mapping_descriptions_keep_tabs_and_line_feeds(engine, tmp_path) -> None:
    """`source.description` / `citation` are free text; a `delimiter: "\\t"` is a tab-separated table."""
    table = _write(tmp_path / "t.tsv", "species\tmodel\ta\nNi\tDFT–PBE (Müller)\t3.524\n")
    mapping = _write(tmp_path / "m.yaml",
                     'format: csv\ndelimiter: "\\t"\nsource:\n  description: "lattice constants\\n\\tfrom table 2"\n'
                     "  citation: |\n    Müller, J.\tPhys. Rev. B 1 (2020)\n    second line\n"
                     "material: {column: species, prototype: L1₂}\nmethod: {column: model, kind: dft}\n"
                     "columns:\n  a: {definition: lattice_constant, unit: angstrom}\n")
    before = _counts(engine)
    report = ingest_table(table, mapping, engine=engine)
    assert (report.bulk_inserted, report.methods, report.materials) == (1, 1, 1)
    after = _counts(engine)
    assert (after["bulk_property"] - before["bulk_property"], after["method"] - before["method"]) == (1, 1)
    with engine.connect() as conn:
        method, prototype = conn.execute(text(
            "SELECT m.name, mat.prototype FROM bulk_property b JOIN method m ON m.id = b.method_id "
            "JOIN material mat ON mat.id = b.material_id WHERE b.source_id = :s"), {"s": report.source_id}).one()
        description = conn.execute(text("SELECT description FROM source WHERE id = :s"), {"s": report.source_id}).scalar()
    assert (method, prototype) == ("DFT–PBE (Müller)", "L1₂")
    assert description == "lattice constants\n\tfrom table 2"


def test_control_character_in_a_description_other_than_tab_is_refused(tmp_path, engine) -> None:
    table = _write(tmp_path / "t.csv", "species,a\nCu,3.615\n")
    mapping = _write(tmp_path / "m.yaml", 'source: {description: "ok\\e[8mhidden"}\nmaterial: {column: species}\n'
                                          "method: {name: DFT-PBE, kind: dft}\n"
                                          "columns:\n  a: {definition: lattice_constant, unit: angstrom}\n")
    assert _refusal(engine, table, mapping, MappingError) == (
        f"{mapping}, line 1: source.description 'ok\\x1b[8mhidden' contains the control character U+001B (ESC)")


def test_structure_metadata_and_method_name(engine, tmp_path) -> None:
    frame = ('2\nLattice="3.6 0 0 0 3.6 0 0 0 3.6" Properties=species:S:1:pos:R:3 config_type={ct} energy=-1.0 '
             'pbc="T T T"\nCu 0 0 0\nCu 1.8 1.8 0\n')
    path = _write(tmp_path / "s.extxyz", frame.format(ct="bulk") + frame.format(ct='"bulk\x1b[8m"'))
    before = _counts(engine)
    with pytest.raises(ParseError) as err:
        ingest_structure_file(path, engine=engine, method="EMT")
    assert str(err.value) == (f"{path}, line 6: frame 1: metadata config_type 'bulk\\x1b[8m' contains the control "
                              "character U+001B (ESC)")
    good = _write(tmp_path / "g.extxyz", frame.format(ct="bulk"))
    with pytest.raises(IngestError) as err:
        ingest_structure_file(good, engine=engine, method="EMT\x9b8m")
    assert str(err.value) == f"{good}: the method name 'EMT\\x9b8m' contains the control character U+009B (CSI)"
    assert _counts(engine) == before


def test_vocabulary_units_symbols_and_descriptions(engine) -> None:
    with crud.job_run(engine=engine, kind="vocab_add", parameters={}) as run, session_scope(engine) as session:
        with pytest.raises(crud.VocabularyError) as err:
            crud.add_definition(session=session, name="hidden_energy", unit="eV", scope="bulk", job_run_id=run.id,
                                symbol="E\x1b[8m")
        assert str(err.value) == ("definition hidden_energy: the symbol 'E\\x1b[8m' contains the control character "
                                  "U+001B (ESC)")
        with pytest.raises(crud.VocabularyError) as err:
            crud.add_definition(session=session, name="hidden_energy", unit="eV", scope="bulk", job_run_id=run.id,
                                description="formation energy\u202e")
        assert str(err.value) == ("definition hidden_energy: the description 'formation energy\\u202e' contains the "
                                  "bidirectional formatting character U+202E (RIGHT-TO-LEFT OVERRIDE)")
        with pytest.raises(UnsafeTextError) as unsafe:
            crud.get_or_create_methods(session=session, methods=[("EAM\x07", "interatomic_potential", None)])
        assert str(unsafe.value) == "the method name 'EAM\\x07' contains the control character U+0007 (BEL)"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM property_definition WHERE name = 'hidden_energy'")).scalar() == 0
