"""The multiplexing server engine: one thread, switchable backends, always-on telemetry."""

from muxtop.commands import (
    CloseConnection,
    Outcome,
    PauseReading,
    SetLab,
    Stop,
    Switch,
    Watch,
)
from muxtop.engine.config import LABS, EngineConfig
from muxtop.engine.loop import Engine, EngineStartError

__all__ = [
    "LABS",
    "CloseConnection",
    "Engine",
    "EngineConfig",
    "EngineStartError",
    "Outcome",
    "PauseReading",
    "SetLab",
    "Stop",
    "Switch",
    "Watch",
]
