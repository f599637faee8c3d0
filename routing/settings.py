"""Settings for the router, built once from the config and passed in."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RoutingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    short_max_words: int = Field(25, ge=1, description="turns up to this many words are 'short'")
    long_audio_s: float = Field(12.0, gt=0, description="utterances longer than this are 'long'")
    complex_markers: tuple[str, ...] = Field(
        (
            "explain", "why", "compare", "step by step", "analyze", "analyse", "plan",
            "code", "prove", "calculate", "difference between",
            "explica", "por qué", "porque", "compara", "paso a paso", "analiza", "planifica",
            "código", "calcula", "diferencia entre", "piénsalo",
        ),
        description="words or phrases that mark a complex request",
    )
