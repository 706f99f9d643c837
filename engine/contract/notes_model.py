"""The model of a run's notes (``notes.json``), apart from :mod:`engine.contract.notes` so that listing runs
does not load pydantic until a run's notes are read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.contract.notes import MAX_TAGS, TAG


class RunNotes(BaseModel):
    """What a person says about a run; every field optional."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str = Field("", max_length=200, description="a display name for the run (the folder name when blank)")
    tags: tuple[str, ...] = Field((), max_length=MAX_TAGS, description="words to find and group runs by")
    note: str = Field("", max_length=64_000, description="free text")

    @field_validator("tags", mode="before")
    @classmethod
    def _list_is_fine(cls, value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("tags")
    @classmethod
    def _tags_are_words(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        for tag in tags:
            if not TAG.fullmatch(tag):
                raise ValueError(f"tag {tag!r}: 1-64 characters without spaces or commas")
        return tuple(dict.fromkeys(tags))  # a tag given twice is one tag

    @property
    def empty(self) -> bool:
        return not (self.name or self.tags or self.note)
