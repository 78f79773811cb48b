"""Table mappings: the YAML format as pydantic models, safe loading, and resolution of targets.

The format is documented with worked examples in ``docs/ingest.md``.  In short::

    name: my_table
    format: csv                        # csv | whitespace (default: from the file extension)
    material: {column: species, prototype: fcc}      # or {formula: MoS2, prototype: 2H}
    method: {column: model, kind: interatomic_potential}   # or {name: DFT-PBE, kind: dft}
    key: {column: _id}                 # optional: each row is one configuration
    derived:                           # optional: columns computed before mapping
      Ec_eV: {expr: "-CHE_eV"}
    columns:
      Ec_eV: {definition: cohesive_energy, unit: eV/atom}
      gamma:
        definition: surface_energy
        unit: J/m^2
        orientation: {angle_columns: [theta, phi], convention: spherical}

:func:`load_mapping` reads the YAML with a node budget (an alias bomb is refused before it
expands), validates it with the pydantic models below, and resolves every column target
against the property vocabulary (built-in, or the store's when given) and pint units.  Every
error is one :class:`~matstore.ingest.errors.MappingError` naming the mapping file, the line
and the key path.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from matstore.ingest.derived import Expression, ExpressionError, parse_expression
from matstore.ingest.errors import MappingError, UnitError
from matstore.names import NAME, TEXT, strings_in, unsafe_reason
from matstore.orientation import (
    CUBIC_ONLY,
    Orientation,
    OrientationError,
    from_angles,
    from_miller,
    from_normal,
)
from matstore.schema.provenance import METHOD_KINDS
from matstore.schema.vocabulary import DEFINITIONS_BY_NAME

OnInvalid = Literal["error", "flag", "skip"]
#: How a table's tensor components are framed: ``matstore`` (the in-plane frame of the reduced
#: index, :func:`matstore.orientation.in_plane_frame`), or e1 in crystal axes as three column
#: names or three numbers.
FrameSpec = Literal["matstore"] | tuple[float, float, float] | tuple[str, str, str]
#: A surface definition whose name ends in two or four axis indices is a tensor component
#: (τ_11, S_1122, Voigt S_66): its value depends on the in-plane frame, not only on the surface.
_COMPONENT = re.compile(r"_(?:[1-6]{2}|[1-3]{4})$")


def is_tensor_component(name: str, scope: str) -> bool:
    """True for a frame-dependent tensor component: a surface definition named ``…_ij`` or ``…_ijkl``.

    ``surface_stress_11``, ``surface_stress_12``, ``surface_stiffness_66`` (Voigt) or a user's
    ``surface_stiffness_1122`` are; the invariants ``surface_stress`` (τ11 + τ22)/2 and
    ``surface_stiffness`` are not, nor is any bulk definition (``surface_energy_111``).
    """
    return scope == "surface" and _COMPONENT.search(name) is not None
MAX_MAPPING_BYTES = 1_000_000
MAX_YAML_NODES = 20_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_miller_bravais(value: Any, what: str) -> Any:
    """``value`` unchanged, unless it is a list of four items: a hexagonal Miller–Bravais (h k i l) index.

    Raises
    ------
    ValueError
        One line saying that four ``what`` are a 4-index hexagonal facet and that matstore's
        surfaces are cubic (:data:`matstore.orientation.CUBIC_ONLY`); pydantic's own message
        ("Tuple should have at most 3 items") does not say why.
    """
    if isinstance(value, (list, tuple)) and len(value) == 4:
        raise ValueError(f"4 {what} {list(value)} are a 4-index hexagonal (Miller–Bravais) facet (h k i l); {CUBIC_ONLY}: "
                      f"give 3 {what} (h, k, l) of a cubic material; store a hexagonal material's bulk values, not its surfaces")
    return value


class SourceSpec(_Model):
    """Where the table comes from (stored on the ``source`` row)."""

    kind: Literal["computation", "file", "dataset"] | None = None
    url: str | None = None
    uri: str | None = None
    repository: str | None = None
    path: str | None = None
    doi: str | None = None
    license: str | None = None
    commit: str | None = None
    description: str | None = None
    citation: str | None = None


class MaterialSpec(_Model):
    """The material of each row: a ``column`` of formulas or one constant ``formula``."""

    column: str | None = None
    formula: str | None = None
    prototype: str = "unknown"
    prototype_column: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MaterialSpec:
        if (self.column is None) == (self.formula is None):
            raise ValueError("give `column` (the column naming the formula) or `formula`, not both")
        return self


class MethodSpec(_Model):
    """The method of each row: a ``column`` of names or one constant ``name``."""

    column: str | None = None
    name: str | None = None
    kind: Literal[METHOD_KINDS] = "other"  # type: ignore[valid-type]
    kind_column: str | None = None
    potential: str | None = None
    potential_column: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MethodSpec:
        if (self.column is None) == (self.name is None):
            raise ValueError("give `column` (the column naming the method) or `name`, not both")
        return self


class KeySpec(_Model):
    """The row key of a per-configuration table: each row is one configuration."""

    column: str
    prefix: str = ""


class DerivedSpec(_Model):
    """A column computed before mapping from an arithmetic ``expr`` on other columns."""

    expr: str

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse_expression(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return value


class OrientationSpec(_Model):
    """Per-row orientation columns of a surface value (exactly one kind).

    ``miller_column`` holds the whole index in one cell (``111``, ``(1 1 0)``, ``1̄10``);
    ``miller_columns`` names three columns h, k, l.  ``angle_columns`` are read with
    ``convention``: ``triangle`` (default; θ from [100] and φ about [100] in the standard
    stereographic triangle, :func:`matstore.orientation.from_angles`) or ``spherical`` (the
    normal's polar angle θ from [001] and azimuth φ from [100]: n = (sin θ cos φ, sin θ sin φ,
    cos θ)).  Angles are in ``angle_unit`` (deg or rad).  ``miller_tolerance_deg`` (normals and
    angles only; 0 < tol ≤ 5°) stores a normal within that angle of a Miller plane as the
    lowest-index such plane; by default only exact (1e-6) matches are.  ``frame`` (tensor
    components only, see :func:`is_tensor_component`) declares the in-plane frame of the
    values: ``matstore`` or e1 in crystal axes (three columns or three numbers).
    """

    miller_column: str | None = None
    miller_columns: tuple[str, str, str] | None = None
    normal_columns: tuple[str, str, str] | None = None
    angle_columns: tuple[str, str] | None = None
    convention: Literal["triangle", "spherical"] = "triangle"
    angle_unit: Literal["deg", "rad"] = "deg"
    miller_tolerance_deg: float | None = None
    frame: FrameSpec | None = None

    @field_validator("miller_columns", mode="before")
    @classmethod
    def _three_columns(cls, value: Any) -> Any:
        return _not_miller_bravais(value, "columns")

    @model_validator(mode="after")
    def _exactly_one(self) -> OrientationSpec:
        given = [self.miller_column, self.miller_columns, self.normal_columns, self.angle_columns]
        if sum(g is not None for g in given) != 1:
            raise ValueError("give exactly one of miller_column, miller_columns (3 names), normal_columns (3 names), "
                             "angle_columns (2 names)")
        tol = self.miller_tolerance_deg
        if tol is not None and not 0 < tol <= 5:
            raise ValueError(f"miller_tolerance_deg must be > 0 and <= 5 (degrees), got {tol}")
        if tol is not None and (self.miller_column or self.miller_columns):
            raise ValueError("miller_tolerance_deg applies to normal_columns and angle_columns, not to Miller indices")
        return self

    def columns(self) -> tuple[str, ...]:
        """Table columns this orientation reads."""
        given = (self.miller_column,) if self.miller_column else (
            self.miller_columns or self.normal_columns or self.angle_columns or ())
        return (*given, *self.frame_columns())

    def frame_columns(self) -> tuple[str, ...]:
        """The three columns of e1 when ``frame`` names columns, else ``()``."""
        frame = self.frame
        return frame if isinstance(frame, tuple) and all(isinstance(c, str) for c in frame) else ()  # type: ignore[return-value]


class TargetSpec(_Model):
    """One (column → property definition) target, with the column's unit."""

    definition: str
    unit: str
    miller: tuple[int, int, int] | None = None
    normal: tuple[float, float, float] | None = None
    angles: tuple[float, float] | None = None
    orientation: OrientationSpec | None = None
    frame: Literal["matstore"] | tuple[float, float, float] | None = None
    uncertainty_column: str | None = None
    on_invalid: OnInvalid | None = None

    @field_validator("miller", mode="before")
    @classmethod
    def _three_indices(cls, value: Any) -> Any:
        return _not_miller_bravais(value, "indices")


