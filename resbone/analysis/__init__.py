"""Explain a network: the paper's architecture table, parameter and multiply-add counts, receptive fields."""
from resbone.analysis.summary import (
                                      ModelSummary,
                                      StageSummary,
                                      build_model,
                                      count_macs,
                                      count_params,
                                      format_table,
                                      matching_models,
                                      model_table_markdown,
                                      receptive_field,
                                      summarize,
)
from resbone.analysis.trace import Field

__all__ = ["Field", "ModelSummary", "StageSummary", "build_model", "count_macs", "count_params", "format_table",
           "matching_models", "model_table_markdown", "receptive_field", "summarize"]
