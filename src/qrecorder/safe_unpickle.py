"""Restricted unpickling: an allow-list of exact ``module.qualname`` entries.

Why exact entries: a pickle names a global as (module, attribute path). An allow-list of whole
modules is not a boundary. ``uuid`` + ``os.system`` reaches ``os.system`` through the ``os`` that
``uuid`` imports, and every function defined in an allowed package is callable with the
attacker's arguments (``pandas.read_pickle`` alone unpickles any file without restriction). So
each admitted global is one (module, qualname) pair that was checked to be harmless to call with
any arguments; the name is resolved by qrecorder itself, not by ``pickle``'s compatibility
mapping, so what was checked is what is loaded.

The default list covers builtins' containers, datetime/decimal/fractions/uuid/pathlib values,
numpy arrays, dtypes, scalars and random generators, and pandas frames, series, indexes,
extension arrays, timestamps and offsets (pandas 2 and 3, numpy 1 and 2 spellings).
``ALLOW_SKLEARN`` and ``ALLOW_LIGHTGBM`` name common fitted models; add your own classes with
``allow=("mypkg.models.MyModel", ...)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
from collections.abc import Iterable
from typing import Any

from .errors import ConfigurationError

_BUILTINS = (
    "dict list tuple set frozenset str bytes bytearray int float complex bool slice range object"
).split()

_NUMPY = [
    "numpy.ndarray", "numpy.dtype",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar", "numpy._core.numeric._frombuffer",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar", "numpy.core.numeric._frombuffer",
    "numpy.ma.core._mareconstruct", "numpy.ma.core.MaskedArray",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
    "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64",
    "numpy.random.bit_generator.SeedSequence", "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
]

_PANDAS_TOP = (
    "DataFrame Series Index RangeIndex MultiIndex DatetimeIndex TimedeltaIndex PeriodIndex IntervalIndex "
    "CategoricalIndex Categorical CategoricalDtype DatetimeTZDtype PeriodDtype IntervalDtype SparseDtype "
    "StringDtype BooleanDtype Int8Dtype Int16Dtype Int32Dtype Int64Dtype UInt8Dtype UInt16Dtype UInt32Dtype "
    "UInt64Dtype Float32Dtype Float64Dtype ArrowDtype Period Interval Timestamp Timedelta DateOffset NA NaT"
).split()
_PANDAS_ARRAYS = (
    "ArrowStringArray BooleanArray DatetimeArray FloatingArray IntegerArray IntervalArray PeriodArray "
    "SparseArray StringArray TimedeltaArray ArrowExtensionArray NumpyExtensionArray"
).split()
_PANDAS_OFFSETS = (
    "Day Hour Minute Second Milli Micro Nano BusinessDay BDay CustomBusinessDay Week WeekOfMonth "
    "MonthEnd MonthBegin BusinessMonthEnd BusinessMonthBegin QuarterEnd QuarterBegin YearEnd YearBegin "
    "BusinessHour DateOffset"
).split()
_PANDAS = [
    *(f"pandas.{n}" for n in _PANDAS_TOP),
    *(f"pandas.arrays.{n}" for n in _PANDAS_ARRAYS),
    *(f"pandas._libs.tslibs.offsets.{n}" for n in _PANDAS_OFFSETS),
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
    "pandas._libs.internals._unpickle_block",
    "pandas._libs.sparse.IntIndex", "pandas._libs.sparse.BlockIndex",
    "pandas._libs.tslibs.nattype._nat_unpickle", "pandas._libs.tslibs.nattype.__nat_unpickle",
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas._libs.tslibs.timestamps.Timestamp", "pandas._libs.tslibs.timedeltas.Timedelta",
    "pandas._libs.tslibs.period.Period", "pandas._libs.interval.Interval",
    "pandas.core.indexes.base._new_Index", "pandas.core.indexes.datetimes._new_DatetimeIndex",
    "pandas.core.indexes.interval._new_IntervalIndex", "pandas.core.indexes.timedeltas._new_TimedeltaIndex",
    "pandas.core.indexes.period._new_PeriodIndex",
    "pandas.core.internals.managers.BlockManager", "pandas.core.internals.managers.SingleBlockManager",
    "pandas.core.internals.blocks.new_block", "pandas.core.internals.blocks.Block",
    # pandas 1.x/2.x spellings, found in pickles written by older installs (e.g. Qlib's pred.pkl)
    "pandas.core.frame.DataFrame", "pandas.core.series.Series", "pandas.core.indexes.base.Index",
    "pandas.core.indexes.range.RangeIndex", "pandas.core.indexes.multi.MultiIndex",
    "pandas.core.indexes.datetimes.DatetimeIndex", "pandas.core.indexes.numeric.Int64Index",
    "pandas.core.indexes.numeric.Float64Index", "pandas.core.indexes.category.CategoricalIndex",
    "pandas.core.arrays.categorical.Categorical", "pandas.core.arrays.datetimes.DatetimeArray",
    "pandas.core.arrays.timedeltas.TimedeltaArray", "pandas.core.arrays.period.PeriodArray",
    "pandas.core.arrays.integer.IntegerArray", "pandas.core.arrays.floating.FloatingArray",
    "pandas.core.arrays.boolean.BooleanArray", "pandas.core.arrays.string_.StringArray",
    "pandas.core.dtypes.dtypes.CategoricalDtype", "pandas.core.dtypes.dtypes.DatetimeTZDtype",
    "pandas.core.dtypes.dtypes.PeriodDtype", "pandas.core.arrays.integer.Int64Dtype",
    "pandas.core.arrays.floating.Float64Dtype", "pandas.core.arrays.boolean.BooleanDtype",
    "pandas.core.arrays.string_.StringDtype",
    # pyarrow-backed strings (pandas 3's default `str` dtype)
    "pyarrow.lib._restore_array", "pyarrow.lib.py_buffer", "pyarrow.lib.type_for_alias",
]

_STDLIB = [
    *(f"builtins.{n}" for n in _BUILTINS),
    "copyreg._reconstructor", "_codecs.encode",
    "collections.OrderedDict", "collections.defaultdict", "collections.deque", "collections.Counter",
    "datetime.date", "datetime.datetime", "datetime.time", "datetime.timedelta", "datetime.timezone",
    "decimal.Decimal", "uuid.UUID", "uuid.SafeUUID",
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePath",
    "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
    "zoneinfo.ZoneInfo",
    "dateutil.relativedelta.relativedelta", "pytz._p", "pytz._UTC",
]

DEFAULT_ALLOWED: tuple[str, ...] = tuple(dict.fromkeys([*_STDLIB, *_NUMPY, *_PANDAS]))

ALLOW_LIGHTGBM: tuple[str, ...] = (
    "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMRegressor", "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRanker", "lightgbm.sklearn.LGBMModel",
)
ALLOW_SKLEARN: tuple[str, ...] = (
    "sklearn.linear_model._base.LinearRegression", "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._coordinate_descent.Lasso", "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.linear_model._logistic.LogisticRegression", "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler", "sklearn.preprocessing._data.RobustScaler",
    "sklearn.pipeline.Pipeline", "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._gb.GradientBoostingClassifier", "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._tree.Tree", "sklearn.dummy.DummyRegressor",
    "sklearn.dummy.DummyClassifier", "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink", "sklearn._loss.link.Interval",
)


def _split_entry(entry: str) -> tuple[str, str]:
    """``"pkg.mod.Class.attr"`` → ``("pkg.mod", "Class.attr")``: the longest importable module.

    The split is fixed here, once, so a pickle cannot choose a different one (``pkg`` +
    ``mod.Class.attr`` through a re-exported attribute)."""
    if not isinstance(entry, str) or "." not in entry or entry.startswith(".") or entry.endswith("."):
        raise ConfigurationError(
            f"allow= entries are 'module.qualname' strings such as 'sklearn.linear_model._ridge.Ridge'; got {entry!r}."
        )
    parts = entry.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return module, ".".join(parts[cut:])
    # Not importable here (e.g. an optional package): keep the last dot as the split; a pickle
    # naming it will fail to import it and be refused anyway.
    module, _, name = entry.rpartition(".")
    return module, name


def _is_module(entry: str) -> bool:
    try:
        return importlib.util.find_spec(entry) is not None
    except (ImportError, ValueError):
        return False


_DEFAULT_PAIRS: frozenset[tuple[str, str]] | None = None


def allowed_pairs(extra: Iterable[str] = ()) -> frozenset[tuple[str, str]]:
    """The default allow-list plus ``extra`` entries, as (module, qualname) pairs."""
    global _DEFAULT_PAIRS
    if _DEFAULT_PAIRS is None:
        _DEFAULT_PAIRS = frozenset(_split_entry(e) for e in DEFAULT_ALLOWED)
    extra = tuple(extra)
    if not extra:
        return _DEFAULT_PAIRS
    for entry in extra:
        if isinstance(entry, str) and _is_module(entry):
            raise ConfigurationError(
                f"allow= names a whole module ({entry!r}): a pickle could then call any function in it "
                "(pandas.read_pickle alone runs any pickle). Name the exact classes, e.g. "
                f"'{entry}.SomeClass', or use qrecorder.objects.ALLOW_SKLEARN / ALLOW_LIGHTGBM."
            )
    return _DEFAULT_PAIRS | frozenset(_split_entry(e) for e in extra)


def _safe_getattr_table() -> dict[tuple[Any, str], Any]:
    import zoneinfo

    # _unpickle is private to CPython's zoneinfo and absent from typeshed; pickles name it.
    return {(zoneinfo.ZoneInfo, "_unpickle"): zoneinfo.ZoneInfo._unpickle}  # type: ignore[attr-defined]


def _restricted_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``getattr`` as pickles use it, for a fixed table of (class, attribute) pairs only.

    ZoneInfo pickles itself as ``getattr(ZoneInfo, "_unpickle")``; a general getattr would let a
    pickle reach any method of any admitted object (``Path(...).write_text``)."""
    for (owner, attr), value in _safe_getattr_table().items():
        if obj is owner and name == attr:
            return value
    raise pickle.UnpicklingError(
        f"restricted mode refuses getattr({getattr(obj, '__qualname__', type(obj).__name__)}, {name!r})"
    )


