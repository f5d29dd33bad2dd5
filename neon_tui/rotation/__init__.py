"""The rotation engine: inventory, selection to plan, execution with a journal, delivery (no UI imports)."""
