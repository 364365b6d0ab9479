"""LightGBM's single-row C API, for the scorer's one-request-one-row path.

``Booster.predict`` prepares a predictor on every call (parameter copies,
array checks), which costs more than walking the trees of one row. LightGBM's
``LGBM_BoosterPredictForMatSingleRowFast`` prepares it once; each call then
only walks the trees. Results are the same numbers as ``Booster.predict``
(``tests/test_models_unit.py`` checks it). A predictor is not thread-safe:
the scorer calls it from its event loop only.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 3)); y = (x[:, 0] > 0).astype(int)
>>> booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, y), 5)
>>> fast = SingleRowPredictor(booster, "raw")
>>> bool(np.isclose(fast(x[0]), booster.predict(x[:1], raw_score=True)[0], rtol=0, atol=1e-12))
True
"""

from __future__ import annotations

import ctypes
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _c_str, _safe_call

_TYPES = {"raw": 1, "contrib": 3}  # C_API_PREDICT_RAW_SCORE, C_API_PREDICT_CONTRIB
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class SingleRowPredictor:
    """Raw score or SHAP contributions of one float64 row, through the fast C API."""

    def __init__(self, booster: lgb.Booster, kind: Literal["raw", "contrib"]) -> None:
        self._booster = booster  # the handle must outlive the fast config
        self.ncol = booster.num_feature()
        self._width = self.ncol + 1 if kind == "contrib" else 1
        best = booster.best_iteration
        handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_TYPES[kind]),
                ctypes.c_int(0),
                ctypes.c_int(best if best and best > 0 else -1),
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(self.ncol),
                _c_str("num_threads=1"),
                ctypes.byref(handle),
            )
        )
        self._config: ctypes.c_void_p | None = handle

    def __call__(self, row: np.ndarray) -> Any:
        """``kind`` of one row: a float (raw) or an array of ncol + 1 (contrib)."""
        row = np.ascontiguousarray(row, dtype=np.float64).reshape(-1)
        if row.shape[0] != self.ncol:
            raise ValueError(f"expected {self.ncol} features, got {row.shape[0]}")
        out = np.empty(self._width, dtype=np.float64)
        n = ctypes.c_int64()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                self._config,
                row.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(n),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        )
        return float(out[0]) if self._width == 1 else out

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value:
            _LIB.LGBM_FastConfigFree(config)
            self._config = None
