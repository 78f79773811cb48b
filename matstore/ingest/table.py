"""Ingest property tables (CSV or whitespace text) through a YAML mapping.

A mapping says which column names the material and which the method (or gives them as
constants), and maps value columns to property definitions with the column's unit; every
value is converted with pint to the definition's canonical unit
(:mod:`matstore.ingest.units`) and checked against the definition's plausibility bounds.
Surface definitions (scope ``surface``) need an orientation: a constant Miller index, normal
or angle pair per column (wide tables), or the columns holding them (long tables).

Mapping (YAML)::

    name: my_table                 # label recorded with the source
    format: csv                    # csv | whitespace (default: from the file extension)
    header: true                   # false: give `names: [...]`
    comment: "#"                   # whitespace tables: lines starting with it are ignored
    on_invalid: error              # error (default) | flag | skip
    source: {url: ..., doi: ..., license: MIT, commit: ..., description: ..., citation: ...}
    material: {column: species, prototype: fcc}          # or {formula: Cu, prototype_column: ...}
    method: {column: model, kind: interatomic_potential}  # or {name: DFT-PBE, kind: dft}
    columns:
      lattice_constant_fcc: {definition: lattice_constant, unit: angstrom}
      surface_energy_111_fcc:
        - {definition: surface_energy_111, unit: eV/angstrom^2}
        - {definition: surface_energy, unit: eV/angstrom^2, miller: [1, 1, 1]}
      gamma:                       # long form: orientation from other columns
        definition: surface_energy
        unit: J/m^2
        orientation: {miller_column: hkl}   # or {normal_columns: [nx, ny, nz]}
                                            # or {angle_columns: [theta_deg, phi_deg]}
        uncertainty_column: gamma_err

Invalid values (non-finite, or outside :data:`~matstore.ingest.units.PLAUSIBLE_RANGES`):
``on_invalid: error`` aborts the whole source naming the file, row and column; ``flag``
stores them with ``flag`` set (non-finite values cannot be stored and are reported as
skipped); ``skip`` leaves them out.  Both ``flag`` and ``skip`` list every such value with
its row in the report.  ``row_flags`` flags values of rows that the table itself marks
(e.g. a ``disqualified`` column): each rule names a ``column``, matches ``when: not_blank`` or
``values: [...]`` (case-insensitive), gives the ``flag`` text and optionally the
``definitions`` it applies to (default: all); such values are stored flagged and listed.
``on_duplicate: keep_first`` keeps the first of several rows that
give one property of one material and method (the default ``error`` refuses them).  Blank cells are missing values, never errors.  Unparsable numbers,
unknown elements, rows with a wrong number of fields and duplicated rows are always errors.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from matstore.hashing import sha256_bytes
from matstore.ingest.errors import (
    DuplicateRowError,
    EmptyFileError,
    IngestError,
    InvalidValueError,
    MappingError,
    MissingColumnError,
    ParseError,
    TableShapeError,
    UnitError,
    UnknownElementError,
)
from matstore.ingest.units import check_value, conversion_factor
from matstore.orientation import (
    Orientation,
    OrientationError,
    from_angles,
    from_miller,
    from_normal,
)
from matstore.schema.provenance import METHOD_KINDS
from matstore.schema.vocabulary import DEFINITIONS_BY_NAME

log = logging.getLogger(__name__)

ON_INVALID = ("error", "flag", "skip")
ON_DUPLICATE = ("error", "keep_first")
_MAPPING_KEYS = {"name", "format", "header", "names", "comment", "delimiter", "on_invalid", "on_duplicate", "source", "material", "method", "columns", "description", "row_flags"}
_ENTRY_KEYS = {"definition", "unit", "miller", "normal", "angles", "orientation", "uncertainty_column", "on_invalid"}
_FORMULA = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")
_FORMULA_TEXT = re.compile(r"(?:[A-Z][a-z]?\d*\.?\d*)+")
_BATCH = 2000


# --- mapping -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnEntry:
    """One (column → definition) target of a mapping."""

    column: str
    definition: str
    unit: str
    factor: float
    canonical_unit: str
    scope: str
    orientation: Orientation | None = None
    miller_column: str | None = None
    normal_columns: tuple[str, str, str] | None = None
    angle_columns: tuple[str, str] | None = None
    uncertainty_column: str | None = None
    on_invalid: str = "error"


@dataclass(frozen=True)
class RowFlag:
    """A rule flagging the values of rows the table marks (``row_flags`` in a mapping)."""

    column: str
    flag: str
    values: tuple[str, ...] = ()
    not_blank: bool = False
    definitions: tuple[str, ...] = ()

    def applies(self, cell: str, definition: str) -> bool:
        """True when this rule flags ``definition`` in a row whose ``column`` holds ``cell``."""
        if self.definitions and definition not in self.definitions:
            return False
        text = cell.strip().lower()
        return bool(text) if self.not_blank else text in self.values


def _row_flags(raw: Any, where: str | None) -> list[RowFlag]:
    rules = []
    for k, item in enumerate(raw or [], start=1):
        if not isinstance(item, dict) or not item.get("column") or not item.get("flag"):
            raise MappingError(f"row_flags[{k}]: give `column`, `flag` and `when: not_blank` or `values`", path=where)
        unknown = set(item) - {"column", "flag", "when", "values", "definitions"}
        if unknown:
            raise MappingError(f"row_flags[{k}]: unknown keys {sorted(unknown)}", path=where)
        not_blank = item.get("when") == "not_blank"
        values = tuple(str(v).strip().lower() for v in item.get("values") or ())
        if not not_blank and not values:
            raise MappingError(f"row_flags[{k}]: give `when: not_blank` or a list of `values`", path=where)
        rules.append(RowFlag(str(item["column"]), str(item["flag"]), values, not_blank,
                             tuple(item.get("definitions") or ())))
    return rules


@dataclass
class Mapping:
    """A parsed, validated table mapping (see the module docstring for the YAML form)."""

    name: str
    path: str | None
    raw: dict[str, Any]
    entries: list[ColumnEntry]
    format: str | None = None
    header: bool = True
    names: list[str] | None = None
    comment: str | None = "#"
    delimiter: str = ","
    on_invalid: str = "error"
    on_duplicate: str = "error"
    source: dict[str, Any] = field(default_factory=dict)
    material: dict[str, Any] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)
    row_flags: list[RowFlag] = field(default_factory=list)

    def columns_used(self) -> list[str]:
        """Every table column the mapping reads."""
        cols: list[str] = []
        for key in ("column", "prototype_column"):
            if self.material.get(key):
                cols.append(self.material[key])
        for key in ("column", "kind_column", "potential_column"):
            if self.method.get(key):
                cols.append(self.method[key])
        for e in self.entries:
            cols.append(e.column)
            cols.extend(c for c in (e.miller_column, e.uncertainty_column) if c)
            cols.extend(e.normal_columns or ())
            cols.extend(e.angle_columns or ())
        cols.extend(rule.column for rule in self.row_flags)
        return list(dict.fromkeys(cols))


def _orientation_constant(spec: dict[str, Any], where: str, path: str | None) -> Orientation | None:
    try:
        if "miller" in spec:
            return from_miller(*spec["miller"])
        if "normal" in spec:
            return from_normal(spec["normal"])
        if "angles" in spec:
            theta, phi = spec["angles"]
            return from_angles(float(theta), float(phi))
    except (OrientationError, TypeError, ValueError) as exc:
        raise MappingError(f"{where}: invalid orientation: {exc}", path=path) from exc
    return None


def load_mapping(mapping: str | Path | dict[str, Any], *, path: str | Path | None = None) -> Mapping:
    """Parse and validate a mapping (YAML file or dict).

    Raises
    ------
    MappingError
        Unknown keys or definitions, a missing unit, a surface definition without
        orientation, a bulk definition with one, an unknown ``on_invalid`` or method kind.
    UnitError
        If a column's unit is unknown or not convertible to the definition's unit.
    """
    if isinstance(mapping, (str, Path)):
        path = Path(mapping)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise MappingError("mapping file not found", path=path) from None
        except yaml.YAMLError as exc:
            raise MappingError(f"not valid YAML: {exc}", path=path) from exc
    else:
        raw = dict(mapping)
    where = str(path) if path else None
    if not isinstance(raw, dict):
        raise MappingError("a mapping must be a YAML mapping (key: value)", path=where)
    unknown = set(raw) - _MAPPING_KEYS
    if unknown:
        raise MappingError(f"unknown mapping keys {sorted(unknown)}; known: {sorted(_MAPPING_KEYS)}", path=where)
    on_invalid = raw.get("on_invalid", "error")
    if on_invalid not in ON_INVALID:
        raise MappingError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}", path=where)
    on_duplicate = raw.get("on_duplicate", "error")
    if on_duplicate not in ON_DUPLICATE:
        raise MappingError(f"on_duplicate must be one of {ON_DUPLICATE}, got {on_duplicate!r}", path=where)
    material = dict(raw.get("material") or {})
    if not (material.get("column") or material.get("formula")):
        raise MappingError("material: give `column` (the column naming the element/formula) or `formula`", path=where)
    method = dict(raw.get("method") or {})
    if not (method.get("column") or method.get("name")):
        raise MappingError("method: give `column` (the column naming the method) or `name`", path=where)
    if not method.get("kind_column"):
        kind = method.setdefault("kind", "other")
        if kind not in METHOD_KINDS:
            raise MappingError(f"method.kind must be one of {METHOD_KINDS}, got {kind!r}", path=where)
    columns = raw.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise MappingError("columns: map at least one table column to a property definition", path=where)
    lines = _column_lines(path) if path else {}
    entries: list[ColumnEntry] = []
    for column, spec in columns.items():
        for item in spec if isinstance(spec, list) else [spec]:
            try:
                entries.append(_entry(str(column), item, on_invalid, where))
            except MappingError as exc:
                if exc.line is None and str(column) in lines:
                    exc.line = lines[str(column)]
                    exc.args = (exc._format(),)
                raise
    names = raw.get("names")
    if raw.get("header", True) is False and not names:
        raise MappingError("header: false needs `names: [...]` (the column names)", path=where)
    return Mapping(
        name=str(raw.get("name") or (Path(path).stem if path else "mapping")),
        path=where,
        raw=raw,
        entries=entries,
        format=raw.get("format"),
        header=bool(raw.get("header", True)),
        names=[str(n) for n in names] if names else None,
        comment=raw.get("comment", "#"),
        delimiter=str(raw.get("delimiter", ",")),
        on_invalid=on_invalid,
        on_duplicate=on_duplicate,
        source=dict(raw.get("source") or {}),
        material=material,
        method=method,
        row_flags=_row_flags(raw.get("row_flags"), where),
    )


def _column_lines(path: str | Path) -> dict[str, int]:
    """1-based line of each key under ``columns:`` in a mapping file (for error messages)."""
    try:
        node = yaml.compose(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    for key, value in node.value:
        if key.value == "columns" and isinstance(value, yaml.MappingNode):
            return {k.value: k.start_mark.line + 1 for k, _ in value.value}
    return {}


def _entry(column: str, item: Any, on_invalid: str, where: str | None) -> ColumnEntry:
    ctx = f"columns.{column}"
    if not isinstance(item, dict):
        raise MappingError(f"{ctx}: expected {{definition: ..., unit: ...}}, got {item!r}", path=where)
    unknown = set(item) - _ENTRY_KEYS
    if unknown:
        raise MappingError(f"{ctx}: unknown keys {sorted(unknown)}; known: {sorted(_ENTRY_KEYS)}", path=where)
    name = item.get("definition")
    definition = DEFINITIONS_BY_NAME.get(name)  # type: ignore[arg-type]
    if definition is None:
        raise MappingError(f"{ctx}: unknown property definition {name!r}", path=where, column=column)
    if not item.get("unit"):
        raise MappingError(f"{ctx}: give the column's `unit` (canonical for {name}: {definition.unit})", path=where, column=column)
    unit = str(item["unit"])
    try:
        factor = conversion_factor(unit, definition.unit)
    except ValueError as exc:
        raise UnitError(f"{ctx}: {exc} (definition {name} is in {definition.unit})", path=where, column=column) from exc
    orientation = _orientation_constant(item, ctx, where)
    spec = item.get("orientation") or {}
    miller_column = spec.get("miller_column")
    normal_columns = tuple(spec["normal_columns"]) if spec.get("normal_columns") else None
    angle_columns = tuple(spec["angle_columns"]) if spec.get("angle_columns") else None
    if normal_columns is not None and len(normal_columns) != 3:
        raise MappingError(f"{ctx}: normal_columns needs three column names", path=where)
    if angle_columns is not None and len(angle_columns) != 2:
        raise MappingError(f"{ctx}: angle_columns needs two column names (theta, phi)", path=where)
    n_orient = sum(x is not None for x in (orientation, miller_column, normal_columns, angle_columns))
    if definition.scope == "surface" and n_orient != 1:
        raise MappingError(f"{ctx}: surface definition {name} needs exactly one orientation (miller, normal, angles or orientation: {{...}})", path=where)
    if definition.scope != "surface" and n_orient:
        raise MappingError(f"{ctx}: {name} is a {definition.scope} property and takes no orientation", path=where)
    entry_invalid = item.get("on_invalid", on_invalid)
    if entry_invalid not in ON_INVALID:
        raise MappingError(f"{ctx}: on_invalid must be one of {ON_INVALID}", path=where)
    return ColumnEntry(
        column=column, definition=name, unit=unit, factor=factor, canonical_unit=definition.unit,  # type: ignore[arg-type]
        scope=definition.scope, orientation=orientation, miller_column=miller_column,
        normal_columns=normal_columns, angle_columns=angle_columns,  # type: ignore[arg-type]
        uncertainty_column=item.get("uncertainty_column"), on_invalid=entry_invalid,
    )


# --- reading the table --------------------------------------------------------------------------

@dataclass
class Table:
    """Raw table cells with the file line number of every row."""

    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    header_line: int | None


def read_table(path: str | Path, mapping: Mapping) -> Table:
    """Read a CSV or whitespace table into strings, checking that every row has the header's width.

    Raises
    ------
    EmptyFileError
        No header or no data rows.
    TableShapeError
        A row has more or fewer fields than the header (e.g. shifted columns).
    ParseError
        The file is not text.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from exc
    if not text.strip():
        raise EmptyFileError("the file is empty", path=path)
    fmt = mapping.format or ("csv" if path.suffix.lower() in (".csv", ".tsv") else "whitespace")
    records: list[tuple[int, list[str]]] = []
    if fmt == "csv":
        delimiter = "\t" if path.suffix.lower() == ".tsv" and mapping.raw.get("delimiter") is None else mapping.delimiter
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        line = 1
        try:
            for fields in reader:
                if fields and not (len(fields) == 1 and not fields[0].strip()):
                    records.append((line, fields))
                line = reader.line_num + 1
        except csv.Error as exc:
            raise ParseError(f"CSV error: {exc}", path=path, line=reader.line_num) from exc
    elif fmt == "whitespace":
        for number, raw_line in enumerate(text.splitlines(), start=1):
            stripped = raw_line.strip()
            if not stripped or (mapping.comment and stripped.startswith(mapping.comment)):
                continue
            try:
                fields = shlex.split(stripped) if ('"' in stripped or "'" in stripped) else stripped.split()
            except ValueError as exc:
                raise ParseError(f"unbalanced quotes: {exc}", path=path, line=number) from exc
            records.append((number, fields))
    else:
        raise MappingError(f"format must be csv or whitespace, got {fmt!r}", path=mapping.path)
    if mapping.header:
        if not records:
            raise EmptyFileError("the file has no header", path=path)
        header_line, header = records[0]
        header = [h.strip() for h in header]
        records = records[1:]
    else:
        header_line, header = None, list(mapping.names or [])
    if not records:
        raise EmptyFileError("the table has no data rows", path=path)
    for row_number, (line, fields) in enumerate(records, start=1):
        if len(fields) != len(header):
            raise TableShapeError(
                f"{len(fields)} fields but the header has {len(header)} (shifted or missing columns?)",
                path=path, row=row_number, line=line,
            )
    return Table(header=header, rows=[f for _, f in records], lines=[n for n, _ in records], header_line=header_line)


