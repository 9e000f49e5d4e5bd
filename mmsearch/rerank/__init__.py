"""Rerankers: cross-attention models that rescore the top results of a search."""

from mmsearch.rerank.base import Reranker
from mmsearch.rerank.registry import load_reranker, register_reranker

__all__ = ["Reranker", "load_reranker", "register_reranker"]
