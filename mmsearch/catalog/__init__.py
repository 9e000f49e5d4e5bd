"""Product catalogs (CSV, Parquet, JSON Lines): one image row and one text row per product."""

from mmsearch.catalog.products import ProductColumns
from mmsearch.catalog.read import read_catalog
from mmsearch.catalog.sync import CatalogReport

__all__ = ["CatalogReport", "ProductColumns", "read_catalog"]