# --- values ----------------------------------------------------------------------------------

def _parse_float(text: str, *, path: Path, row: int, line: int, column: str) -> float | None:
    value = text.strip()
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise ParseError(f"unparsable number {value[:40]!r}", path=path, row=row, line=line, column=column) from None


def _parse_formula(text: str, *, path: Path, row: int, line: int, column: str | None) -> str:
    from ase.data import atomic_numbers

    value = text.strip()
    if not value:
        raise ParseError("the material (element/formula) is blank", path=path, row=row, line=line, column=column)
    if not _FORMULA_TEXT.fullmatch(value):
        raise UnknownElementError(f"{value!r} is not a chemical formula", path=path, row=row, line=line, column=column)
    for symbol, _ in _FORMULA.findall(value):
        if symbol not in atomic_numbers or atomic_numbers[symbol] == 0:
            raise UnknownElementError(f"unknown element {symbol!r} in {value!r}", path=path, row=row, line=line, column=column)
    from pymatgen.core import Composition

    return Composition(value).reduced_formula


def _parse_miller(text: str, *, path: Path, row: int, line: int, column: str) -> Orientation:
    value = text.strip().strip("()[]{}")
    try:
        if re.fullmatch(r"(-?\d){3}", value):
            ints = [int(x) for x in re.findall(r"-?\d", value)]
        else:
            ints = [int(x) for x in re.split(r"[\s,;]+", value) if x]
        if len(ints) != 3:
            raise ValueError
        return from_miller(*ints)
    except (ValueError, OrientationError) as exc:
        raise ParseError(f"not a Miller index: {text.strip()!r} {exc}".rstrip(), path=path, row=row, line=line, column=column) from None


