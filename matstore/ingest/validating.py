"""Validating a read table against its mapping: cells → converted, checked values with their rows.

Each non-blank cell of a mapped column becomes one :class:`Value` in the definition's
canonical unit (pint factor from the mapping), with its material (pymatgen-parsed formula),
method, orientation (surface values) or configuration key (keyed tables).  A value given
again with the same number, within the store's relative tolerance
:data:`~matstore.schema.properties.CONFLICT_RTOL` (per-material columns repeated on every
orientation row; two columns of one row mapped to one definition in two units, where the
digits each cell was written with also count: :func:`repeat_agrees`), is kept once, and a
row that only repeats values of earlier rows of its material is merged into them (counted in
``merged_rows``: a per-material column mapped alone from a per-facet table); a different
number is an error naming both rows (or both columns), as is a row whose every cell repeats
an earlier row's (a copy; ``on_duplicate: keep_first`` keeps the first instead and lists the
rest as skipped).  Invalid values follow ``on_invalid``; a count (:func:`~matstore.ingest.units.is_count`)
must be a whole number.

A clean table (nothing repeated, flagged or invalid; no row flags or per-row orientations)
is validated column by column: one float parse, one multiplication by the pint factor and one
vectorised bounds check per column.  Any other table is walked row by row, which finds the
first problem in row order; both give the same values and report.

A surface value of a material whose prototype is known not to be cubic is refused
(:meth:`_Validator.check_cubic`): matstore's orientations are cubic (:mod:`matstore.orientation`).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from matstore.composition import FormulaError, parse_formula
from matstore.ingest.errors import (
    DuplicateRowError,
    IngestError,
    InvalidValueError,
    MissingColumnError,
    NonCubicSurfaceError,
    ParseError,
    UnknownElementError,
)
from matstore.ingest.mapping import FRAME_TOLERANCE, ColumnEntry, Mapping, OrientationSpec
from matstore.ingest.reading import Table
from matstore.ingest.table_report import TableReport
from matstore.ingest.units import check_value, is_count, plausible
from matstore.names import unsafe_reason
from matstore.orientation import (
    CUBIC_ONLY,
    MillerBravaisError,
    Orientation,
    OrientationError,
    from_angles,
    from_miller,
    from_normal,
    from_normals,
    in_plane_frame,
    miller_indices,
    miller_integer,
    non_cubic_system,
)
from matstore.schema.properties import CONFLICT_RTOL
from matstore.schema.provenance import METHOD_KINDS


@dataclass(slots=True)
class Value:
    """One converted value of one cell, with everything needed to store it."""

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
    key: str | None = None
    composition: dict[str, float] = field(default_factory=dict)
    flag: str | None = None
    frame: Any = None  # tensor components: details.frame (a dict e1, e2, normal, or UNDECLARED_FRAME)
    given_normal: list[float] | None = None  # tensor components: the normal as the table gave it, not reduced
    frame_id: tuple | None = None  # tensor components: values of equal frame_id are in one frame


#: ``details.frame`` of a tensor component whose frame the mapping does not declare.
UNDECLARED_FRAME = "source (undeclared)"


def config_key(v: Value) -> str | None:
    """The configuration a value belongs to: its row's key for a configuration-scope value, else ``None``.

    A bulk column of a per-configuration table (a band gap repeated on every configuration
    row) is the material's, stored once per material and method.
    """
    return v.key if v.entry.scope == "configuration" else None


@dataclass(slots=True)
class _RowContext:
    row: int
    line: int
    cells: list[str]
    formula: str
    composition: dict[str, float]
    prototype: str
    method: str
    kind: str
    potential: str | None
    key: str | None
    new: int = 0
    repeats: list[tuple[Value, Value]] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    oriented: set[str] = field(default_factory=set)  # columns with a per-row orientation found by a target
    unoriented: list[ColumnEntry] = field(default_factory=list)  # targets with a value but blank orientation cells


def issue(v: Value, reason: str) -> dict[str, Any]:
    """The report entry of a flagged or skipped value."""
    return {
        "row": v.row, "line": v.line, "column": v.column, "definition": v.entry.definition,
        "material": v.formula, "method": v.method, "raw": v.raw,
        "value": v.value if math.isfinite(v.value) else str(v.value),
        "unit": v.entry.canonical_unit, "reason": reason,
        **({"orientation": v.orientation.label} if v.orientation is not None else {}),
        **({"given_normal": v.given_normal} if v.given_normal is not None else {}),
        **({"key": config_key(v)} if config_key(v) is not None else {}),
    }


class _Validator:
    """Walks the rows once; collects values, issues and counts into the report."""

    def __init__(self, path: Path, mapping: Mapping, table: Table, report: TableReport) -> None:
        self.path, self.mapping, self.table, self.report = path, mapping, table, report
        self.index = {name: k for k, name in enumerate(table.header)}
        self.values: list[Value] = []
        self.seen: dict[tuple, Value] = {}
        self.errors: list[tuple[Value, str]] = []
        self.copies: dict[int, tuple[int, int]] = {}  # hash of a row's cells, all of them → (row, line) of the first

    def where(self, ctx: _RowContext, column: str | None) -> dict[str, Any]:
        return {"path": self.path, "row": ctx.row, "line": ctx.line, "column": column}

    def run(self) -> list[Value]:
        clean = _clean_table_values(self)
        if clean is not None:
            return clean
        for r, (cells, line) in enumerate(zip(self.table.rows, self.table.lines, strict=True), start=1):
            ctx = self.row_context(r, line, cells)
            for entry in self.mapping.entries:
                self.cell(ctx, entry)
            self.check_oriented(ctx)
            self.finish_row(ctx)
        if self.errors:
            v, reason = self.errors[0]
            more = f" (and {len(self.errors) - 1} more invalid values)" if len(self.errors) > 1 else ""
            raise InvalidValueError(f"{reason}; raw value {v.raw!r} (on_invalid: error){more}",
                                    path=self.path, row=v.row, line=v.line, column=v.column)
        return self.values

    def row_context(self, r: int, line: int, cells: list[str]) -> _RowContext:
        spec = self.mapping.spec
        mat, met = spec.material, spec.method
        ctx = _RowContext(r, line, cells, "", {}, "", "", "", None, None)
        text = self.name_cell(ctx, mat.column, "the material (formula)") if mat.column else str(mat.formula)
        if not text.strip():
            raise ParseError("the material (formula) is blank", **self.where(ctx, mat.column))
        try:
            ctx.formula, ctx.composition = parse_formula(text)
        except FormulaError as exc:
            raise UnknownElementError(str(exc), **self.where(ctx, mat.column)) from None
        ctx.prototype = (self.name_cell(ctx, mat.prototype_column, "the prototype").strip() if mat.prototype_column
                         else mat.prototype) or "unknown"
        ctx.method = self.name_cell(ctx, met.column, "the method name").strip() if met.column else str(met.name)
        if not ctx.method:
            raise ParseError("the method is blank", **self.where(ctx, met.column))
        ctx.kind = self.name_cell(ctx, met.kind_column, "the method kind").strip() if met.kind_column else met.kind
        if ctx.kind not in METHOD_KINDS:
            raise ParseError(f"method kind {ctx.kind!r} is not one of {METHOD_KINDS}", **self.where(ctx, met.kind_column))
        ctx.potential = (self.name_cell(ctx, met.potential_column, "the potential").strip() if met.potential_column
                         else met.potential)
        if spec.key is not None:
            key = self.name_cell(ctx, spec.key.column, "the configuration key").strip()
            if not key:
                raise ParseError("the configuration key is blank", **self.where(ctx, spec.key.column))
            ctx.key = spec.key.prefix + key
        return ctx

    def name_cell(self, ctx: _RowContext, column: str, what: str) -> str:
        """The cell of ``column`` in the row: a name or key, stored as it is.

        Raises
        ------
        ParseError
            The cell holds a control character or a bidirectional override
            (:mod:`matstore.names`): ``t.csv, row 2, line 3, column 'model': the method
            name 'PBE\\x1b[8m' contains the control character U+001B (ESC)``.
        """
        text = ctx.cells[self.index[column]]
        reason = unsafe_reason(text.strip(), what)
        if reason is not None:
            raise ParseError(reason, **self.where(ctx, column))
        return text

    def number(self, ctx: _RowContext, column: str) -> float | None:
        text = ctx.cells[self.index[column]].strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise ParseError(f"unparsable number {text[:40]!r}", **self.where(ctx, column)) from None

    def orientation(self, ctx: _RowContext, spec: OrientationSpec) -> tuple[Orientation, list[float]] | None:
        """The row's orientation from ``spec``'s columns and the normal as given (Miller indices as
        written, a normal's components, or the unit normal of angles), shape (3,); ``None`` when a
        cell is blank."""
        if spec.miller_column:
            text = ctx.cells[self.index[spec.miller_column]]
            if not text.strip():
                return None
            try:
                given = miller_indices(text)
                return from_miller(*given), [float(i) for i in given]
            except MillerBravaisError as exc:
                raise ParseError(str(exc), **self.where(ctx, spec.miller_column)) from None
            except (ValueError, OrientationError) as exc:
                raise ParseError(f"not a Miller index: {exc}", **self.where(ctx, spec.miller_column)) from None
        if spec.miller_columns:
            return self.miller_from_columns(ctx, spec.miller_columns)
        columns = spec.normal_columns or spec.angle_columns or ()
        comps = [self.number(ctx, c) for c in columns]
        if any(c is None for c in comps):
            return None
        tol_deg = spec.miller_tolerance_deg
        try:
            if spec.normal_columns:
                return from_normal(comps, tol_deg=tol_deg), comps  # type: ignore[arg-type,return-value]
            if spec.convention == "spherical":
                normal = spherical_normal(*comps, unit=spec.angle_unit)  # type: ignore[arg-type]
                return from_normal(normal, tol_deg=tol_deg), list(normal)
            theta, phi = (math.degrees(a) for a in comps) if spec.angle_unit == "rad" else comps  # type: ignore[misc]
            found = from_angles(theta, phi, tol_deg=tol_deg)  # type: ignore[arg-type]
            return found, list(found.normal)
        except OrientationError as exc:
            raise ParseError(f"invalid orientation: {exc}", **self.where(ctx, columns[0])) from None

    def miller_from_columns(self, ctx: _RowContext, columns: tuple[str, str, str]) -> tuple[Orientation, list[float]] | None:
        """(h k l) from three columns (``miller_columns``) and the indices as written; ``None`` when one is blank."""
        texts = [ctx.cells[self.index[c]].strip() for c in columns]
        if not all(texts):
            return None
        ints = []
        for column, text in zip(columns, texts, strict=True):
            try:
                ints.append(miller_integer(text))
            except ValueError as exc:
                raise ParseError(f"not a Miller index: {exc}", **self.where(ctx, column)) from None
        try:
            return from_miller(*ints), [float(i) for i in ints]
        except OrientationError as exc:
            raise ParseError(f"not a Miller index: {exc}", **self.where(ctx, columns[0])) from None

    def frame(self, ctx: _RowContext, entry: ColumnEntry, orientation: Orientation,
              given: list[float]) -> tuple[Any, tuple]:
        """``details.frame`` of a tensor component in this row and its identity (equal: the same frame).

        Undeclared: :data:`UNDECLARED_FRAME`, identified by the given normal's direction (a
        source is taken to frame one written normal one way).  ``matstore``: the frame (e1, e2,
        n) of :func:`~matstore.orientation.in_plane_frame` of the reduced index, one per
        surface.  Declared e1 (columns or numbers, crystal axes): e1 made orthogonal to the given
        normal n and normalised, e2 = n × e1; identified by (e1, n).

        Raises
        ------
        ParseError
            ``matstore`` on an irrational orientation; a blank or unparsable e1 cell; e1 further
            than :data:`~matstore.ingest.mapping.FRAME_TOLERANCE` (|cos|) from the plane, or zero.
        """
        n = np.asarray(given, dtype=float) / np.linalg.norm(given)
        spec = entry.orientation_columns
        column = spec.columns()[0] if spec is not None else entry.column
        if entry.frame is None:
            return UNDECLARED_FRAME, ("source", *np.round(n, 6).tolist())
        if entry.frame == "matstore":
            if orientation.miller is None:
                raise ParseError(f"frame: matstore needs a Miller plane, and {orientation.label} is irrational; "
                                 "give e1 instead (frame: [e1x, e1y, e1z])", **self.where(ctx, column))
            return _matstore_frame(orientation.miller), ("matstore",)
        names = spec.frame_columns() if spec is not None else ()
        e1 = [self.number(ctx, c) for c in names] if names else list(entry.frame)
        if any(c is None for c in e1):
            blank = next(c for c, x in zip(names, e1, strict=True) if x is None)
            raise ParseError(f"{entry.column} is a tensor component and its frame column {blank!r} is blank", **self.where(ctx, blank))
        e1 = np.asarray(e1, dtype=float)
        norm = float(np.linalg.norm(e1))
        cosine = abs(float(e1 @ n)) / norm if norm > 0 else math.inf
        if not cosine <= FRAME_TOLERANCE:
            raise ParseError(f"frame e1 {e1.tolist()} is not in the surface plane of the normal {given} "
                             f"(|cos| = {cosine:.3g} > {FRAME_TOLERANCE:g})", **self.where(ctx, names[0] if names else column))
        e1 = e1 - (e1 @ n) * n
        e1 /= np.linalg.norm(e1)
        return _frame_dict(e1, np.cross(n, e1), n, "mapping"), ("e1", *np.round(e1, 6).tolist(), *np.round(n, 6).tolist())

    def cell(self, ctx: _RowContext, entry: ColumnEntry) -> None:
        number = self.number(ctx, entry.column)
        orientation, given = entry.orientation, entry.given_normal
        if number is not None and entry.scope == "surface":
            self.check_cubic(ctx, entry)
        if number is not None and entry.orientation_columns is not None:
            found = self.orientation(ctx, entry.orientation_columns)
            if found is None:
                ctx.unoriented.append(entry)
                return
            orientation, given = found
            ctx.oriented.add(entry.column)
        if number is None:
            self.report.missing += 1
            ctx.issues.append(f"{entry.column}: blank")
            return
        uncertainty = None
        if entry.uncertainty_column:
            u = self.number(ctx, entry.uncertainty_column)
            uncertainty = None if u is None else abs(to_canonical(u, entry.factor))
        value = Value(ctx.row, ctx.line, entry.column, entry, ctx.formula, ctx.prototype, ctx.method, ctx.kind,
                      ctx.potential, ctx.cells[self.index[entry.column]].strip(), to_canonical(number, entry.factor),
                      uncertainty, orientation, ctx.key, ctx.composition)
        if is_count(entry.definition, entry.canonical_unit):
            self.check_count(ctx, value)
        if entry.component and orientation is not None and given is not None:
            value.given_normal = list(given)
            value.frame, value.frame_id = self.frame(ctx, entry, orientation, list(given))
        identity = (ctx.formula, ctx.prototype, ctx.method, config_key(value), entry.definition,
                    orientation.key if orientation else None)
        first = self.seen.get(identity)
        if first is not None and first.frame_id != value.frame_id:
            self.other_frame(ctx, value, first)
            return
        if first is not None:
            ctx.repeats.append((value, first))
            return
        self.seen[identity] = value
        ctx.new += 1
        self.report.values += 1
        self.check(ctx, value)

    def check_count(self, ctx: _RowContext, value: Value) -> None:
        """Refuse a count (:func:`~matstore.ingest.units.is_count`) that is not a whole number ≥ 0.

        Whole within the digits the cell was written with (:func:`whole_count`): ``3``, ``3.0``,
        ``3e0`` are 3 (stored as exactly 3.0); ``3.5`` and ``3.0000001`` are not.  Refused whatever
        ``on_invalid`` says, as an unparsable number is.

        Raises
        ------
        ParseError
            Naming the file, row, line and column, the definition and the cell as written.
        """
        reason = whole_count(value.value, value.raw)
        if reason is not None:
            raise ParseError(f"{value.entry.definition} is a count (a whole number ≥ 0) but {value.raw!r} {reason}",
                             **self.where(ctx, value.column))
        if math.isfinite(value.value):
            value.value = float(round(value.value))

    def check_cubic(self, ctx: _RowContext, entry: ColumnEntry) -> None:
        """Refuse a surface value of a material whose prototype is known not to be cubic.

        matstore's orientations are those of cubic crystals (:func:`~matstore.orientation.from_miller`
        reduces by m-3m): hcp Mg (0,0,1) would be stored as (1,0,0), and (0,0,1) and (1,0,0) as one
        surface.  A prototype that names no known structure (``unknown``, free text) is assumed cubic
        (:func:`~matstore.orientation.non_cubic_system`); bulk values of any material are accepted.

        Raises
        ------
        NonCubicSurfaceError
            Naming the row, line, value column, material, prototype and its crystal system.
        """
        system = non_cubic_system(ctx.prototype)
        if system is not None:
            raise NonCubicSurfaceError(
                f"{ctx.formula} (prototype {ctx.prototype}) has a surface value of {entry.definition}: {CUBIC_ONLY}; "
                f"{ctx.prototype} is not cubic ({system}): store its bulk values, not its surfaces",
                **self.where(ctx, entry.column))

    def other_frame(self, ctx: _RowContext, value: Value, first: Value) -> None:
        """Skip (and report) a tensor component of a surface given earlier in another frame.

        Components in two frames are not compared (they differ by the rotation between the
        frames), and one source holds one value per surface, method and definition: the first
        row's is stored, with its frame.
        """
        why = (f"another frame: {describe(value)} is given in row {first.row} (normal {_vector(first.given_normal)}) and "
               f"here (normal {_vector(value.given_normal)}), frames {_frame_label(first)} and {_frame_label(value)}; "
               f"components in different frames are not compared; row {first.row}'s is stored (one value per surface, "
               "method and source)")
        self.report.skipped.append(issue(value, why))
        self.report.values += 1
        ctx.issues.append(f"{value.column}: {why}")

    def check_oriented(self, ctx: _RowContext) -> None:
        """Refuse a surface value that no target of its column could orient in this row.

        A column may have several targets, each reading the rows where its orientation
        columns are filled (long tables mixing Miller indices, normals and angles); a value
        none of them can place is an error, never dropped silently.

        Raises
        ------
        ParseError
            Naming the row, line, the first blank orientation column, and all of them.
        """
        missing = [e for e in ctx.unoriented if e.column not in ctx.oriented]
        if not missing:
            return
        column = missing[0].column
        blanks = [", ".join(c for c in e.orientation_columns.columns() if not ctx.cells[self.index[c]].strip())  # type: ignore[union-attr]
                  for e in missing if e.column == column]
        raw = ctx.cells[self.index[column]].strip()
        raise ParseError(f"{column} has a value ({raw}) but its orientation ({'; or '.join(blanks)}) is blank",
                         **self.where(ctx, blanks[0].split(", ")[0]))

    def check(self, ctx: _RowContext, value: Value) -> None:
        entry = value.entry
        reason = check_value(entry.definition, value.value, entry.canonical_unit)
        if value.uncertainty is not None and not math.isfinite(value.uncertainty):
            reason = reason or f"non-finite uncertainty: {value.uncertainty}"
        marked = [rule.flag for rule in self.mapping.spec.row_flags
                  if rule.applies(ctx.cells[self.index[rule.column]], entry.definition)]
        if reason is None:
            value.flag = "; ".join(marked) or None
            self.values.append(value)
            if marked:
                self.report.flagged.append(issue(value, value.flag))  # type: ignore[arg-type]
        elif entry.on_invalid == "error":
            self.errors.append((value, reason))
        elif entry.on_invalid == "flag" and math.isfinite(value.value) and (value.uncertainty is None or math.isfinite(value.uncertainty)):
            value.flag = reason
            self.values.append(value)
            self.report.flagged.append(issue(value, reason))
        else:
            why = reason if entry.on_invalid == "skip" else f"{reason}; a non-finite value cannot be stored"
            self.report.skipped.append(issue(value, why))
            ctx.issues.append(f"{value.column}: {why}")
            ctx.new -= 1

    def finish_row(self, ctx: _RowContext) -> None:
        """Settle the row's repeated values: refuse a conflict or a copied row, count or skip the repeats.

        A row whose values all repeat, within :func:`repeat_agrees`, per-material values of earlier
        rows (a per-material column mapped alone from a per-orientation table: Crystalium's
        ``lattice_constant`` on every facet row) is merged into them: counted in ``merged_rows``,
        not a dropped row (a row repeating only surface or configuration values, e.g. (-1,1,0)
        after (1,1,0), stays a dropped row).  A row whose cells, every one, mapped or not, repeat
        an earlier row's is a copy (a copy-paste slip), refused naming that row unless
        ``on_duplicate: keep_first``.

        Raises
        ------
        DuplicateRowError
            A repeated value that disagrees (naming both rows and numbers, or both columns),
            or a copied row; never under ``keep_first``.
        """
        keep_first = self.mapping.spec.on_duplicate == "keep_first"
        conflicts = [(v, f) for v, f in ctx.repeats if not repeat_agrees(v, f)]
        first_row = self.copy_of(ctx)
        if not keep_first and conflicts:
            value, first = conflicts[0]
            raise DuplicateRowError(duplicate_message(value, first), **self.where(ctx, value.column))
        if not keep_first and first_row is not None:
            value = ctx.repeats[0][0] if ctx.repeats else None
            given = f"{describe(value)} is already given in" if value is not None else "every cell repeats"
            message = (f"duplicated row: {given} row {first_row[0]} (line {first_row[1]}) and this row repeats it "
                       "entirely; set `on_duplicate: keep_first` to keep the first")
            raise DuplicateRowError(message, **self.where(ctx, value.column if value is not None else None))
        skipped = 0
        for value, first in ctx.repeats:
            if keep_first and not (first.row == value.row and repeat_agrees(value, first)):
                self.skip_repeat(ctx, value, first)
                skipped += 1
            else:
                self.report.repeated += 1
        per_material = all(v.orientation is None and config_key(v) is None for v, _ in ctx.repeats)
        if ctx.new <= 0 and ctx.repeats and per_material and not ctx.issues and not skipped:
            self.report.merged_rows += 1
        elif ctx.new <= 0:
            reasons = ctx.issues + [f"{v.column}: repeats row {f.row}" for v, f in ctx.repeats]
            self.report.dropped_rows.append({"row": ctx.row, "line": ctx.line, "material": ctx.formula, "method": ctx.method,
                                             **({"key": ctx.key} if ctx.key else {}), "reasons": reasons})

    def copy_of(self, ctx: _RowContext) -> tuple[int, int] | None:
        """(row, line) of the first earlier row whose every cell (stripped) is this row's, or ``None``.

        Rows are kept by the hash of their cells (one int per row, not the cells of a wide table);
        a hash equal to an earlier row's is checked against that row's cells.
        """
        cells = [c.strip() for c in ctx.cells]
        first = self.copies.setdefault(hash(tuple(cells)), (ctx.row, ctx.line))
        if first[0] == ctx.row or [c.strip() for c in self.table.rows[first[0] - 1]] != cells:
            return None
        return first

    def skip_repeat(self, ctx: _RowContext, value: Value, first: Value) -> None:
        """List a value given again (``on_duplicate: keep_first``) as skipped; the first is kept.

        A later row's repeat marks its row in ``duplicate_rows``; another column of the same row
        does not (the row itself is not a repeat).
        """
        if value.value == first.value:
            same = "same value"
        elif repeat_agrees(value, first):
            same = (f"same value within relative {CONFLICT_RTOL:g}" if values_agree(value.value, first.value)
                    else "same value within the digits written")
        else:
            same = f"first value {distinct_numbers(first.value, value.value)[0]}"
        where = f"row {first.row}" if first.row != value.row else f"column {first.column!r} of the same row"
        self.report.skipped.append(issue(value, f"duplicate: {describe(value)} is already given in {where} ({same}; "
                                                "on_duplicate: keep_first)"))
        if first.row != value.row:
            self.report.duplicate_rows.add(ctx.row)
        self.report.values += 1


def values_agree(a: float, b: float) -> bool:
    """True when two values of one property are one value: ``|a − b| ≤ CONFLICT_RTOL · max(|a|, |b|)``.

    The store's tolerance (:data:`matstore.schema.properties.CONFLICT_RTOL` = 1e-6, the one
    :func:`matstore.ingest.storing.check_conflicts` applies across sources), applied within a
    file too: the same number published in two units (1.3 J/m² and 0.0811396 eV/Å², rounded to
    6 digits: 2.2e-7 relative apart) is one value.  Rounding to 6 digits can move a value by up
    to 5e-6: two columns of one row are also compared within the digits written
    (:func:`repeat_agrees`).
    Equal values (±inf included) agree; NaN agrees with nothing.
    """
    return a == b or abs(a - b) <= CONFLICT_RTOL * max(abs(a), abs(b))


def written_precision(raw: str) -> float:
    """Relative half-unit of the last digit of a number as written: ``'0.201601'`` → 5e-7 / 0.201601 = 2.5e-6.

    0 for text that is no plain decimal number (``Decimal`` cannot read it), zero or not finite.
    """
    try:
        number = Decimal(str(raw).strip())
    except InvalidOperation:
        return 0.0
    if not number.is_finite() or number == 0:
        return 0.0
    return float(Decimal(5).scaleb(number.as_tuple().exponent - 1) / abs(number))


def repeat_agrees(value: Value, first: Value) -> bool:
    """Whether a value given again is the first one: :func:`values_agree`, or, for two columns of
    one row (one quantity in two units), within the digits each cell was written with.

    A published eV/Å² column rounded to 6 digits sits up to 5e-6 from its J/m² twin (3.23 J/m²
    and 0.201601 eV/Å²: 1.3e-6), beyond the store's 1e-6; each cell's own last digit
    (:func:`written_precision`, relative, so unit factors do not matter) bounds what rounding
    can explain: ``|a − b| ≤ p_a·|a| + p_b·|b|``.  Values of different rows keep the store's
    tolerance: there a repeated per-material column must repeat its number.
    """
    if values_agree(value.value, first.value):
        return True
    if value.row != first.row:
        return False
    slack = written_precision(value.raw) * abs(value.value) + written_precision(first.raw) * abs(first.value)
    return abs(value.value - first.value) <= slack


def whole_count(value: float, raw: str) -> str | None:
    """Why ``value`` (a count in its canonical unit, written ``raw``) is not a whole number ≥ 0, or ``None``.

    Whole: ``|v − round(v)| ≤ p·|v| + 4·ε·|v|``, ``p`` the relative half-unit of the cell's last
    written digit (:func:`written_precision`; a derived column's cell is the ``repr`` of its float)
    and ε the float64 machine epsilon (2.2e-16: a unit factor's or an expression's rounding).  So
    ``3``, ``3.0``, ``3e0`` and ``300 percent`` are 3; ``3.5`` is not, nor is ``3.0000001``,
    1e-7 from 3 where its digits allow 5e-8.
    """
    if not math.isfinite(value):
        return None  # non-finite: on_invalid decides (check_value)
    nearest = round(value)
    slack = (written_precision(raw) + 4 * np.finfo(float).eps) * abs(value)
    if abs(value - nearest) > slack:
        return f"is not a whole number ({abs(value - nearest):.3g} from {nearest}, beyond the digits written)"
    if nearest < 0:
        return "is negative"
    return None


def distinct_numbers(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` printed so that different numbers read differently: ``%.6g``, else ``%.15g``, else ``%.17g``.

    ``%.17g`` shows every float64 exactly (IEEE 754-2008, 17 significant digits round-trip).
    """
    for digits in (6, 15, 17):
        here, there = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if here != there:
            break
    return here, there


@dataclass(slots=True)
class _Column:
    """One mapped column of a clean table: stripped cells, converted values and uncertainties, (n_rows,) each."""

    entry: ColumnEntry
    raw: list[str]
    values: list[float]
    uncertainties: list[float | None]


def _clean_table_values(validator: _Validator) -> list[Value] | None:
    """The values of a clean table, found column by column; ``None`` when the row-by-row walk must decide.

    A table is clean when no mapping feature needs a per-cell decision (row flags, orientations
    read from the row, surface columns without an orientation), every row names a distinct
    (material, method, configuration) (so no row repeats another), every cell is blank or a
    number and every value and uncertainty passes :func:`check_value`.  Then nothing repeats,
    nothing is flagged or skipped, and the values, counts and dropped rows are exactly those of
    the row-by-row walk, in its order (row by row, mapping entries in order).  Any other table
    (and any error) goes through the row-by-row walk, which finds the first problem.
    """
    mapping, table = validator.mapping, validator.table
    entries = mapping.entries
    if mapping.spec.row_flags or any(e.orientation_columns is not None or (e.scope == "surface" and e.orientation is None)
                                     or e.component or (mapping.keyed and e.scope != "configuration") for e in entries):
        return None  # per-row orientations and frames, and per-material columns of keyed tables, are decided per cell
    targets = {(e.definition, e.orientation.key if e.orientation else None) for e in entries}
    try:
        contexts = [validator.row_context(r, line, cells)
                    for r, (cells, line) in enumerate(zip(table.rows, table.lines, strict=True), start=1)]
    except IngestError:
        return None
    entities = {(c.formula, c.prototype, c.method, c.key) for c in contexts}  # distinct: no row repeats another
    if len(targets) != len(entries) or len(entities) != len(contexts):
        return None
    if any(e.scope == "surface" for e in entries) and any(non_cubic_system(c.prototype) for c in contexts):
        return None  # the row walk refuses the first surface value of a non-cubic material
    columns = [_clean_column(validator, e) for e in entries]
    if any(c is None for c in columns):
        return None
    return _emit_values(validator.report, contexts, columns)  # type: ignore[arg-type]


def _numbers(cells: list[str]) -> np.ndarray | None:
    """Floats of stripped ``cells`` (blank → NaN), shape (n,); ``None`` if a cell is not a number."""
    try:
        return np.array([float(t) if t else math.nan for t in cells], dtype=float)
    except ValueError:
        return None


#: Significant digits a converted value keeps (:func:`to_canonical`).
CONVERTED_DIGITS = 15
#: 10^0 … 10^22, the powers of ten that a float64 holds exactly.
_POWERS_OF_TEN = 10.0 ** np.arange(23)


def to_canonical(numbers: np.ndarray | float, factor: float) -> np.ndarray | float:
    """``numbers × factor`` (cells in the mapping's unit → the definition's canonical unit), rounded
    to :data:`CONVERTED_DIGITS` = 15 significant digits.

    The product of two decimals carries binary representation noise (830 mJ/m² × 0.001 is
    ``0.8300000000000001`` J/m², 2280 × 0.001 is ``2.2800000000000002``); each product is
    rounded as ``float(f"{v:.15g}")`` does (0.83, 2.28).  The change is at most half a unit
    in the 15th digit (5e-15 relative, plus the float's own rounding of the result), far
    below any tolerance of the store (:data:`matstore.schema.properties.CONFLICT_RTOL` =
    1e-6) and below the 15.95 decimal digits a float64 holds, so no information a table can
    give is lost.  A factor of exactly 1 returns ``numbers`` unchanged (no product, no
    rounding).  NaN (blank cells) and ±inf stay as they are.

    Vectorised: ``N = rint(v · 10^d)`` with ``d = 14 − floor(log10|v|)`` (exact powers of ten,
    |d| ≤ 22), then ``N / 10^d``, which is correctly rounded and so equal to the formatted
    value.  The few elements where that could differ from it are formatted one by one: the
    scaled value within 0.07 of a half (its one rounding, at most 0.0625 below 2^50, could
    flip ``rint``), ``N`` not of 15 digits (``log10`` off by one), zeros and |d| > 22.

    Parameters
    ----------
    numbers:
        A float or an array (any shape) of parsed cells.
    factor:
        The pint conversion factor of the column (:func:`matstore.ingest.units.conversion_factor`).

    Returns
    -------
    float or numpy.ndarray
        Same shape as ``numbers``, in the canonical unit.
    """
    if factor == 1.0:
        return numbers
    if np.ndim(numbers) == 0:
        return float(f"{float(numbers) * factor:.{CONVERTED_DIGITS}g}")
    v = np.asarray(numbers, dtype=float) * factor
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        finite = np.isfinite(v) & (v != 0)
        d = np.where(finite, CONVERTED_DIGITS - 1 - np.floor(np.log10(np.where(finite, np.abs(v), 1.0))), 0)
        d = d.astype(np.int64)
        up = d >= 0
        scale = _POWERS_OF_TEN[np.minimum(np.abs(d), 22)]
        scaled = np.where(up, v * scale, v / scale)
        n = np.rint(scaled)
        fast = finite & (np.abs(d) <= 22) & (np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) > 0.07) \
            & (np.abs(n) >= 10.0 ** (CONVERTED_DIGITS - 1)) & (np.abs(n) < 10.0 ** CONVERTED_DIGITS)
        out = np.where(fast, np.where(up, n / scale, n * scale), v)
    slow = ~fast & np.isfinite(v)
    if slow.any():
        out[slow] = [float(f"{x:.{CONVERTED_DIGITS}g}") for x in out[slow].tolist()]
    return out


