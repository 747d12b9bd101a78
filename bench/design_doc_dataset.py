"""The design document's dataset, as its `__getitem__` reads: indicators recomputed on each window's slice.

A benchmark baseline only (row 1 of `bench/run.py`); not part of the package. It is slow (pandas-ta runs
once per item) and also wrong in a way `TradingDataset` is not: on a 100-bar slice the indicators have
no warm-up history, so the early rows are NaN (filled with 0 here) and the rest depend on where the
slice starts.
"""
from __future__ import annotations
import numpy as np
import pandas as pd
import torch
from trading_nb.features import calculate_price_features, calculate_technical_features


class DesignDocDataset(torch.utils.data.Dataset):
    "Per-item windows: price features and pandas-ta indicators computed on `df.iloc[i:i + lookback]` at every access"
    def __init__(self,
                 df: pd.DataFrame,                # OHLCV bars (see `load_ohlcv`)
                 lookback: int = 100,             # bars per window
                 horizon: int = 1,                # the target is the direction of the close `horizon` bars after the window
                 indicators: list | None = None,  # indicator set (default `DEFAULT_INDICATORS`)
                ):
        self.df, self.lookback, self.horizon, self.indicators = df, lookback, horizon, indicators
        self.close = df['close'].to_numpy(dtype='float64')

    def __len__(self) -> int:
        return len(self.df) - self.lookback - self.horizon + 1

    def __getitem__(self, i: int) -> dict:
        "One window, its features computed now from its own bars only"
        window = self.df.iloc[i:i + self.lookback]
        price = calculate_price_features(window)
        tech = calculate_technical_features(window, self.indicators)
        seq = np.nan_to_num(pd.concat([price, tech], axis=1).to_numpy(np.float32))
        last = i + self.lookback - 1
        target = int(self.close[last + self.horizon] > self.close[last])
        return dict(sequence=torch.from_numpy(seq), indicators=torch.from_numpy(seq[-1, price.shape[1]:].copy()),
                    target=torch.tensor(target))