@dataclass
class _Value:
    row: int
    line: int
    column: str
    entry: ColumnEntry
    formula: str
    prototype: str
    method: str
    method_kind: str
    potential: str | None
    raw: str
    value: float
    uncertainty: float | None
    orientation: Orientation | None
    flag: str | None = None


@dataclass
class TableReport:
    """Outcome of ingesting one table.

    Attributes
    ----------
    status: ``inserted`` or ``already stored``
    rows: data rows read; values: values found (non-blank cells of mapped columns × targets)
    bulk_inserted, surface_inserted: rows added to ``bulk_property`` and ``surface_property``
    missing: blank cells; duplicates: values not inserted because already stored;
    duplicate_rows: rows repeating an earlier row's (material, method, property), kept
        out under ``on_duplicate: keep_first`` (their values are listed in ``skipped``)
    flagged: values stored with a flag; skipped: values left out (each with row, line,
        column, definition, value and reason)
    materials, methods: distinct materials and methods of the table
    """

    path: str
    sha256: str
    mapping: str
    status: str = "inserted"
    rows: int = 0
    values: int = 0
    bulk_inserted: int = 0
    surface_inserted: int = 0
    missing: int = 0
    duplicates: int = 0
    duplicate_rows: set[int] = field(default_factory=set)
    materials: int = 0
    methods: int = 0
    source_id: int | None = None
    job_run_id: int | None = None
    flagged: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        """All property rows added."""
        return self.bulk_inserted + self.surface_inserted

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored as the job run's summary)."""
        out = asdict(self)
        out["inserted"] = self.inserted
        out["duplicate_rows"] = sorted(self.duplicate_rows)
        return out


