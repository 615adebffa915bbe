"""ROS parameters from core dataclass configs: declare, read back, validate on set.

Every node keeps its configuration in a ROS-free dataclass (``ate_ros.core``) whose fields carry
``field(metadata={"help": ..., "choices": ..., "min": ..., "max": ..., "read_only": ...})``
(conventions in :mod:`ate_ros.core.config_fields`, whose :func:`walk_fields` this module
declares from). Each leaf field becomes a declared ROS parameter with a
:class:`ParameterDescriptor` (description, range, read-only, the allowed choices); the effective
values (defaults < YAML/overrides) are read back into a validated dataclass instance, and
run-time ``ros2 param set`` calls are rejected when the value is outside the field's choices or
bounds or the dataclass's ``__post_init__`` refuses the result.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``list[bool|int|float|str]``,
``X | None`` for those scalars (``None`` is stored as NaN for floats, ``""`` for strings) and
nested dataclasses (flattened with dots: ``execution.blend``, which is how nested YAML maps
under ``ros__parameters`` arrive). Fields with ``metadata={"ros": False}`` are skipped.

Typical use inside a node::

    self.params = DataclassParameters(self, ExecutorNodeConfig, defaults=config,
                                      on_change=self._apply_config)
    cfg = self.params.config          # validated instance
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.parameter import Parameter

from ate_ros.core.config_fields import (
    FieldInfo,
    bound_text,
    check_value,
    unwrap_optional,
    walk_fields,
)

T = TypeVar("T")

__all__ = [
    "DataclassParameters",
    "ParameterConfigError",
    "dataclass_parameter_names",
    "declare_dataclass_parameters",
    "parameter_specs",
]


class ParameterConfigError(ValueError):
    """Declared parameter values do not form a valid config (message names the parameter)."""


_SCALARS = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
_ARRAYS = {bool: ParameterType.PARAMETER_BOOL_ARRAY,
           int: ParameterType.PARAMETER_INTEGER_ARRAY,
           float: ParameterType.PARAMETER_DOUBLE_ARRAY,
           str: ParameterType.PARAMETER_STRING_ARRAY}
_PTYPE = {ParameterType.PARAMETER_BOOL: Parameter.Type.BOOL,
          ParameterType.PARAMETER_INTEGER: Parameter.Type.INTEGER,
          ParameterType.PARAMETER_DOUBLE: Parameter.Type.DOUBLE,
          ParameterType.PARAMETER_STRING: Parameter.Type.STRING,
          ParameterType.PARAMETER_BOOL_ARRAY: Parameter.Type.BOOL_ARRAY,
          ParameterType.PARAMETER_INTEGER_ARRAY: Parameter.Type.INTEGER_ARRAY,
          ParameterType.PARAMETER_DOUBLE_ARRAY: Parameter.Type.DOUBLE_ARRAY,
          ParameterType.PARAMETER_STRING_ARRAY: Parameter.Type.STRING_ARRAY}


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One leaf parameter: the walked field and its ROS type."""

    field: FieldInfo
    ptype: int  # rcl_interfaces ParameterType
    elem: type  # python scalar type (element type for arrays)

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def path(self) -> tuple[str, ...]:
        return self.field.path

    @property
    def optional(self) -> bool:
        return self.field.optional

    @property
    def is_array(self) -> bool:
        return self.field.is_list


def parameter_specs(cls: type, prefix: str = "") -> list[ParamSpec]:
    """The leaf parameters a dataclass declares, in field order (nested dataclasses flattened,
    fields with ``metadata={"ros": False}`` left out).

    Raises:
        TypeError: a field whose type no ROS parameter can hold (the message names it).
    """
    out: list[ParamSpec] = []
    for info in walk_fields(cls, prefix, ros_only=True):
        table = _ARRAYS if info.is_list else _SCALARS
        if info.element_type not in table:
            raise TypeError(f"{info.owner.__name__}.{info.path[-1]}: type {info.type} cannot be "
                            "a ROS parameter")
        out.append(ParamSpec(info, table[info.element_type], info.element_type))
    return out