def _validated_restore_array(*args: Any, **kwargs: Any) -> Any:
    """pyarrow's ``_restore_array``, then a full validation: it builds an array from buffers as
    given, so offsets past a buffer would read (or crash on) memory outside it."""
    import pyarrow.lib

    array = pyarrow.lib._restore_array(*args, **kwargs)
    try:
        array.validate(full=True)
    except Exception as exc:  # noqa: BLE001 - pyarrow.lib.ArrowInvalid and kin
        raise pickle.UnpicklingError(f"restricted mode refuses an inconsistent pyarrow array: {exc}") from exc
    return array


_REPLACED: dict[tuple[str, str], Any] = {("pyarrow.lib", "_restore_array"): _validated_restore_array}


def _refuse_build_on(target: Any) -> bool:
    """BUILD sets state on an object; on a class, module or function that is monkeypatching."""
    import types

    return isinstance(target, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                               types.MethodType))


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """Admits only the (module, qualname) pairs of an allow-list; resolves them itself.

    The pure-Python unpickler (``pickle._Unpickler``), so that BUILD can be checked: a pickle
    may set state on instances it made, never on an admitted class (``pandas.Index.max = int``
    would change every later ``Index.max()`` in the process).
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, allowed: frozenset[tuple[str, str]] | None = None) -> None:
        super().__init__(file)
        self._allowed = allowed if allowed is not None else allowed_pairs()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "getattr"):
            return _restricted_getattr
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(
                f"restricted mode refuses the global {module}.{name}: it is not on the allow-list. "
                f"If you trust this artifact, pass allow=({module + '.' + name!r},) or load it unrestricted."
            )
        replaced = _REPLACED.get((module, name))
        if replaced is not None:
            return replaced
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    def load_build(self) -> None:
        target = self.stack[-2] if len(self.stack) >= 2 else None  # type: ignore[attr-defined]
        if _refuse_build_on(target):
            raise pickle.UnpicklingError(
                f"restricted mode refuses to set state on {getattr(target, '__qualname__', type(target).__name__)}: "
                "a pickle may only build objects it created"
            )
        super().load_build()  # type: ignore[misc]

    dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]  # the pure-Python dispatch table

    def load_ext1(self) -> None:
        raise pickle.UnpicklingError("restricted mode refuses the copyreg extension registry (EXT opcodes)")

    dispatch[pickle.EXT1[0]] = load_ext1  # type: ignore[assignment]  # the pure-Python dispatch table
    dispatch[pickle.EXT2[0]] = load_ext1  # type: ignore[assignment]  # the pure-Python dispatch table
    dispatch[pickle.EXT4[0]] = load_ext1  # type: ignore[assignment]  # the pure-Python dispatch table

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("restricted mode refuses persistent ids")


def restricted_loads(data: Any, extra: Iterable[str] = ()) -> Any:
    """Unpickle ``data`` (bytes-like) admitting only allow-listed globals."""
    return RestrictedUnpickler(io.BytesIO(data), allowed_pairs(extra)).load()
