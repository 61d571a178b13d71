"""Many prompts: the items of a prompt file, the ``--vary`` grid, how processes split the items, and what a
batch reports (``summary.json``, the ``index.html`` gallery). ``vstar batch`` runs them."""

from vstar.batch.distributed import Processes, processes
from vstar.batch.gallery import gallery_html
from vstar.batch.items import BatchItem, Variant, item_seed, parse_vary, read_items
from vstar.batch.summary import row, summary_record, summary_table

__all__ = ["BatchItem", "Processes", "Variant", "gallery_html", "item_seed", "parse_vary", "processes", "read_items",
           "row", "summary_record", "summary_table"]
