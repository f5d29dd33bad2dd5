"""Domain widgets of the TUI."""