def _clean_column(validator: _Validator, entry: ColumnEntry) -> _Column | None:
    """Column ``entry`` converted with one multiplication and checked with :func:`plausible`; ``None`` if not clean."""
    rows = validator.table.rows
    k = validator.index[entry.column]
    raw = [cells[k].strip() for cells in rows]
    numbers = _numbers(raw)
    if numbers is None:
        return None
    given = np.array([bool(t) for t in raw], dtype=bool)
    values = to_canonical(numbers, entry.factor)
    if not plausible(entry.definition, values[given]).all():
        return None
    if is_count(entry.definition, entry.canonical_unit) and not ((values[given] == np.round(values[given])) & (values[given] >= 0)).all():
        return None  # the row walk decides, within the digits written (whole_count)
    uncertainties: list[float | None] = [None] * len(raw)
    if entry.uncertainty_column:
        u_raw = [cells[validator.index[entry.uncertainty_column]].strip() for cells in rows]
        u = _numbers(u_raw)
        if u is None:
            return None
        u = np.abs(to_canonical(u, entry.factor))
        u_given = np.array([bool(t) for t in u_raw], dtype=bool)
        if not np.isfinite(u[given & u_given]).all():
            return None
        uncertainties = [x if g else None for x, g in zip(u.tolist(), u_given.tolist(), strict=True)]
    return _Column(entry, raw, values.tolist(), uncertainties)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector while building many objects that hold no cycles.

    Every 700 new container objects start a collection, and every few of those a full one
    that walks the whole heap, so building 10^5–10^6 values costs 2–4× with the collector on
    (CPython's generational GC, thresholds (700, 10, 10)).  Reference counting still frees
    everything; the collector resumes afterwards if it was on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _emit_values(report: TableReport, contexts: list[_RowContext], columns: list[_Column]) -> list[Value]:
    """The :class:`Value` of every non-blank cell, row by row; blank cells and all-blank rows into ``report``."""
    out: list[Value] = []
    for i, ctx in enumerate(contexts):
        blanks = []
        for c in columns:
            raw = c.raw[i]
            if not raw:
                blanks.append(f"{c.entry.column}: blank")
                continue
            out.append(Value(ctx.row, ctx.line, c.entry.column, c.entry, ctx.formula, ctx.prototype, ctx.method, ctx.kind,
                             ctx.potential, raw, c.values[i], c.uncertainties[i], c.entry.orientation, ctx.key,
                             ctx.composition))
        if blanks:
            report.missing += len(blanks)
            if len(blanks) == len(columns):
                report.dropped_rows.append({"row": ctx.row, "line": ctx.line, "material": ctx.formula, "method": ctx.method,
                                            **({"key": ctx.key} if ctx.key else {}), "reasons": blanks})
    report.values += len(out)
    return out


def describe(value: Value) -> str:
    """"c44 of Cu (fcc) by EAM_A on (1,1,1) [configuration k]" for messages."""
    on = f" on {value.orientation.label}" if value.orientation else ""
    key = f" in configuration {config_key(value)!r}" if config_key(value) is not None else ""
    return f"{value.entry.definition} of {value.formula} ({value.prototype}) by {value.method}{on}{key}"


@lru_cache(maxsize=1024)
def _matstore_frame(miller: tuple[int, int, int]) -> dict[str, Any]:
    """``details.frame`` of matstore's in-plane frame of a reduced index (shared: never mutated)."""
    return _frame_dict(*in_plane_frame(miller), "matstore")


def _frame_dict(e1: np.ndarray, e2: np.ndarray, normal: np.ndarray, declared: str) -> dict[str, Any]:
    """``details.frame`` of a declared frame: e1, e2, normal (each (3,), crystal axes) and who declared it."""
    return {"e1": e1.tolist(), "e2": e2.tolist(), "normal": normal.tolist(), "declared": declared}


def _vector(v: list[float] | None) -> str:
    return "(" + ",".join(f"{c:g}" for c in v) + ")" if v is not None else "?"


def _frame_label(v: Value) -> str:
    return v.frame if isinstance(v.frame, str) else f"e1 {_vector([round(c, 4) for c in v.frame['e1']])}"


def frame_notes(values: list[Value], other_frames: int) -> list[str]:
    """Notes on tensor components stored in a frame the mapping does not declare, and on those given in two frames."""
    undeclared: dict[str, int] = {}
    for v in values:
        if v.frame == UNDECLARED_FRAME:
            undeclared[v.entry.definition] = undeclared.get(v.entry.definition, 0) + 1
    notes = []
    if undeclared:
        listed = ", ".join(f"{n} {d}" for d, n in undeclared.items())
        notes.append(f"tensor components stored in the source's undeclared in-plane frame ({listed}): details.frame = "
                     f"'{UNDECLARED_FRAME}', details.given_normal = the table's normal; they are compared with no other "
                     "frame's values. Declare it with orientation.frame: matstore (matstore's in_plane_frame of the reduced "
                     "index) or frame: [e1x, e1y, e1z] (e1 in crystal axes)")
    if other_frames:
        notes.append(f"{_plural(other_frames, 'tensor component')} given again in another frame of the same surface "
                     "were not stored (listed in skipped); the first row's frame is stored")
    return notes


def duplicate_message(value: Value, first: Value) -> str:
    """One-line message for a conflicting value, naming both rows (or both columns of one row) and both numbers.

    The two numbers are printed with enough digits to differ (:func:`distinct_numbers`).
    """
    here, there = distinct_numbers(value.value, first.value)
    if first.row == value.row:
        return (f"conflicting values: {describe(value)} is {here} in column {value.column!r} but {there} in column "
                f"{first.column!r} of the same row (apart by more than their written digits and relative {CONFLICT_RTOL:g}); "
                "fix the table or the "
                "mapping (map one of the two if one is the other converted and rounded), or set "
                f"`on_duplicate: keep_first` to keep column {first.column!r}'s")
    column = f", column {first.column!r}" if first.column != value.column else ""
    return (f"conflicting values: {describe(value)} is {here} here but {there} in row {first.row} (line {first.line})"
            f"{column}; fix the table, or set `on_duplicate: keep_first` to keep row {first.row}'s")


def spherical_normal(theta: float, phi: float, *, unit: str = "deg") -> tuple[float, float, float]:
    """Unit normal n = (sin θ cos φ, sin θ sin φ, cos θ) from its polar angle θ (from z) and azimuth φ (from x).

    The physics convention for spherical coordinates (ISO 80000-2:2019, item 2-16.3).
    """
    t, p = (math.radians(theta), math.radians(phi)) if unit == "deg" else (theta, phi)
    return (math.sin(t) * math.cos(p), math.sin(t) * math.sin(p), math.cos(t))


def near_miller_notes(values: list[Value], *, max_index: int = 3, within_deg: float = 0.1) -> list[str]:
    """Notes on stored irrational orientations that lie within ``within_deg`` of a plane with indices ≤ ``max_index``.

    Published angles and normals are often rounded (θ = 54.7° for (1,1,1)); such a value is
    stored as an irrational orientation, apart from the exact plane, unless the mapping sets
    ``orientation.miller_tolerance_deg``.  One note per plane, most orientations first, e.g.
    "24 values at 12 orientations within 0.036° of (1,1,1) were not stored as (1,1,1); set ...".
    """
    irrational: dict[str, tuple[Orientation, int]] = {}  # key → (orientation, values stored at it)
    for v in values:
        if v.orientation is not None and v.orientation.miller is None:
            o, n = irrational.get(v.orientation.key, (v.orientation, 0))
            irrational[v.orientation.key] = (o, n + 1)
    if not irrational:
        return []
    normals = np.array([o.normal for o, _ in irrational.values()])
    near = from_normals(normals, max_miller=max_index, tol_deg=within_deg)
    found: dict[tuple[int, int, int], list[tuple[float, int]]] = {}  # plane → (angle °, values) per orientation
    for normal, (_, count), plane in zip(normals, irrational.values(), near, strict=True):
        if plane.miller is not None:
            chord = float(np.linalg.norm(normal - np.asarray(plane.normal)))
            found.setdefault(plane.miller, []).append((math.degrees(2 * math.asin(min(1.0, chord / 2))), count))
    notes = []
    for miller, near_it in sorted(found.items(), key=lambda item: (-len(item[1]), item[0])):
        label = "(" + ",".join(str(i) for i in miller) + ")"
        n_values = sum(c for _, c in near_it)
        notes.append(f"{_plural(n_values, 'value')} at {_plural(len(near_it), 'orientation')} within "
                     f"{max(a for a, _ in near_it):.2g}° of {label} {'was' if n_values == 1 else 'were'} not stored as {label}; "
                     f"set orientation.miller_tolerance_deg: {within_deg:g} in the mapping to snap them")
    return notes


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def parse_values(path: str | Path, mapping: Mapping, table: Table, report: TableReport) -> list[Value]:
    """Turn table cells into converted, validated values; fill ``report`` counts and issues.

    Raises
    ------
    MissingColumnError, ParseError, UnknownElementError, DuplicateRowError, InvalidValueError
        Naming the file, row, line and column.
    """
    path = Path(path)
    for column in mapping.columns_used():
        if column not in table.header:
            shown = ", ".join(table.header[:12]) + (" ..." if len(table.header) > 12 else "")
            raise MissingColumnError(f"column {column!r} named by the mapping is not in the table (columns: {shown})",
                                     path=path, line=table.header_line)
    with paused_gc():  # one Value per cell, none in a cycle
        values = _Validator(path, mapping, table, report).run()
    report.rows = len(table.rows)
    firsts = row_firsts(values)
    report.materials = len({(v.formula, v.prototype) for v in firsts})
    report.methods = len({v.method for v in firsts})
    keyed = mapping.keyed and any(e.scope != "configuration" for e in mapping.entries)  # rows may hold no configuration value
    report.configurations = len({(v.formula, v.prototype, v.method, v.key) for v in (values if keyed else firsts)
                                 if config_key(v) is not None})
    if report.merged_rows:
        report.notes.append(merged_rows_note(report))
    if any(e.scope == "surface" for e in mapping.entries):
        report.notes.extend(near_miller_notes(values))
    if any(e.component for e in mapping.entries):
        report.notes.extend(frame_notes(values, sum(1 for s in report.skipped if s["reason"].startswith("another frame"))))
    return values


def merged_rows_note(report: TableReport) -> str:
    """The note on rows merged into earlier rows of their material.

    E.g. "9 rows → 3 (27 values → 9): 6 rows only repeat values of earlier rows of their material;
    18 repeats of the same value (within relative 1e-06) merged, stored once".  ``report.rows``,
    ``values``, ``merged_rows`` and ``repeated`` must be counted.
    """
    return (f"{report.rows} rows → {report.rows - report.merged_rows} ({report.values + report.repeated} values → "
            f"{report.values}): {report.merged_rows} {'row only repeats' if report.merged_rows == 1 else 'rows only repeat'} "
            f"values of earlier rows of their material; {_plural(report.repeated, 'repeat')} of the same value "
            f"(within relative {CONFLICT_RTOL:g}) merged, stored once")


def row_firsts(values: list[Value]) -> list[Value]:
    """The first of each run of consecutive values from one row.

    Values of one row share their material, method and configuration key, so these are
    enough to collect the entities of ``values`` (in row order, as :func:`parse_values` gives
    them: one per row).
    """
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1].row != v.row]


__all__ = ["UNDECLARED_FRAME", "Value", "config_key", "describe", "distinct_numbers", "frame_notes", "issue", "miller_indices",
           "miller_integer", "near_miller_notes", "parse_values", "paused_gc", "row_firsts", "repeat_agrees", "spherical_normal", "values_agree", "whole_count",
           "written_precision"]
