"""Proof that the models are right: summaries measured from the models, and the papers'
tables with our computed figures beside them."""

from .catalog import ModelInfo, describe_models, format_model_table
from .paper_tables import (compare_googlenet_table1, compare_vgg_table2, format_googlenet_table1,
                           format_vgg_table2, paper_table)
from .summary import (BlockRow, LayerRow, ModelSummary, count_macs, count_params, format_summary,
                      model_blocks, summarize)

__all__ = [
    "BlockRow", "LayerRow", "ModelInfo", "ModelSummary", "compare_googlenet_table1", "compare_vgg_table2",
    "count_macs", "count_params", "describe_models", "format_googlenet_table1", "format_model_table",
    "format_summary", "format_vgg_table2", "model_blocks", "paper_table", "summarize",
]