class RowFlagSpec(_Model):
    """Flag the values of rows the table marks (e.g. a ``disqualified`` column)."""

    column: str
    flag: str
    when: Literal["not_blank"] | None = None
    values: tuple[str, ...] = ()
    definitions: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _condition(self) -> RowFlagSpec:
        if self.when is None and not self.values:
            raise ValueError("give `when: not_blank` or a list of `values`")
        return self

    def applies(self, cell: str, definition: str) -> bool:
        """True when this rule flags ``definition`` in a row whose ``column`` holds ``cell``."""
        if self.definitions and definition not in self.definitions:
            return False
        text = cell.strip().lower()
        return bool(text) if self.when == "not_blank" else text in {v.strip().lower() for v in self.values}


class MappingSpec(_Model):
    """A whole mapping file (see ``docs/ingest.md``)."""

    name: str | None = None
    description: str | None = None
    format: Literal["csv", "whitespace"] | None = None
    header: bool = True
    names: tuple[str, ...] | None = None
    comment: str | None = "#"
    delimiter: str = ","
    on_invalid: OnInvalid = "error"
    on_duplicate: Literal["error", "keep_first"] = "error"
    source: SourceSpec = Field(default_factory=SourceSpec)
    material: MaterialSpec
    method: MethodSpec
    key: KeySpec | None = None
    derived: dict[str, DerivedSpec] = Field(default_factory=dict)
    columns: dict[str, TargetSpec | list[TargetSpec]]
    row_flags: tuple[RowFlagSpec, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> MappingSpec:
        if not self.header and not self.names:
            raise ValueError("header: false needs `names: [...]` (the column names)")
        if not self.columns:
            raise ValueError("columns: map at least one table column to a property definition")
        return self


# --- resolved mapping ------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnEntry:
    """One resolved target: column, definition, unit factor and orientation source."""

    column: str
    definition: str
    unit: str
    factor: float
    canonical_unit: str
    scope: str
    orientation: Orientation | None = None
    orientation_columns: OrientationSpec | None = None
    uncertainty_column: str | None = None
    on_invalid: str = "error"
    component: bool = False
    frame: Any = None  # FrameSpec: "matstore", e1 as 3 numbers or 3 column names; None: undeclared
    given_normal: tuple[float, float, float] | None = None  # a constant orientation as the mapping wrote it


@dataclass
class Mapping:
    """A validated mapping with its targets resolved (what the reading and storing steps use)."""

    name: str
    path: str | None
    raw: dict[str, Any]
    spec: MappingSpec
    entries: list[ColumnEntry]
    derived: dict[str, Expression] = field(default_factory=dict)

    @property
    def keyed(self) -> bool:
        """True when each row is one configuration (``key:`` given)."""
        return self.spec.key is not None

    def columns_used(self) -> list[str]:
        """Every table column the mapping reads (derived columns included, their inputs not)."""
        spec = self.spec
        cols = [c for c in (spec.material.column, spec.material.prototype_column, spec.method.column,
                            spec.method.kind_column, spec.method.potential_column) if c]
        if spec.key:
            cols.append(spec.key.column)
        for e in self.entries:
            cols.append(e.column)
            cols.extend(e.orientation_columns.columns() if e.orientation_columns else ())
            cols.extend([e.uncertainty_column] if e.uncertainty_column else [])
        cols.extend(rule.column for rule in spec.row_flags)
        return list(dict.fromkeys(cols))


def load_mapping(
    mapping: str | Path | AbcMapping[str, Any] | Mapping,
    *,
    path: str | Path | None = None,
    vocabulary: AbcMapping[str, Any] | None = None,
) -> Mapping:
    """Parse, validate and resolve a mapping (YAML file, dict or :class:`Mapping`).

    Parameters
    ----------
    mapping
        YAML path, a dict of the same structure, or an already loaded mapping (re-resolved
        against ``vocabulary``).
    path
        File name used in error messages when ``mapping`` is a dict.
    vocabulary
        Definitions by name, each with ``unit`` and ``scope`` attributes (e.g.
        :func:`matstore.crud.definitions`); default: the built-in vocabulary.

    Raises
    ------
    MappingError
        Not YAML, too large or an alias bomb; a key or text holding a control character or a
        bidirectional override (:func:`_check_texts`); unknown keys; missing or invalid fields; an
        unknown definition (with near matches and how to add one); a surface definition
        without exactly one orientation or a non-surface one with one; a configuration
        definition in a mapping without ``key``.
    UnitError
        A unit pint does not know, or one not convertible to the definition's unit.
    """
    if isinstance(mapping, Mapping):
        raw, path = mapping.raw, mapping.path
    elif isinstance(mapping, (str, Path)):
        path = Path(mapping)
        raw = _read_yaml(path)
    else:
        raw = dict(mapping)
    where = str(path) if path else None
    if not isinstance(raw, dict):
        raise MappingError("a mapping must be a YAML mapping (key: value)", path=where)
    _check_texts(raw, path)
    try:
        spec = MappingSpec.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, path) from None
    vocabulary = vocabulary if vocabulary is not None else DEFINITIONS_BY_NAME
    entries = []
    for column, targets in spec.columns.items():
        for target in targets if isinstance(targets, list) else [targets]:
            entries.append(_resolve(column, target, spec, vocabulary, path))
    derived = {name: parse_expression(d.expr) for name, d in spec.derived.items()}
    name = spec.name or (Path(path).stem if path else "mapping")
    return Mapping(name=name, path=where, raw=raw, spec=spec, entries=entries, derived=derived)