def _issue(v: _Value, reason: str) -> dict[str, Any]:
    return {
        "row": v.row, "line": v.line, "column": v.column, "definition": v.entry.definition,
        "material": v.formula, "method": v.method, "raw": v.raw,
        "value": v.value if math.isfinite(v.value) else str(v.value),
        "unit": v.entry.canonical_unit, "reason": reason,
        **({"orientation": v.orientation.label} if v.orientation is not None else {}),
    }


def parse_values(path: str | Path, mapping: Mapping, table: Table, report: TableReport) -> list[_Value]:
    """Turn table cells into converted, validated values; fill ``report`` counts and issues.

    Raises
    ------
    MissingColumnError, ParseError, UnknownElementError, DuplicateRowError, InvalidValueError
        Naming the file, row, line and column.
    """
    path = Path(path)
    index = {name: k for k, name in enumerate(table.header)}
    for column in mapping.columns_used():
        if column not in index:
            raise MissingColumnError(
                f"column {column!r} named by the mapping is not in the table (columns: {', '.join(table.header[:12])}{' ...' if len(table.header) > 12 else ''})",
                path=path, line=table.header_line,
            )
    mat, met = mapping.material, mapping.method
    values: list[_Value] = []
    seen: dict[tuple, _Value] = {}
    errors: list[tuple[_Value, str]] = []
    for r, (fields, line) in enumerate(zip(table.rows, table.lines, strict=True), start=1):
        def cell(name: str, fields: list[str] = fields) -> str:
            return fields[index[name]]

        formula = _parse_formula(cell(mat["column"]) if mat.get("column") else str(mat["formula"]), path=path, row=r, line=line, column=mat.get("column"))
        prototype = (cell(mat["prototype_column"]).strip() if mat.get("prototype_column") else str(mat.get("prototype", "unknown"))) or "unknown"
        method = cell(met["column"]).strip() if met.get("column") else str(met["name"])
        if not method:
            raise ParseError("the method is blank", path=path, row=r, line=line, column=met.get("column"))
        kind = cell(met["kind_column"]).strip() if met.get("kind_column") else met["kind"]
        if kind not in METHOD_KINDS:
            raise ParseError(f"method kind {kind!r} is not one of {METHOD_KINDS}", path=path, row=r, line=line, column=met.get("kind_column"))
        potential = cell(met["potential_column"]).strip() if met.get("potential_column") else met.get("potential")
        for entry in mapping.entries:
            raw = cell(entry.column)
            number = _parse_float(raw, path=path, row=r, line=line, column=entry.column)
            if number is None:
                report.missing += 1
                continue
            orientation = entry.orientation
            if entry.miller_column:
                if not cell(entry.miller_column).strip():
                    report.missing += 1
                    continue
                orientation = _parse_miller(cell(entry.miller_column), path=path, row=r, line=line, column=entry.miller_column)
            elif entry.normal_columns or entry.angle_columns:
                cols = entry.normal_columns or entry.angle_columns
                comps = [_parse_float(cell(c), path=path, row=r, line=line, column=c) for c in cols]  # type: ignore[union-attr]
                if any(c is None for c in comps):
                    report.missing += 1
                    continue
                try:
                    orientation = from_normal(comps) if entry.normal_columns else from_angles(*comps)  # type: ignore[arg-type]
                except OrientationError as exc:
                    raise ParseError(f"invalid orientation: {exc}", path=path, row=r, line=line, column=cols[0]) from exc  # type: ignore[index]
            uncertainty = None
            if entry.uncertainty_column:
                u = _parse_float(cell(entry.uncertainty_column), path=path, row=r, line=line, column=entry.uncertainty_column)
                uncertainty = None if u is None else abs(u * entry.factor)
            converted = number * entry.factor
            value = _Value(r, line, entry.column, entry, formula, prototype, method, kind, potential, raw.strip(), converted, uncertainty, orientation)
            report.values += 1
            key = (formula, prototype, method, entry.definition, orientation.key if orientation else None)
            if key in seen:
                first = seen[key]
                what = (
                    f"{entry.definition} of {formula} ({prototype}) by {method}"
                    f"{' on ' + orientation.label if orientation else ''} is already given in row {first.row}"
                )
                if mapping.on_duplicate == "error":
                    raise DuplicateRowError(f"duplicated row: {what}", path=path, row=r, line=line, column=entry.column)
                same = "same value" if first.value == converted else f"first value {first.value:.6g}"
                report.skipped.append(_issue(value, f"duplicate: {what} ({same}; on_duplicate: keep_first)"))
                report.duplicate_rows.add(r)
                continue
            seen[key] = value
            reason = check_value(entry.definition, converted, entry.canonical_unit)
            if uncertainty is not None and not math.isfinite(uncertainty):
                reason = reason or f"non-finite uncertainty: {uncertainty}"
            marked = [rule.flag for rule in mapping.row_flags if rule.applies(cell(rule.column), entry.definition)]
            if reason is None and marked:
                value.flag = "; ".join(marked)
                values.append(value)
                report.flagged.append(_issue(value, value.flag))
            elif reason is None:
                values.append(value)
            elif entry.on_invalid == "error":
                errors.append((value, reason))
            elif entry.on_invalid == "flag" and math.isfinite(converted) and (uncertainty is None or math.isfinite(uncertainty)):
                value.flag = reason
                values.append(value)
                report.flagged.append(_issue(value, reason))
            else:
                why = reason if entry.on_invalid == "skip" else f"{reason}; a non-finite value cannot be stored"
                report.skipped.append(_issue(value, why))
    if errors:
        v, reason = errors[0]
        more = f" (and {len(errors) - 1} more invalid values)" if len(errors) > 1 else ""
        raise InvalidValueError(
            f"{reason}; raw value {v.raw!r} (on_invalid: error){more}", path=path, row=v.row, line=v.line, column=v.column
        )
    report.rows = len(table.rows)
    report.materials = len({(v.formula, v.prototype) for v in values})
    report.methods = len({v.method for v in values})
    return values


