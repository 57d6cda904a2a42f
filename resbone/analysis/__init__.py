"""Explain a network: the paper's architecture table, parameter and multiply-add counts, receptive fields."""
from resbone.analysis.summary import (
                                      ModelSummary,
                                      StageSummary,
                                      count_macs,
                                      count_params,
                                      create_meta_model,
                                      format_table,
                                      matching_models,
                                      model_table_markdown,
                                      receptive_field,
                                      summarize,
)
from resbone.analysis.trace import Field

__all__ = ["Field", "ModelSummary", "StageSummary", "count_macs", "count_params", "create_meta_model", "format_table",
           "matching_models", "model_table_markdown", "receptive_field", "summarize"]
