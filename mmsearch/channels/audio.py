"""The audio channels: sound tags and speech (rows in the main space), CLAP (a side space).

Indexing: one `AudioAnalyzer` computes all three for audio files and videos' sound, as the
store's `AudioSettings` say. Query: an example sound becomes main-space parts (its tags'
and its transcript's vectors); transcript word matches and CLAP hits are row bonuses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmsearch.audio.search import clap_bonus, word_bonus
from mmsearch.audio.settings import AudioSettings, audio_query_vectors
from mmsearch.audio.space import ClapSpace
from mmsearch.channels.base import Channel, QueryContext, register_channel
from mmsearch.errors import UsageError
from mmsearch.planner.query import Part


class AudioChannel(Channel):
    """Tags and speech rows at indexing time; an example sound's parts at query time."""

    name = "audio"
    options = ("tags", "speech", "whisper", "audio_model")

    def indexing(self, manifest: dict[str, Any], options: Mapping[str, Any],
                 device: str | None) -> dict[str, Any]:
        settings = AudioSettings.resolve(manifest.get("audio"), tags=options.get("tags"),
                                         speech=options.get("speech"),
                                         whisper=options.get("whisper"),
                                         clap=options.get("audio_model"))
        return {"audio": settings.analyzer(device), "audio_settings": settings}

    def query_parts(self, ctx: QueryContext) -> list[Part]:
        audio = ctx.request.audio
        if audio is None:
            return []
        settings = AudioSettings.resolve(ctx.manifest.get("audio"))
        sounds = audio_query_vectors(ctx.encoder(), settings, audio, ctx.device)
        if not sounds and not ctx.positives and not ClapSpace(ctx.path).exists:
            raise UsageError(f"nothing in {os.fspath(audio)} to search with: no sound events "
                             "or speech recognised, and the store has no CLAP space")
        return [Part("text", v, 1.0, f"sound:{i}") for i, v in enumerate(sounds)]


class SpeechWords(Channel):
    """Transcript segments holding the query's words score more (exact phrases)."""

    name = "speech"

    def row_bonus(self, ctx: QueryContext) -> dict[int, float]:
        return word_bonus(ctx.snap, ctx.texts, ctx.allowed)


class ClapChannel(Channel):
    """The CLAP side space: its hits for the query (text or example sound) as bonuses."""

    name = "clap"

    def row_bonus(self, ctx: QueryContext) -> dict[int, float]:
        spec = (ctx.manifest.get("audio") or {}).get("clap")
        audio, text = ctx.request.audio, " ".join(ctx.texts) or None
        if not spec or (audio is None and not text):
            return {}
        space = ClapSpace(ctx.path)
        if not space.exists:
            return {}
        clap = AudioSettings.resolve(ctx.manifest.get("audio")).analyzer(ctx.device).clap
        query = (clap.embed_file(os.fspath(audio), [(0.0, 10.0)])[0] if audio is not None
                 else clap.embed_texts([text])[0])
        return clap_bonus(ctx.snap, space, query, ctx.allowed)

    def counts(self, path: Path, manifest: dict[str, Any]) -> dict[str, int]:
        space = ClapSpace(path)
        return {"clap": int(space.store.manifest.get("rows") or 0)} if space.exists else {}


for _channel in (AudioChannel(), SpeechWords(), ClapChannel()):
    register_channel(_channel)