# --- ingest ----------------------------------------------------------------------------------

def ingest_table(
    path: str | Path,
    mapping: str | Path | dict[str, Any] | Mapping,
    *,
    engine: Any,
    source: dict[str, Any] | None = None,
    job_kind: str = "ingest_table",
) -> TableReport:
    """Ingest one property table as one source, in one transaction.

    Parameters
    ----------
    path
        The table (CSV or whitespace text).
    mapping
        Mapping YAML path, dict or :class:`Mapping`.
    engine
        SQLAlchemy engine of the store.
    source
        Overrides of the mapping's source metadata (``uri``, ``url``, ``doi``, ``license``,
        ``commit``, ``description``, ``kind``), e.g. a dataset's pinned URL.
    job_kind
        ``job_run.kind`` to record.

    Returns
    -------
    TableReport
        Counts, and every flagged or skipped value with its row.  ``status`` is
        ``already stored`` (nothing added) when a source with the file's sha256 exists.

    Raises
    ------
    IngestError
        Any malformed input (see :func:`parse_values`); nothing is stored and the job run
        is recorded as failed.
    """
    from matstore import crud
    from matstore.db import session_scope

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = path.read_bytes()
    sha = sha256_bytes(data)
    parameters: dict[str, Any] = {"path": str(path), "sha256": sha}
    if isinstance(mapping, (str, Path)):
        parameters["mapping"] = str(mapping)
    with crud.job_run(engine=engine, kind=job_kind, parameters=parameters) as run:
        parsed = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
        report = TableReport(path=str(path), sha256=sha, mapping=parsed.path or parsed.name, job_run_id=run.id)
        with session_scope(engine) as session:
            if crud.find_source(session=session, sha256=sha) is not None:
                report.status = "already stored"
        if report.status == "inserted":
            table = read_table(path, parsed)
            values = parse_values(path, parsed, table, report)
            meta = {**parsed.source, **(source or {})}
            with session_scope(engine) as session:
                source_id = crud.claim_source(
                    session=session,
                    kind=meta.get("kind") or ("dataset" if any(meta.get(k) for k in ("doi", "commit", "url")) else "file"),
                    sha256=sha,
                    uri=meta.get("uri") or meta.get("url") or str(path.resolve()),
                    doi=meta.get("doi"),
                    license=meta.get("license"),
                    commit=meta.get("commit"),
                    description=meta.get("description") or f"table {path.name} ({parsed.name})",
                    details={
                        "file": path.name, "mapping": parsed.raw, "citation": meta.get("citation"),
                        "repository": meta.get("repository"), "path": meta.get("path"),
                    },
                )
                if source_id is None:
                    report.status = "already stored"
                else:
                    report.source_id = source_id
                    _store(session, values, report, source_id, run.id)
        if report.status == "already stored":
            run.status = "skipped"
        run.summary = _summary(report)
    return report