def _read_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MappingError("mapping file not found", path=path) from None
    if len(data) > MAX_MAPPING_BYTES:
        raise MappingError(f"mapping file is larger than {MAX_MAPPING_BYTES} bytes", path=path)
    try:
        node = yaml.compose(data.decode("utf-8-sig"), Loader=yaml.SafeLoader)
        _check_size(node, path)
        return yaml.safe_load(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise MappingError(f"not UTF-8 text ({exc.reason})", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise MappingError(f"not valid YAML: {reason}", path=path, line=line) from None


#: Mapping keys whose values may hold a tab or a line feed (:data:`~matstore.names.TEXT`): the
#: free-text ``description`` and ``citation``, and ``delimiter`` (``"\t"``: a tab-separated table).
FREE_TEXT_KEYS = frozenset({"citation", "delimiter", "description"})


def _check_texts(raw: dict[str, Any], path: str | Path | None) -> None:
    """Refuse a mapping any key or string value of which holds a control character or a bidi override.

    Every string of a mapping may end up stored and printed: names (method, material,
    prototype, potential, key prefix, row flags), column names, the source's metadata.
    Values of :data:`FREE_TEXT_KEYS` may hold tabs and line feeds; no other string may
    (:mod:`matstore.names`).

    Raises
    ------
    MappingError
        ``m.yaml, line 4: method.name 'PBE\\x1b[8m' contains the control character U+001B (ESC)``:
        the first offending string, its key path and line.
    """
    for loc, text, is_key in strings_in(raw):
        free = not is_key and bool(loc) and loc[-1] in FREE_TEXT_KEYS
        dotted = ".".join(loc[:-1] if is_key else loc) or "mapping"
        reason = unsafe_reason(text, f"{dotted}: key" if is_key else dotted, TEXT if free else NAME)
        if reason is not None:
            named = len(loc) > 1 and loc[0] in ("columns", "derived") and not (is_key and len(loc) == 2)
            raise MappingError(reason, path=path, line=_line_of(path, list(loc)), column=loc[1] if named else None)


def _check_size(node: yaml.Node | None, path: Path) -> None:
    """Refuse YAML whose aliases expand to more than :data:`MAX_YAML_NODES` nodes (alias bombs)."""
    count, stack = 0, [node] if node is not None else []
    while stack:
        current = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise MappingError(f"mapping expands to more than {MAX_YAML_NODES} YAML nodes (aliases repeated: an alias bomb?); refused", path=path)
        if isinstance(current, yaml.MappingNode):
            stack.extend(n for pair in current.value for n in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _validation_error(exc: ValidationError, path: str | Path | None) -> MappingError:
    """One :class:`MappingError` for pydantic's errors: an unknown key first (a misspelt key
    also makes the key it meant "missing"), with the nearest allowed key as a hint."""
    errors = exc.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in first["loc"] if not str(p).startswith(("function-after", "TargetSpec", "list["))]
    dotted = ".".join(loc) or "mapping"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], _allowed_keys(loc[:-1]), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        message = f"unknown key {loc[-1]!r}{hint}"
        dotted = ".".join(loc[:-1])
        text = f"{dotted}: {message}" if dotted else message
    else:
        message = "required key missing" if first["type"] == "missing" else message
        text = f"{dotted}: {message}"
    column = loc[1] if len(loc) > 1 and loc[0] in ("columns", "derived") else None
    return MappingError(text, path=path, line=_line_of(path, loc), column=column)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a type annotation (``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _allowed_keys(parent: list[str]) -> list[str]:
    """The keys allowed at ``parent`` (a key path of :class:`MappingSpec`; list indices and
    column names are stepped over), for an unknown key's hint."""
    models: list[type[BaseModel]] = [MappingSpec]
    keyed = False  # the next part is a dict key (a column name), not a field
    for part in parent:
        if keyed or part.isdigit():
            keyed = False
            continue
        field_info = next((m.model_fields[part] for m in models if part in m.model_fields), None)
        if field_info is None:
            return []
        models = _models_in(field_info.annotation)
        keyed = typing.get_origin(field_info.annotation) is dict
    return sorted({name for m in models for name in m.model_fields})


def _line_of(path: str | Path | None, loc: list[str]) -> int | None:
    """1-based line of the deepest key of ``loc`` found in the mapping file (for messages)."""
    if path is None:
        return None
    try:
        node = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _resolve(column: str, target: TargetSpec, spec: MappingSpec, vocabulary: AbcMapping[str, Any],
             path: str | Path | None) -> ColumnEntry:
    from matstore.crud import unknown_definition_message
    from matstore.ingest.units import conversion_factor

    ctx = f"columns.{column}"

    def where() -> dict[str, Any]:  # file, line and column for an error (the line is looked up only then)
        return {"path": path, "line": _line_of(path, ["columns", column]), "column": column}

    definition = vocabulary.get(target.definition)
    if definition is None or definition.scope == "composition":
        reason = (unknown_definition_message(target.definition, [n for n, d in vocabulary.items() if d.scope != "composition"])
                  if definition is None else f"{target.definition} is computed from the composition and cannot be ingested")
        raise MappingError(f"{ctx}: {reason}", **where())
    try:
        factor = conversion_factor(target.unit, definition.unit)
    except Exception as exc:  # noqa: BLE001 - pint raises many kinds for a string that is not a unit
        reason = str(exc) if isinstance(exc, ValueError) else f"not a unit: {target.unit!r}"
        raise UnitError(f"{ctx}: {reason} (definition {target.definition} is in {definition.unit})", **where()) from None
    orientation = _constant_orientation(target, ctx, where)
    n_orient = (orientation is not None) + (target.orientation is not None)
    if definition.scope == "surface" and n_orient != 1:
        raise MappingError(f"{ctx}: surface definition {target.definition} needs exactly one orientation "
                           "(miller, normal, angles or orientation: {...})", **where())
    if definition.scope != "surface" and n_orient:
        raise MappingError(f"{ctx}: {target.definition} is a {definition.scope} property and takes no orientation", **where())
    if definition.scope == "configuration" and spec.key is None:
        raise MappingError(f"{ctx}: {target.definition} is a per-configuration property; declare the row key "
                           "with `key: {column: <id column>}`", **where())
    if definition.scope == "surface" and spec.key is not None:
        raise MappingError(f"{ctx}: surface values cannot be per-configuration (drop `key:` or map them in another table)",
                           **where())
    component = is_tensor_component(target.definition, definition.scope)
    frame = _frame(target, orientation, component, ctx, where)
    return ColumnEntry(
        column=column, definition=target.definition, unit=target.unit, factor=factor, canonical_unit=definition.unit,
        scope=definition.scope, orientation=orientation, orientation_columns=target.orientation,
        uncertainty_column=target.uncertainty_column, on_invalid=target.on_invalid or spec.on_invalid,
        component=component, frame=frame, given_normal=_given_normal(target, orientation),
    )


def _given_normal(target: TargetSpec, orientation: Orientation | None) -> tuple[float, float, float] | None:
    """A constant orientation as written (Miller indices or normal, not reduced); angles as their normal."""
    given = target.miller or target.normal
    if given is not None:
        return tuple(float(c) for c in given)  # type: ignore[return-value]
    return orientation.normal if orientation is not None else None


def _frame(target: TargetSpec, orientation: Orientation | None, component: bool, ctx: str,
           where: Callable[[], dict[str, Any]]) -> Any:
    """The declared frame of a target (``None``: undeclared), checked against its definition and orientation."""
    frame = target.orientation.frame if target.orientation is not None else target.frame
    if target.orientation is not None and target.frame is not None:
        raise MappingError(f"{ctx}: with per-row orientation columns, declare the frame inside them "
                           "(orientation: {..., frame: ...})", **where())
    if frame is not None and not component:
        raise MappingError(f"{ctx}: frame applies to tensor components (surface definitions named ..._ij or ..._ijkl); "
                           f"{target.definition} does not depend on the in-plane frame", **where())
    if frame == "matstore" and orientation is not None and orientation.miller is None:
        raise MappingError(f"{ctx}: frame: matstore needs a Miller plane, and {orientation.label} is irrational; "
                           "give e1 instead (frame: [e1x, e1y, e1z])", **where())
    if isinstance(frame, tuple) and not isinstance(frame[0], str):
        norm = sum(c * c for c in frame) ** 0.5
        if not norm > 0:
            raise MappingError(f"{ctx}: frame: e1 {list(frame)} is the zero vector", **where())
        normal = target.normal or target.miller
        if normal is not None:
            cosine = abs(sum(a * b for a, b in zip(frame, normal, strict=True))) / norm / sum(c * c for c in normal) ** 0.5
            if cosine > FRAME_TOLERANCE:
                raise MappingError(f"{ctx}: frame: e1 {list(frame)} is not in the surface plane {list(normal)} "
                                   f"(|cos| = {cosine:.3g} > {FRAME_TOLERANCE:g})", **where())
    return frame


#: Largest |cos| between a declared e1 and the normal: 1e-3, about 0.06° from the plane (rounded tables).
FRAME_TOLERANCE = 1e-3


def _constant_orientation(target: TargetSpec, ctx: str, where: Callable[[], dict[str, Any]]) -> Orientation | None:
    given = [x for x in (target.miller, target.normal, target.angles) if x is not None]
    if len(given) > 1:
        raise MappingError(f"{ctx}: give one of miller, normal, angles", **where())
    try:
        if target.miller is not None:
            return from_miller(*target.miller)
        if target.normal is not None:
            return from_normal(target.normal)
        if target.angles is not None:
            return from_angles(*target.angles)
    except OrientationError as exc:
        raise MappingError(f"{ctx}: invalid orientation: {exc}", **where()) from None
    return None


__all__ = [
    "FRAME_TOLERANCE",
    "ColumnEntry",
    "DerivedSpec",
    "KeySpec",
    "Mapping",
    "MappingSpec",
    "MaterialSpec",
    "MethodSpec",
    "OrientationSpec",
    "RowFlagSpec",
    "SourceSpec",
    "TargetSpec",
    "is_tensor_component",
    "load_mapping",
]
