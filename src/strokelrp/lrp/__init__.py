"""Layer-wise Relevance Propagation: rules, the graph-walking engine, filters, presets."""