def dataclass_parameter_names(cls: type, prefix: str = "") -> list[str]:
    """Dotted parameter names a dataclass declares (for checking YAML files against nodes)."""
    return [s.name for s in parameter_specs(cls, prefix)]


# ----- value conversion ----------------------------------------------------------------------
def _get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        obj = getattr(obj, p)
    return obj


def _to_ros(spec: ParamSpec, value: Any) -> Any:
    """Dataclass value -> value rclpy accepts for the declared type."""
    if value is None:
        if spec.is_array:
            return []
        if spec.elem is float:
            return math.nan
        if spec.elem is str:
            return ""
        raise TypeError(f"parameter {spec.name}: None is only supported for float and str")
    if spec.is_array:
        return [spec.elem(v) for v in value]
    return spec.elem(value)


def _from_ros(spec: ParamSpec, value: Any) -> Any:
    """Parameter value -> dataclass field value (NaN/"" -> None for optional fields)."""
    if spec.is_array:
        return [spec.elem(v) for v in (value or [])]
    if spec.optional:
        if spec.elem is float and (value is None or (isinstance(value, float)
                                                     and math.isnan(value))):
            return None
        if spec.elem is str and not value:
            return None
    if spec.elem is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    info = spec.field
    help_text = info.help
    if spec.optional and not spec.is_array:
        help_text += " (NaN means unset)" if spec.elem is float else " (empty means unset)"
    d = ParameterDescriptor(name=spec.name, type=spec.ptype, description=help_text,
                            read_only=info.read_only)
    constraints = []
    if info.choices is not None:
        constraints.append("one of: " + ", ".join(map(str, info.choices)))
    if info.min_exclusive or info.max_exclusive:
        # ROS ranges are inclusive: the strict bound is stated here and checked on set.
        constraints.append(f"must be {bound_text(info)}")
    d.additional_constraints = "; ".join(constraints)
    lo, hi = info.min, info.max
    if spec.elem is int:
        lo = lo + 1 if lo is not None and info.min_exclusive else lo
        hi = hi - 1 if hi is not None and info.max_exclusive else hi
    # A range on an optional float would reject its NaN sentinel: the dataclass validates it.
    if (lo is not None or hi is not None) and not spec.is_array and not spec.optional:
        if spec.elem is float:
            d.floating_point_range = [FloatingPointRange(
                from_value=float(lo if lo is not None else -1e308),
                to_value=float(hi if hi is not None else 1e308), step=0.0)]
        elif spec.elem is int:
            d.integer_range = [IntegerRange(
                from_value=int(lo if lo is not None else -(2**63)),
                to_value=int(hi if hi is not None else 2**63 - 1), step=0)]
    return d


def _build(cls: type, values: dict[tuple[str, ...], Any], base: Any, depth: int = 0) -> Any:
    """Construct ``cls`` (and nested dataclasses) from leaf values keyed by field path."""
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        current = getattr(base, f.name) if base is not None else None
        tp, _ = unwrap_optional(hints[f.name])
        if f.metadata.get("ros", True) is False:
            if base is not None:
                kwargs[f.name] = current
            continue
        if dataclasses.is_dataclass(tp):
            sub = {k[1:]: v for k, v in values.items() if k[0] == f.name and len(k) > 1}
            kwargs[f.name] = _build(tp, sub, current, depth + 1)
        elif (f.name,) in values:
            kwargs[f.name] = values[(f.name,)]
        elif base is not None:
            kwargs[f.name] = current
    return cls(**kwargs)


def _fix_int_overrides(node: Any, specs: list[ParamSpec]) -> None:
    """YAML ``timeout: 1`` for a float parameter arrives as INTEGER; accept it as 1.0.

    rclpy would otherwise refuse the declaration with a type error that never names the fix.
    """
    overrides = getattr(node, "_parameter_overrides", None)
    if not isinstance(overrides, dict):
        return
    for s in specs:
        p = overrides.get(s.name)
        if p is None:
            continue
        if s.ptype == ParameterType.PARAMETER_DOUBLE and p.type_ == Parameter.Type.INTEGER:
            overrides[s.name] = Parameter(s.name, Parameter.Type.DOUBLE, float(p.value))
        elif (s.ptype == ParameterType.PARAMETER_DOUBLE_ARRAY
              and p.type_ == Parameter.Type.INTEGER_ARRAY):
            overrides[s.name] = Parameter(s.name, Parameter.Type.DOUBLE_ARRAY,
                                          [float(v) for v in p.value])