def _summary(report: TableReport) -> dict[str, Any]:
    out = report.to_dict()
    # Keep the job summary small: the full lists are in the report; the first 200 go here.
    for key in ("flagged", "skipped"):
        out[f"n_{key}"] = len(out[key])
        out[key] = out[key][:200]
    return out


def _store(session: Any, values: list[_Value], report: TableReport, source_id: int, job_run_id: int) -> None:
    from matstore import crud

    definition_ids = {name: d.id for name, d in crud.definitions(session=session).items()}
    materials: dict[tuple[str, str], int] = {}
    methods: dict[tuple[str, str], int] = {}
    surfaces: dict[tuple[int, str], int] = {}
    bulk: list[dict[str, Any]] = []
    surface_rows: list[dict[str, Any]] = []
    for v in values:
        mkey = (v.formula, v.prototype)
        if mkey not in materials:
            materials[mkey] = crud.get_or_create_material(session=session, formula=v.formula, prototype=v.prototype)
        tkey = (v.method, v.method_kind)
        if tkey not in methods:
            methods[tkey] = crud.get_or_create_method(session=session, name=v.method, kind=v.method_kind, potential=v.potential)
        row = {
            "method_id": methods[tkey],
            "definition_id": definition_ids[v.entry.definition],
            "value": v.value,
            "uncertainty": v.uncertainty,
            "flag": v.flag,
            "source_id": source_id,
            "job_run_id": job_run_id,
            "details": {"column": v.column, "row": v.row, "line": v.line, "raw": v.raw, "unit": v.entry.unit},
        }
        if v.orientation is None:
            bulk.append({"material_id": materials[mkey], **row})
        else:
            skey = (materials[mkey], v.orientation.key)
            if skey not in surfaces:
                surfaces[skey] = crud.get_or_create_surface(session=session, material_id=materials[mkey], orientation=v.orientation)
            surface_rows.append({"surface_id": surfaces[skey], **row})
    for a in range(0, len(bulk), _BATCH):
        report.bulk_inserted += crud.add_bulk_properties(session=session, rows=bulk[a:a + _BATCH])
    for a in range(0, len(surface_rows), _BATCH):
        report.surface_inserted += crud.add_surface_properties(session=session, rows=surface_rows[a:a + _BATCH])
    report.duplicates = len(values) - report.inserted


__all__ = [
    "ColumnEntry",
    "IngestError",
    "Mapping",
    "Table",
    "TableReport",
    "ingest_table",
    "load_mapping",
    "parse_values",
    "read_table",
]
