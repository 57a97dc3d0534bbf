"""llm_runtime package."""