class DataclassParameters(Generic[T]):
    """A node's parameters bound to a dataclass config.

    Args:
        node: The rclpy node (or lifecycle node) to declare on.
        cls: The config dataclass.
        defaults: Instance whose values are the declaration defaults (``cls()`` when None).
            Parameter overrides (YAML ``--params-file``, ``parameter_overrides=``) win.
        prefix: Optional namespace for the parameter names (``"exec."``).
        on_change: Called with the new validated config after a successful run-time set.

    Raises:
        ParameterConfigError: the effective values do not validate (message names the cause).
    """

    def __init__(self, node: Any, cls: type[T], defaults: T | None = None, prefix: str = "",
                 on_change: Callable[[T], None] | None = None) -> None:
        self._node = node
        self._cls = cls
        self._prefix = prefix
        self._on_change = on_change
        self.specs = parameter_specs(cls, prefix)
        self._by_name = {s.name: s for s in self.specs}
        base = defaults if defaults is not None else cls()
        _fix_int_overrides(node, self.specs)
        values: dict[tuple[str, ...], Any] = {}
        for s in self.specs:
            rel = s.path[len(prefix.split(".")) - 1:] if prefix else s.path
            default = _to_ros(s, _get_path(base, rel))
            desc = _descriptor(s)
            if s.is_array and not default:
                # An empty list carries no type: declare statically typed instead.
                p = node.declare_parameter(s.name, _PTYPE[s.ptype], desc)
                value = p.value if p.type_ != Parameter.Type.NOT_SET else []
            else:
                try:
                    p = node.declare_parameter(s.name, default, desc)
                except Exception as exc:  # rclpy's type/range errors, with the parameter name
                    raise ParameterConfigError(f"parameter {s.name!r}: {exc}") from exc
                value = p.value
            values[rel] = _from_ros(s, value)
        try:
            self.config: T = _build(cls, values, base)
        except (ValueError, TypeError) as exc:
            raise ParameterConfigError(f"invalid {cls.__name__} parameters: {exc}") from exc
        node.add_on_set_parameters_callback(self._validate)
        if hasattr(node, "add_post_set_parameters_callback"):
            node.add_post_set_parameters_callback(self._apply)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def _rel(self, name: str) -> tuple[str, ...]:
        path = tuple(name.split("."))
        return path[len(self._prefix.split(".")) - 1:] if self._prefix else path

    def _candidate(self, params: list[Parameter]) -> T | None:
        """The config with ``params`` applied, or None if none of them are ours."""
        values: dict[tuple[str, ...], Any] = {}
        for p in params:
            s = self._by_name.get(p.name)
            if s is None:
                continue
            value = p.value
            if s.ptype == ParameterType.PARAMETER_DOUBLE and p.type_ == Parameter.Type.INTEGER:
                value = float(value)
            value = _from_ros(s, value)
            check_value(s.field, value)  # choices and bounds, named by the parameter
            values[self._rel(p.name)] = value
        if not values:
            return None
        return _build(self._cls, values, self.config)

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        try:
            self._candidate(params)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply(self, params: list[Parameter]) -> None:
        try:
            new = self._candidate(params)
        except (ValueError, TypeError):  # validated already; never raise in a ROS callback
            return
        if new is None:
            return
        self.config = new
        if self._on_change is not None:
            self._on_change(new)


def declare_dataclass_parameters(node: Any, cls: type[T], defaults: T | None = None,
                                 prefix: str = "",
                                 on_change: Callable[[T], None] | None = None) -> T:
    """Declare ``cls``'s parameters on ``node`` and return the validated config.

    Shorthand for ``DataclassParameters(...).config`` (the binding stays alive through the
    node's callbacks, so run-time sets keep being validated and ``on_change`` keeps firing).
    """
    return DataclassParameters(node, cls, defaults, prefix, on_change).config
