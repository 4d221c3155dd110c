"""The history of jobs and the gallery of their images (SQLite, in the data folder)."""

from .records import (
    FILENAME,
    STATUSES,
    GalleryItem,
    HistoryError,
    ImageRecord,
    JobRecord,
    Page,
    StyleRecord,
)
from .search import cursor_text, match_expression, parse_cursor
from .store import HistoryStore, clean

__all__ = ["FILENAME", "STATUSES", "GalleryItem", "HistoryError", "HistoryStore", "ImageRecord",
           "JobRecord", "Page", "StyleRecord", "clean", "cursor_text", "match_expression",
           "parse_cursor"]
