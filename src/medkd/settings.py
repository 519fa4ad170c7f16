"""The base of every settings model: strict (an unknown key is an error, not silently ignored) and frozen."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
