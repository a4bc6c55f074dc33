"""Reports for auditors (the model card)."""
